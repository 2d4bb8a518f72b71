"""The leaderboard: configurations ranked over seeds, the best one's reproducing command, every run."""

from __future__ import annotations

import json
import shlex
from typing import Any

from mtsearch.dashboard.mlflow_links import mlflow_base_url, mlflow_experiments, mlflow_url
from mtsearch.dashboard.sweeps import SweepData


def leaderboard(data: SweepData, sort_by: str = "overall"):
    """Configurations ranked by the mean of ``sort_by`` over seeds, with sd and 95% half-width."""
    confs = data.results.configurations.copy()
    metrics = data.results.metrics
    cols = ["rank", *data.results.dims, "seeds"]
    for m in metrics:
        cols += [f"{m}_mean", f"{m}_sd", f"{m}_ci95"]
    cols += ["trials", "example_run", "params_key"]
    out = confs[cols].sort_values(f"{sort_by}_mean", ascending=False, kind="stable").reset_index(drop=True)
    return out


def best_configuration(data: SweepData) -> dict[str, Any]:
    """The top configuration: its params, scores and the command that reproduces its best seed run."""
    res = data.results
    top = res.configurations.iloc[0]
    params = json.loads(top["params"])
    runs = res.runs[(res.runs["params_key"] == top["params_key"]) & res.runs["overall"].notna()]
    best_run = runs.sort_values("overall", ascending=False).iloc[0]
    seed = int(best_run["seed"])
    return {
        "params": params,
        "rank": int(top["rank"]),
        "seeds": int(top["seeds"]),
        "scores": {m: (float(top[f"{m}_mean"]), float(top[f"{m}_sd"])) for m in res.metrics},
        "run": best_run["run"],
        "seed": seed,
        "run_scores": {m: float(best_run[m]) for m in res.metrics},
        "command": reproduce_command(data.meta, params, seed),
    }


def _yaml_value(value: Any) -> str:
    import yaml

    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("...").strip()


def reproduce_values(meta: dict[str, Any], params: dict[str, Any], seed: int) -> dict[str, Any]:
    from mtsearch.config import apply_overrides

    base = (meta.get("space") or {}).get("base") or {}
    return apply_overrides(base, {**params, "seed": seed})


def reproduce_command(
    meta: dict[str, Any], params: dict[str, Any], seed: int, program: str = "mtsearch"
) -> str:
    """``mtsearch train --set key=value ...`` with the sweep's base, the params and the seed."""
    parts = [program, "train"]
    for key, value in reproduce_values(meta, params, seed).items():
        parts += ["--set", shlex.quote(f"{key}={_yaml_value(value)}")]
    return " ".join(parts)


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
