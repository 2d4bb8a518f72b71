"""Pieces every benchmark shares: where the data is and how much memory a process used."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def data_dir() -> Path:
    from mtsearch.data import resolve_data_dir

    for cand in (None, ROOT / "data" / "cs224n", ROOT.parent / "shared" / "data" / "cs224n"):
        try:
            return resolve_data_dir(cand)
        except Exception:
            continue
    raise SystemExit("no CS224N data: run `make data`")


def peak_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
