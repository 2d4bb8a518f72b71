"""The leaderboard: configurations ranked over seeds, the command that reproduces the best with all its seeds, every run."""

from __future__ import annotations

import json
from typing import Any

from mtsearch.dashboard.mlflow_links import mlflow_base_url, mlflow_experiments, mlflow_url
from mtsearch.dashboard.sweeps import SweepData
from mtsearch.sweep.results import reproduce_all_command, reproduce_command, reproduce_values, shown_level

__all__ = ["best_configuration", "leaderboard", "reproduce_all_command", "reproduce_command", "reproduce_values",
           "runs_table"]  # fmt: skip


def leaderboard(data: SweepData, sort_by: str = "overall"):
    """Configurations ranked by the mean of ``sort_by`` over seeds, with sd and 95% half-width."""
    confs = data.results.configurations.copy()
    metrics = data.results.metrics
    cols = ["rank", *data.results.dims, "seeds"]
    for m in metrics:
        cols += [f"{m}_mean", f"{m}_sd", f"{m}_ci95"]
    cols += ["trials", "example_run", "params_key"]
    out = confs[cols].sort_values(f"{sort_by}_mean", ascending=False, kind="stable").reset_index(drop=True)
    for d in data.results.dims:  # raw values in the results; the one level spelling on screen
        out[d] = out[d].map(shown_level)
    return out


def best_configuration(data: SweepData) -> dict[str, Any]:
    """The top configuration: its params, scores over seeds and the command that trains it with every seed.

    Reproducing means all its seeds, not its luckiest one: ``command`` loops over them;
    ``commands`` holds one command per seed and ``runs`` the sweep's run of each seed.
    """
    res = data.results
    top = res.configurations.iloc[0]
    params = json.loads(top["params"])
    seeds = [int(s) for s in top["seed_values"]]
    return {
        "params": params,
        "rank": int(top["rank"]),
        "seeds": int(top["seeds"]),
        "seed_values": seeds,
        "scores": {m: (float(top[f"{m}_mean"]), float(top[f"{m}_sd"])) for m in res.metrics},
        "runs": list(top["runs"]),
        "command": reproduce_all_command(data.meta, params, seeds),
        "commands": [reproduce_command(data.meta, params, s) for s in seeds],
    }


def runs_table(data: SweepData, base_url: str | None = None):
    """Every run read (all statuses) with its scores and a link to its MLflow run."""
    res = data.results
    runs = res.runs.copy()
    if runs.empty:
        return runs
    base_url = base_url or mlflow_base_url()
    exps = mlflow_experiments(list(runs.get("mlflow_run_id", [])))
    runs["mlflow"] = [
        mlflow_url(base_url, exps[r], r) if isinstance(r, str) and r in exps else None
        for r in runs.get("mlflow_run_id", [None] * len(runs))
    ]
    cols = ["run", "trial", "seed", "status", *[d for d in res.dims if d in runs],
            *[m for m in res.metrics if m in runs], "seconds", "best_step", "mlflow"]  # fmt: skip
    return runs[[c for c in cols if c in runs]].reset_index(drop=True)
