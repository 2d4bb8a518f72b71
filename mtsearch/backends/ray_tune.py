"""Ray Tune backend: the same space, objective and trainer, scheduled by Ray.

Local by default (an in-process Ray instance on a loopback address); ``RAY_ADDRESS``
joins an existing cluster. ASHA stops weak trials early. Rerunning the same command
restores the experiment (``runs/sweeps/<name>/ray/``) with its searcher state.

Ray rewrites 127.0.0.1 to the machine's network address, so a local instance binds to
another loopback address (``MTSEARCH_RAY_NODE_IP``, default 127.0.0.2) instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from mtsearch.backends.base import BACKENDS, Backend, SweepOutcome
from mtsearch.errors import ConfigError
from mtsearch.sweep.algorithms import ALGORITHMS, PRUNERS
from mtsearch.sweep.runner import (
    SweepContext,
    objective_values,
    prepare_sweep,
    record_session,
    run_configuration,
)
from mtsearch.sweep.space import Space, load_space

log = logging.getLogger("mtsearch.sweep")

ENV_PASSED = ("MTSEARCH_RUNS", "MTSEARCH_DATA", "MTSEARCH_CACHE", "MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE",
              "TOKENIZERS_PARALLELISM")  # fmt: skip


def _trial_number(trial_id: str) -> int:
    # Ray trial ids end in a zero-padded counter ("a1b2c_00003"): stable and unique per experiment.
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else abs(hash(trial_id)) % 10**6


def _trainable(config: dict[str, Any]) -> None:
    """Runs in a Ray worker: one configuration, every seed, reporting each evaluation."""
    from ray import tune

    from mtsearch.errors import Pruned

    meta = config["__mtsearch"]
    for key, value in meta["env"].items():
        os.environ[key] = value
    space = load_space(meta["space_path"], meta["profile"], meta["extra_set"])
    ctx = SweepContext(space, meta["name"], "ray", Path(meta["sweep_dir"]), meta["mlflow"], meta["mlflow_parent"],
                       meta["commit"])  # fmt: skip
    if "params" in config:
        params = dict(config["params"])
    else:
        params = {d.name: config[d.name] for d in space.dimensions if d.name in config}
    trial = _trial_number(tune.get_context().get_trial_id())
    node = _node_ip()
    obj_keys = _objective_keys(space)

    def report(step: int, metrics: dict[str, float]) -> None:
        values = {k: float(metrics[o]) for k, o in zip(obj_keys, space.objectives, strict=True)}
        try:
            tune.report({**values, "step": step, "node_ip": node, "trial": trial, "final": False})
        except SystemExit:
            # Ray stops a function trial (an ASHA decision) by raising SystemExit in report():
            # the trainer records that as a pruned run, not a failed one.
            raise Pruned() from None

    try:
        results = run_configuration(
            ctx, params, trial, report=report, tags={"ray_node": node, "mtsearch.kind": "trial"}
        )
    except Pruned:
        return
    values = objective_values(space, results)
    final = dict(zip(obj_keys, values, strict=True))
    tune.report(
        {**final, "step": 10**9, "node_ip": node, "trial": trial, "final": True, "seeds": len(results)}
    )


def _node_ip() -> str:
    with contextlib.suppress(Exception):
        import ray

        return ray.util.get_node_ip_address()
    return "?"


def _objective_keys(space: Space) -> list[str]:
    return ["objective"] if not space.multi_objective else [f"objective_{o}" for o in space.objectives]


def init_ray(num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    env = {"env_vars": {k: os.environ[k] for k in ENV_PASSED if k in os.environ}}
    if address:
        host = address.split("://")[-1].rsplit(":", 1)[0]
        node_ip = os.environ.get("MTSEARCH_RAY_NODE_IP") or (host if host.startswith("127.") else None)
        kwargs = {"_node_ip_address": node_ip} if node_ip else {}
        ray.init(address=address, runtime_env=env, log_to_driver=False, **kwargs)
    else:
        node_ip = os.environ.get(
            "MTSEARCH_RAY_NODE_IP", "127.0.0.2" if sys.platform.startswith("linux") else ""
        )
        kwargs = {"_node_ip_address": node_ip} if node_ip else {}
        ray.init(
            address="local", include_dashboard=False, num_cpus=num_cpus, runtime_env=env, log_to_driver=False,
            **kwargs,
        )  # fmt: skip


@BACKENDS.register("ray")
class RayBackend(Backend):
    """Ray Tune with OptunaSearch (or a grid) and ASHA; local or on a cluster (RAY_ADDRESS)."""

    def run(
        self,
        space: Space,
        name: str | None = None,
        *,
        mlflow: bool = True,
        progress: bool = True,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
        extra_set: dict[str, Any] | None = None,
        max_trials: int | None = None,
        **_: Any,
    ) -> SweepOutcome:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
        import ray
        from ray import tune

        if space.multi_objective and PRUNERS[space.pruner].prunes:
            raise ConfigError("Ray Tune's ASHA needs a single objective")
        t0 = time.perf_counter()
        ctx = prepare_sweep(space, name, "ray", mlflow=mlflow)
        init_ray()
        meta = _worker_meta(ctx, mlflow, extra_set or {}, cpus_per_trial)
        trainable = tune.with_resources(_trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
        grid = _tuner(ctx, meta, trainable, progress, max_trials).fit()
        failed = sum(1 for r in grid if r.error)
        nodes = sorted({str(r.metrics.get("node_ip")) for r in grid if r.metrics})
        _finalize_interrupted(ctx)
        wall = time.perf_counter() - t0
        runs, run_seconds, train_eval = _session_runs(ctx, t0_wall=time.time() - wall)
        outcome = SweepOutcome(
            name=ctx.name, sweep_dir=str(ctx.sweep_dir), backend="ray", wall_seconds=wall, runs=runs,
            run_seconds=run_seconds, train_eval_seconds=train_eval,
            counts={"trials": len(grid), "fail": failed, "complete": len(grid) - failed, "nodes": len(nodes)},
            stopped_because="Ray Tune finished",
        )  # fmt: skip
        record_session(ctx, {**outcome.__dict__, "nodes": nodes, "ended": time.time()})
        if ctx.mlflow_parent:
            with contextlib.suppress(Exception):
                from mtsearch.tracking import finish_parent

                finish_parent(ctx.mlflow_parent, {"runs": runs, "wall_seconds": wall, "failed": failed})
        if not os.environ.get("RAY_ADDRESS"):
            ray.shutdown()
        return outcome


def _worker_meta(ctx: SweepContext, mlflow: bool, extra_set: dict[str, Any], cpus_per_trial: float) -> dict:
    """What a Ray worker needs to rebuild the space and the sweep context on its side."""
    space = ctx.space
    meta = {
        "space_path": str(space.path.resolve()),
        "profile": space.profile,
        "extra_set": extra_set,
        "name": ctx.name,
        "sweep_dir": str(ctx.sweep_dir.resolve()),
        "mlflow": mlflow,
        "mlflow_parent": ctx.mlflow_parent,
        "commit": ctx.commit,
        "env": {k: os.environ[k] for k in ENV_PASSED if k in os.environ},
    }
    meta["env"].setdefault("MTSEARCH_RUNS", str(ctx.sweep_dir.resolve().parent.parent))
    # One trial's torch threads match the CPUs Ray gives it: no oversubscription.
    threads = max(1, int(cpus_per_trial))
    if "num_threads" not in extra_set:
        meta["extra_set"] = {**meta["extra_set"], "num_threads": threads}
    return meta


def _tuner(ctx: SweepContext, meta: dict, trainable, progress: bool, max_trials: int | None):
    """A new Tuner with the space's searcher and scheduler, or the sweep's experiment restored."""
    from ray import tune

    space = ctx.space
    storage = str((ctx.sweep_dir / "ray").resolve())
    exp_path = os.path.join(storage, "tune")
    if tune.Tuner.can_restore(exp_path):
        log.info("restoring the Ray Tune experiment in %s", exp_path)
        return tune.Tuner.restore(exp_path, trainable=trainable, resume_errored=True)
    obj_keys = _objective_keys(space)
    metric = obj_keys[0] if len(obj_keys) == 1 else obj_keys
    mode = "max" if len(obj_keys) == 1 else ["max"] * len(obj_keys)
    scheduler = PRUNERS[space.pruner].ray_scheduler(space)
    search = ALGORITHMS[space.algorithm].ray_search(
        space, metric, mode, num_samples=max_trials or space.trials or 10**6
    )
    return tune.Tuner(
        trainable,
        param_space={**search.param_space, "__mtsearch": meta},
        tune_config=tune.TuneConfig(
            metric=metric if scheduler is None or isinstance(metric, str) else None,
            mode=mode if scheduler is None or isinstance(mode, str) else None,
            search_alg=search.search_alg,
            scheduler=scheduler,
            num_samples=search.num_samples,
            time_budget_s=space.minutes * 60 if space.minutes else None,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=storage,
            verbose=1 if progress else 0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )


def _finalize_interrupted(ctx: SweepContext) -> None:
    """Runs stopped by ASHA (their worker is killed) get a result.json and a closed MLflow run."""
    from mtsearch.records import write_json

    if not ctx.trials_dir.exists():
        return
    for rd in ctx.trials_dir.iterdir():
        if rd.is_dir() and (rd / "trial.json").exists() and not (rd / "result.json").exists():
            write_json(rd / "result.json", {"status": "pruned", "error": "stopped early by the scheduler"})
    if ctx.mlflow:
        with contextlib.suppress(Exception):
            from mtsearch.tracking import close_running_children

            close_running_children(ctx.name, "KILLED")


def _session_runs(ctx: SweepContext, t0_wall: float) -> tuple[int, float, float]:
    import json

    from mtsearch.backends.optuna_study import _train_eval_seconds

    runs, secs, te = 0, 0.0, 0.0
    for rd in ctx.trials_dir.glob("*/result.json") if ctx.trials_dir.exists() else []:
        info = json.loads((rd.parent / "trial.json").read_text())
        if info.get("started", 0) < t0_wall:
            continue
        res = json.loads(rd.read_text())
        runs += 1
        secs += float(res.get("seconds") or 0.0)
        te += _train_eval_seconds(str(rd.parent))
    return runs, secs, te
