"""Shared fixtures: where the real data is, and a private runs/ + MLflow store per test."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers import ROOT, built_once, copy_head_rows, real_data_dir, tiny_config

__all__ = ["ROOT", "real_data_dir", "tiny_config"]  # re-exported for older imports; use tests.helpers

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One pytest-xdist worker per core (make test): a worker's torch (and the processes it starts)
    # with a thread per core would put cores x workers threads on the cores, each waiting on the others.
    from mtsearch.backends.jobs import THREAD_VARS  # light: the standard library only

    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")


# A shell without job control starts a background command (`cmd &`) with SIGINT ignored, and every
# process it starts inherits that, Python included: then no Ctrl-C test can work (a CI run launched
# so saw both Ctrl-C tests fail, the sweep and its job left in pause()). A Python handler here is
# reset to the default at exec, so the sweeps the tests start get a terminal's Ctrl-C again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = real_data_dir()
    if d is None:
        pytest.skip("the CS224N data is not beside the checkout (run `make data`)")
    return d


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory) -> Path:
    """One token cache for the whole session (and its workers: the cache takes concurrent runs, as
    --jobs does): tokenizing the real files once is enough."""
    return built_once(tmp_path_factory, "cache")


@pytest.fixture(autouse=True)
def fault_counts_afresh(monkeypatch):
    """Every test counts the fault points (``MTSEARCH_FAULT=point:n``) of its own in-process runs
    from zero: the counts are process-wide, so a test that ran earlier on the same xdist worker
    with a fault spec set would otherwise shift the n-th hit (a Ctrl-C test then never fired)."""
    from mtsearch import faults

    monkeypatch.setattr(faults, "_seen", {})


@pytest.fixture
def runs(tmp_path, monkeypatch, token_cache) -> Path:
    """A private runs/ folder and MLflow store, so tests never touch the user's."""
    root = tmp_path / "runs"
    monkeypatch.setenv("MTSEARCH_RUNS", str(root))
    monkeypatch.setenv("MTSEARCH_CACHE", str(token_cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


@pytest.fixture(scope="session")
def small_data_dir(data_dir: Path, tmp_path_factory) -> Path:
    """The real files cut to their first rows: whole-file work (caches) stays fast."""
    return copy_head_rows(data_dir, tmp_path_factory.mktemp("small-data"))
