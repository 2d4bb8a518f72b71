"""Device, precision, seeding and the progress bar: the parts of a run that depend on the machine."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from mtsearch.config import RunConfig
from mtsearch.errors import ConfigError


def pick_device(config: RunConfig) -> tuple[torch.device, str]:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    if config.precision == "auto":
        # bf16 autocast pays off on GPUs that have it; on CPUs measured here it is slower.
        precision = "bf16" if use_cuda and torch.cuda.is_bf16_supported() else "fp32"
    else:
        precision = config.precision
    return device, precision


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_for(seed: int, purpose: str) -> np.random.Generator:
    """An independent generator per purpose, all derived from the run's seed.

    Adding a new consumer of randomness does not shift the streams of the others.
    """
    key = [ord(c) for c in purpose]
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar of ``total`` steps (disabled unless ``enabled``: the config's ``progress``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="step")
