"""Learning curves and gradient-conflict cosines of every run of a sweep, read from metrics.jsonl."""

from __future__ import annotations

import json

from mtsearch.dashboard.sweeps import SweepData
from mtsearch.sweep.results import NA, level_label


def curves(data: SweepData):
    """Long table: one row per (run, evaluation, metric): examples seen, value, and every dimension's level.

    Reads every run directory with a metrics.jsonl (running runs included: curves grow live).
    """
    import pandas as pd

    from mtsearch.records import read_metrics

    dims = data.dim_names
    rows, cos_rows = [], []
    from mtsearch.sweep.keys import RUN_FILE, all_run_keys, run_dir

    for key in all_run_keys(data.sweep_dir):
        rd = run_dir(data.sweep_dir, key)
        try:
            info = json.loads((rd / RUN_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        params = info.get("params") or {}
        levels = {d: level_label(params[d]) if d in params else NA for d in dims}
        base = {"run": key.rel, "trial": info.get("trial"), "seed": info.get("seed"), **levels}
        for r in read_metrics(rd / "metrics.jsonl"):
            if r.get("kind", "eval") != "eval":
                continue
            at = {"step": r.get("step"), "examples": r.get("examples")}
            if r.get("overall") is not None:
                rows.append({**base, **at, "metric": "overall", "value": float(r["overall"])})
            for t, v in (r.get("scores") or {}).items():
                rows.append({**base, **at, "metric": t, "value": float(v)})
            for pair, v in (r.get("grad_cosine") or {}).items():
                if v is not None:
                    cos_rows.append({**base, **at, "pair": pair, "cosine": float(v)})
    cols = ["run", "trial", "seed", *dims, "step", "examples"]
    return (pd.DataFrame(rows, columns=[*cols, "metric", "value"]),
            pd.DataFrame(cos_rows, columns=[*cols, "pair", "cosine"]))  # fmt: skip
