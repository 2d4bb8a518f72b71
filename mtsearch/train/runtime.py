"""Device, precision, seeding and progress output: the parts of a run that depend on the machine.

Progress bars are for terminals: written into a log file (a batch job, ``nohup``, CI),
tqdm's ``\r`` updates become one huge line. When stderr is not a terminal, the training
step bar stays silent (every evaluation is in metrics.jsonl and the sweep's lines) and a
sweep prints one line per finished run instead (:class:`SweepProgress`).
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from typing import Any

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


# ----------------------------------------------------------------------- torch.compile
#: torch.compile's backend (None: torch's default, inductor). Tests set "aot_eager", which
#: traces and differentiates the same graph without generating kernels (seconds, not minutes).
COMPILE_BACKEND: Any = None
#: The widths training batches are padded to when compiled (capped at max_length, which is
#: always one): a handful of shapes per task, so compiled graphs (and CUDA graphs) are reused.
STATIC_WIDTHS = (16, 32, 64, 128, 256, 512)


def use_compile(config: RunConfig, device: torch.device) -> bool:
    """Does the run compile its model? ('auto': on CUDA only; on the CPU compiling took longer
    than it saved here.)"""
    return config.compile == "on" or (config.compile == "auto" and device.type == "cuda")


def static_width(width: int, max_length: int) -> int:
    """The fixed width a batch of longest sequence ``width`` is padded to (:data:`STATIC_WIDTHS`)."""
    for w in STATIC_WIDTHS:
        if width <= w < max_length:
            return w
    return max(width, max_length)


def pad_static(seg: dict[str, torch.Tensor], max_length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """One collated segment padded on the right to its :func:`static_width`.

    The added positions are masked out (attention mask 0, pad ids), so the model's outputs
    are those of the unpadded batch up to float rounding; cached hidden states get zeros.
    """
    width = seg["input_ids"].shape[1]
    extra = static_width(width, max_length) - width
    if extra <= 0:
        return seg
    fill = {"input_ids": pad_id}
    out = {}
    for k, v in seg.items():
        if k == "cached_hidden":
            out[k] = torch.nn.functional.pad(v, (0, 0, 0, extra))
        elif v.dim() == 2:
            out[k] = torch.nn.functional.pad(v, (0, extra), value=fill.get(k, 0))
        else:
            out[k] = v
    return out


class CompiledModel:
    """The model's forward through torch.compile, falling back to eager on a compile failure.

    ``mode`` 'reduce-overhead' (CUDA) replays CUDA graphs: one per task and static shape.
    A failure to compile (no compiler, an unsupported op) warns once and the run goes on
    eagerly: the weights are the model's own either way, so nothing is lost but speed.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model = model
        self.mode = "reduce-overhead" if device.type == "cuda" else None
        self.failed: str | None = None
        # one entry per (task, batch size, width): more than torch's default limit of 8
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        # dynamic=False: one graph per static shape (the widths are few), never a symbolic one,
        # so each can be a CUDA graph
        self._compiled = torch.compile(
            model, mode=self.mode, backend=COMPILE_BACKEND or "inductor", dynamic=False
        )

    def step_begins(self) -> None:
        """A new training step: earlier CUDA graph outputs may be overwritten from here on."""
        if self.mode == "reduce-overhead" and self.failed is None:
            torch.compiler.cudagraph_mark_step_begin()

    def __call__(self, task: str, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        if self.failed is None:
            try:
                return self._compiled(task, inputs)
            except torch._dynamo.exc.TorchDynamoException as err:
                import warnings

                self.failed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                warnings.warn(
                    f"torch.compile failed, training goes on eagerly (compile: off avoids the attempt): "
                    f"{self.failed}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self.model(task, inputs)


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


def interactive() -> bool:
    """stderr, where progress goes, is a terminal (a bar redraws in place there, nowhere else)."""
    return sys.stderr.isatty()


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar of ``total`` steps, shown only when ``enabled`` (the config's ``progress``) on a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not (enabled and interactive()), desc=desc, unit="step")


class SweepProgress:
    """A sweep's progress: a bar of runs on a terminal, else one line per finished run on stderr.

    A line reads ``sweep smoke [3/4] run 1a2b3c4d/s1 (sampler=round_robin) seed 871: finished,
    score 0.4123, 12.3 s (sweep 0.8 min)``; ``total`` is None when the sweep's size is not
    known in advance (a time budget).
    """

    def __init__(self, name: str, total: int | None, done: int, enabled: bool):
        self.name, self.total, self.done, self.enabled = name, total, done, enabled
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled and interactive():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc=f"sweep {name}", unit="run")

    def run_done(
        self, run: str, params: str, seed: Any, status: str | None, score: float | None, seconds: float
    ) -> None:
        self.done += 1
        scored = score is not None and score == score  # NaN: no score
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(run=run, score=f"{score:.3f}" if scored else status)
        elif self.enabled:
            of = f"/{self.total}" if self.total else ""
            what = f"{status or 'not recorded'}" + (f", score {score:.4f}" if scored else "")
            print(f"sweep {self.name} [{self.done}{of}] run {run} ({params}) seed {seed}: {what}, "
                  f"{seconds:.1f} s (sweep {(time.perf_counter() - self.t0) / 60:.1f} min)",
                  file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
