"""Where mtsearch reads and writes by default.

The project root is the checkout that holds ``pyproject.toml`` next to the package when
installed editable (the Makefile does that); otherwise the current directory. Every
location can be overridden by an environment variable so a user can keep runs and data
elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd()


def runs_dir() -> Path:
    """Root of all outputs: ``MTSEARCH_RUNS`` or ``<project>/runs``."""
    env = os.environ.get("MTSEARCH_RUNS")
    return Path(env).expanduser() if env else project_root() / "runs"


def default_data_dir() -> Path:
    """Data folder used when neither ``--data-dir`` nor ``MTSEARCH_DATA`` is given."""
    return project_root() / "data" / "cs224n"


def cache_dir() -> Path:
    """Derived artefacts that are safe to delete (token ids, cached activations)."""
    env = os.environ.get("MTSEARCH_CACHE")
    return Path(env).expanduser() if env else runs_dir() / "cache"
