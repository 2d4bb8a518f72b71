"""One configuration of a sweep, run with every seed: the objective every backend calls.

Backends only decide *which* configuration to run next and when to stop one; what a
configuration run is (its run directories, MLflow child runs, per-seed summaries, the
objective value) is defined here once, so Optuna and Ray Tune trials are identical.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtsearch.paths import runs_dir
from mtsearch.records import git_commit, write_json
from mtsearch.sweep.space import Space, params_key
from mtsearch.tasks import overall_score

log = logging.getLogger("mtsearch.sweep")


def sweeps_dir() -> Path:
    return runs_dir() / "sweeps"


@dataclass
class SweepContext:
    space: Space
    name: str
    backend: str
    sweep_dir: Path
    mlflow: bool = True
    mlflow_parent: str | None = None
    commit: str | None = None

    @property
    def trials_dir(self) -> Path:
        return self.sweep_dir / "trials"


def run_dir_for(ctx: SweepContext, trial: int, seed: int) -> Path:
    return ctx.trials_dir / f"t{trial:04d}-s{seed}"


def summarize(result) -> dict[str, Any]:
    """What a finished run contributes to the sweep: its best checkpoint's scores."""
    scores = result.scores
    return {
        "run_dir": str(result.run_dir),
        "status": result.status,
        "scores": scores,
        "overall": overall_score(scores),
        "best_step": result.best.get("step"),
        "steps": result.steps,
        "examples": result.examples,
        "seconds": result.seconds,
        "mlflow_run_id": result.mlflow_run_id,
    }


def objective_values(space: Space, seed_results: dict[int, dict[str, Any]]) -> list[float]:
    """Mean over seeds of each objective (overall or a task's score)."""
    out = []
    for obj in space.objectives:
        vals = [r["overall"] if obj == "overall" else r["scores"][obj] for r in seed_results.values()]
        out.append(float(np.mean(vals)))
    return out


def run_configuration(
    ctx: SweepContext,
    params: dict[str, Any],
    trial: int,
    report: Callable[[int, dict[str, float]], None] | None = None,
    done: dict[int, dict[str, Any]] | None = None,
    on_seed_done: Callable[[int, dict[str, Any]], None] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[int, dict[str, Any]]:
    """Train ``params`` with each of the space's seeds; returns per-seed summaries.

    Seeds in ``done`` (finished by an earlier, interrupted attempt) are not rerun.
    ``report`` sees every evaluation with a step that keeps growing across seeds (seed i
    starts at i * max_steps), so pruners compare seed-0 curves with seed-0 curves.
    """
    from mtsearch.train import train

    space = ctx.space
    results: dict[int, dict[str, Any]] = {int(k): v for k, v in (done or {}).items()}
    key = params_key(params)
    for i, seed in enumerate(space.seed_list):
        if seed in results:
            continue
        rd = run_dir_for(ctx, trial, seed)
        cfg = space.config(params, seed, name=rd.name, progress=False, mlflow=ctx.mlflow)
        rd.mkdir(parents=True, exist_ok=True)
        write_json(
            rd / "trial.json",
            {
                "sweep": ctx.name,
                "space": space.name,
                "backend": ctx.backend,
                "trial": trial,
                "seed": seed,
                "params": params,
                "params_key": key,
                "config_hash": cfg.config_hash(),
                "started": time.time(),
            },
        )
        offset = i * (cfg.max_steps or 10**6)

        def seed_report(step: int, metrics: dict[str, float], _offset=offset, _seed=seed) -> None:
            if report is not None:
                report(_offset + step, {**metrics, "seed": _seed})

        mtags = {
            "sweep": ctx.name,
            "space": space.name,
            "backend": ctx.backend,
            "trial": str(trial),
            "seed": str(seed),
            "params_key": key,
            "config_hash": cfg.config_hash(),
            "git_commit": ctx.commit or "",
            **(tags or {}),
        }
        result = train(
            cfg, report=seed_report, run_dir=rd, mlflow_parent=ctx.mlflow_parent, mlflow_tags=mtags
        )
        summary = summarize(result)
        results[seed] = summary
        if on_seed_done is not None:
            on_seed_done(seed, summary)
    return results


def read_sweep_meta(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / "sweep.json"
    return json.loads(path.read_text()) if path.exists() else {}


def prepare_sweep(space: Space, name: str | None, backend: str, mlflow: bool = True) -> SweepContext:
    """Create or reopen ``runs/sweeps/<name>/``; refuses to mix two spaces under one name."""
    from mtsearch.errors import ConfigError

    name = name or (space.name if space.profile == "cpu" else f"{space.name}-{space.profile}")
    sweep_dir = sweeps_dir() / name
    meta = read_sweep_meta(sweep_dir)
    fp = space.fingerprint()
    if meta and meta.get("fingerprint") != fp:
        raise ConfigError(
            f"sweep '{name}' in {sweep_dir} was started with a different space (or settings); "
            f"resume it unchanged, or start a new one with --name"
        )
    if meta and meta.get("backend") != backend:
        raise ConfigError(f"sweep '{name}' was started with backend '{meta.get('backend')}', not '{backend}'")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    ctx = SweepContext(space, name, backend, sweep_dir, mlflow=mlflow, commit=git_commit())
    if mlflow:
        ctx.mlflow_parent = meta.get("mlflow_parent") or _parent_run(ctx)
    if not meta:
        meta = {
            "name": name,
            "space": space.describe(),
            "fingerprint": fp,
            "backend": backend,
            "created": time.time(),
            "mlflow_parent": ctx.mlflow_parent,
            "sessions": [],
        }
        write_json(sweep_dir / "sweep.json", meta)
    return ctx


def _parent_run(ctx: SweepContext) -> str | None:
    try:
        from mtsearch.tracking import parent_run

        return parent_run(
            ctx.name,
            {"space": ctx.space.name, "profile": ctx.space.profile, "algorithm": ctx.space.algorithm,
             "pruner": ctx.space.pruner, "seeds": ctx.space.seeds, "objective": ",".join(ctx.space.objectives)},
            {"sweep": ctx.name, "space": ctx.space.name, "backend": ctx.backend, "git_commit": ctx.commit or "",
             "mtsearch.kind": "sweep"},
        )  # fmt: skip
    except Exception as err:  # the sweep's own files are the record; MLflow only mirrors
        log.warning("MLflow parent run could not be created: %s", err)
        return None


def record_session(ctx: SweepContext, session: dict[str, Any]) -> None:
    """Append one invocation's wall time and counts to sweep.json (for overhead figures)."""
    path = ctx.sweep_dir / "sweep.json"
    meta = read_sweep_meta(ctx.sweep_dir)
    meta.setdefault("sessions", []).append(session)
    write_json(path, meta)
