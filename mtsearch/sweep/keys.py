"""What identifies a sweep's work: a run is one (configuration, seed index), never a trial number.

A configuration is identified by its ``config_hash`` (:meth:`RunConfig.config_hash`:
everything that changes what is learned, the seed excluded), so two proposals that give
the same run settings are one configuration. Its runs live at fixed places::

    runs/sweeps/<sweep>/runs/<config_hash>/config.json     params, written once, before any run
    runs/sweeps/<sweep>/runs/<config_hash>/s<k>/           the run of seed index k
    runs/sweeps/<sweep>/runs/<config_hash>/s<k>/.lock      flock held while a worker trains it

Whoever trains a run, whichever scheduler asked for it and however often it was
interrupted, it is written to that one folder: a seed cannot be counted twice, and a
folder whose ``result.json`` has a final status is done.

Seeds: seed index k of a sweep with base seed b trains with :func:`derive_seed` (b, k).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: A run with one of these statuses in its result.json is done: it is never trained again.
DONE = frozenset({"finished", "stopped_early", "pruned", "failed"})
#: Done runs that close their configuration: it gets no further seed.
CLOSING = frozenset({"pruned", "failed"})

RUNS = "runs"
CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
LOCK_FILE = ".lock"
_SEED_DIR = re.compile(r"s(0|[1-9][0-9]*)")
_HASH = re.compile(r"[0-9a-f]{6,64}")


@dataclass(frozen=True, order=True)
class RunKey:
    """One run of a sweep: a configuration and a seed index."""

    config_hash: str
    seed_index: int

    @property
    def rel(self) -> str:
        """The run's folder relative to ``<sweep>/runs/``: also its name in tables and the dashboard."""
        return f"{self.config_hash}/s{self.seed_index}"

    def __str__(self) -> str:
        return self.rel


def runs_root(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / RUNS


def config_dir(sweep_dir: Path, config_hash: str) -> Path:
    return runs_root(sweep_dir) / config_hash


def run_dir(sweep_dir: Path, key: RunKey) -> Path:
    return config_dir(sweep_dir, key.config_hash) / f"s{key.seed_index}"


def config_hashes(sweep_dir: Path) -> list[str]:
    """Every configuration folder of a sweep (those with a config.json)."""
    root = runs_root(sweep_dir)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if _HASH.fullmatch(d.name) and (d / CONFIG_FILE).is_file())


def seed_indices(sweep_dir: Path, config_hash: str) -> list[int]:
    """The seed indices that have a run folder under a configuration (a folder named ``s<k>``).

    The index is the folder's whole name, matched exactly: nothing else in the folder can
    be mistaken for a run (the old ``seed_`` attribute prefix also matched ``seed_results``).
    """
    cdir = config_dir(sweep_dir, config_hash)
    if not cdir.is_dir():
        return []
    found = (_SEED_DIR.fullmatch(d.name) for d in cdir.iterdir() if d.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def all_run_keys(sweep_dir: Path) -> list[RunKey]:
    return [RunKey(h, k) for h in config_hashes(sweep_dir) for k in seed_indices(sweep_dir, h)]


def derive_seed(base_seed: int, seed_index: int) -> int:
    """The training seed of seed index ``seed_index`` in a sweep whose base seed is ``base_seed``.

    Base seed 0 (the default) gives seed k for index k: the seeds every sweep used before
    base seeds existed, so those sweeps and their scores stay comparable. Any other base
    draws well-spread 32-bit seeds from ``numpy.random.SeedSequence([base_seed, k])``, so
    two sweeps with different bases share no seed.
    """
    if base_seed < 0 or seed_index < 0:
        raise ValueError(f"seeds are non-negative (base {base_seed}, index {seed_index})")
    if base_seed == 0:
        return seed_index
    import numpy as np

    return int(np.random.SeedSequence([base_seed, seed_index]).generate_state(1, dtype=np.uint32)[0])
