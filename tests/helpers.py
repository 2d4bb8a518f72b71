"""Plain helpers the tests import (fixtures live in the conftest files, helpers here).

``tests/conftest.py`` re-exports :func:`tiny_config` and :func:`real_data_dir` so an
older ``from tests.conftest import tiny_config`` keeps working; new code imports them
from this module.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
SMALL_ROWS = 120
#: How long :func:`wait_until` waits before it calls a process hung. Never a measure of speed: every
#: wait ends as soon as its named point is reached; a machine slower by any factor only waits longer.
HUNG_SECONDS = 300

T = TypeVar("T")


def wait_until(
    ready: Callable[[], T],
    proc: subprocess.Popen,
    what: str,
    detail: Callable[[], str] = lambda: "",
    bound: float = HUNG_SECONDS,
    every: float = 0.1,
) -> T:
    """``ready()``'s first truthy answer: a named point reached (a marker file, a line in a log,
    a server's health answer). Fails at once if ``proc`` ends first, and, so that a hung process
    cannot hang the suite, after ``bound`` seconds (``proc`` is then killed). ``detail()`` is added
    to the failure (a log's tail)."""
    deadline = time.monotonic() + bound
    while True:
        answer = ready()
        if answer:
            return answer
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended first (exit {proc.returncode}) {detail()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{what}: not reached in {bound:.0f} s, the process hangs {detail()}")
        try:  # between looks, wait on the process itself (its end shows at once), not on a clock
            proc.wait(timeout=every)
        except subprocess.TimeoutExpired:
            pass


def real_data_dir() -> Path | None:
    """The CS224N files in the project's data/ or the shared folder beside the checkout."""
    for cand in (ROOT / "data" / "cs224n", ROOT.parent / "shared" / "data" / "cs224n"):
        if (cand / "ids-sst-train.csv").exists():
            return cand
    return None


def copy_head_rows(src_dir: Path, dest: Path, rows: int = SMALL_ROWS) -> Path:
    """A copy of every CSV in ``src_dir`` cut to its header and first ``rows`` rows."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(src_dir.glob("*.csv")):
        with open(src, "rb") as f:
            lines = [line for _, line in zip(range(rows + 1), f, strict=False)]  # header + rows
        (dest / src.name).write_bytes(b"".join(lines))
    return dest


def tiny_config(data_dir: Path, **overrides):
    """A run small enough for a unit test: tiny model, a few hundred rows per task."""
    from mtsearch.config import make_config

    values = dict(
        model="tiny",
        data_dir=str(data_dir),
        train_limit=192,  # a multiple of batch_size: every batch is full
        eval_limit=100,
        final_eval=False,
        max_steps=6,
        eval_every=3,
        batch_size=16,
        max_length=64,
        progress=False,
        mlflow=False,
        num_threads=1,
    )
    values.update(overrides)
    return make_config(values)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None] | None = None) -> Path:
    """A folder ``name`` built once per test session, shared by its pytest-xdist workers.

    One process: a fresh folder of this session. Several workers: the first to take the lock
    builds it under their common base folder (pytest-xdist's documented recipe), the others wait
    for the lock and read it; a build that failed midway is rebuilt by the next worker.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.mktemp(name)
        if build is not None:
            build(path)
        return path
    path = tmp_path_factory.getbasetemp().parent / name
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / ".built").exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            if build is not None:
                build(path)
            (path / ".built").touch()
    return path


def load_file_module(path: Path, name: str | None = None):
    """A Python file that is not in a package (a benchmark script, a generated stand-in package), imported."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name or Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
