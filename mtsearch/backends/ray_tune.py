"""Ray Tune backend: the same runs, placed by Ray on local cores or a cluster's nodes.

Ray Tune executes and places the runs; what to run is the sweep's own, exactly as with
the Optuna backend: a Tune searcher (:func:`_searcher`) hands Tune one run (configuration,
seed index) per Tune trial, chosen by :func:`mtsearch.sweep.runner.plan_work` from the
run folders; new configurations come from the space's Optuna sampler through the sweep's
study (``study.db``), whose seed-aligned pruner also decides pruning (the Ray trial reports
each evaluation to its Optuna trial). So both backends give the same sweep: the same
exactly-once guarantee (a worker holds the run's flock while it trains), the same
pruning, the same racing rounds, the same study for optuna-dashboard.

Each invocation is a fresh Tune experiment (``runs/sweeps/<name>/ray/session-<n>``), not
a restored one: the run folders are the truth, so after the driver is killed a rerun
skips every run that is done and trains again the runs nobody holds a lock on. A Ray
worker that dies mid-run frees its run's lock; the driver sees the trial fail and hands
the run out again.

Local by default (an in-process Ray instance that listens on loopback only, see
:func:`init_ray`); ``RAY_ADDRESS`` joins an existing cluster, whose nodes must share the
sweep folder.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from mtsearch.backends.base import BACKENDS, Backend, SweepOutcome
from mtsearch.backends.optuna_study import (
    DUPLICATE_STREAK,
    curve_points,
    curve_reporter,
    open_study,
    recover_stale,
    run_attrs,
    run_counts,
    run_trial,
    session_seed,
    storage_url,
    tell_from_run,
)
from mtsearch.faults import fault_point
from mtsearch.sweep.keys import RunKey
from mtsearch.sweep.runner import (
    RunLock,
    SweepContext,
    announce_round,
    execute_run,
    file_lock,
    finite_points,
    is_locked,
    plan_work,
    prepare_sweep,
    record_session,
    register_configuration,
    run_summary,
    sweep_session,
)
from mtsearch.sweep.space import Space, load_space

log = logging.getLogger("mtsearch.sweep")

ENV_PASSED = ("MTSEARCH_RUNS", "MTSEARCH_DATA", "MTSEARCH_CACHE", "MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE",
              "TOKENIZERS_PARALLELISM", "MTSEARCH_FAULT", "MTSEARCH_HOLD")  # fmt: skip
#: A run whose Ray worker dies this many times in one session (no result written) is recorded as failed.
MAX_CRASHES = 3


def _trainable(config: dict[str, Any]) -> None:
    """Runs in a Ray worker: one run, each evaluation reported to Tune and to its Optuna trial."""
    import optuna
    from ray import tune

    from mtsearch.errors import Pruned

    meta = config["__mtsearch"]
    for key, value in meta["env"].items():
        os.environ[key] = value
    space = load_space(meta["space_path"], meta["profile"], meta["extra_set"])
    ctx = SweepContext(space, meta["name"], "ray", Path(meta["sweep_dir"]), meta["mlflow"], meta["mlflow_parent"],
                       meta["commit"], session=meta["session"])  # fmt: skip
    key = RunKey(config["config_hash"], int(config["seed_index"]))
    node = _node_ip()
    lock = RunLock.try_acquire(ctx.run_dir(key))
    if lock is None:  # a worker of an earlier, killed driver still trains it: the driver waits for it
        tune.report({"score": float("nan"), "busy": True, "node_ip": node})
        return
    try:
        if run_summary(ctx, key)["status"] is not None:  # done already: nothing to train
            tune.report({"score": float("nan"), "done_already": True, "node_ip": node})
            return
        study = open_study(meta["storage"], meta["name"], space, sampler_seed=0)
        trial = optuna.Trial(study, int(config["trial_id"]))

        report_curve = curve_reporter(trial, space.objectives[0])

        def report(step: int, metrics: dict[str, float]) -> None:
            value = curve_points(metrics, space.objectives[0] if len(space.objectives) == 1 else "overall")[0]
            tune.report({"score": value, "step": step, "node_ip": node, "final": False})
            if space.multi_objective:
                return
            report_curve(step, metrics)
            if trial.should_prune():
                raise Pruned()

        with contextlib.suppress(Pruned):
            execute_run(ctx, key, dict(config["params"]), report, trial=trial.number,
                        tags={"ray_node": node})  # fmt: skip
        summary = run_summary(ctx, key)
        value = summary["values"][0] if summary["values"] else float("nan")
        tune.report(
            {"score": value, "step": 10**9, "node_ip": node, "final": True, "status": summary["status"]}
        )
    finally:
        lock.release()


def _node_ip() -> str:
    with contextlib.suppress(Exception):
        import ray

        return ray.util.get_node_ip_address()
    return "?"


def _searcher(ctx: SweepContext, study, meta: dict[str, Any], budget: int | None):
    """A Tune searcher whose suggestions are the sweep's runs (see the module docstring)."""
    from ray.tune.search import Searcher

    class RunSearcher(Searcher):
        def __init__(self):
            super().__init__()
            self.handed: dict[str, tuple[RunKey, int]] = {}  # Tune trial id -> (run, Optuna trial number)
            self.crashes: dict[RunKey, int] = {}
            self.finished_because: str | None = None
            self.failures = 0
            self.streak = 0
            self.duplicates = 0
            self.nodes: set[str] = set()

        def suggest(self, trial_id: str):
            if self.finished_because:
                return Searcher.FINISHED
            if self.failures > ctx.space.max_failures:
                self.finished_because = f"more than max_failures={ctx.space.max_failures} failed runs"
                return Searcher.FINISHED
            # A racing round the last pick found complete: its provisional tables (before this pick, so
            # a Ctrl-C while they print holds no run; Tune asks again as soon as a slot is free).
            announce_round(ctx)
            with file_lock(ctx.sweep_dir / ".propose.lock"):
                job = self._pick()
            if job is None or isinstance(job, str):
                if isinstance(job, str):
                    self.finished_because = job
                    return Searcher.FINISHED
                return None  # runs in flight elsewhere, or a duplicate proposal: ask again later
            key, params, trial = job
            self.handed[trial_id] = (key, trial.number)
            fault_point("ray_suggest")
            return {"config_hash": key.config_hash, "seed_index": key.seed_index, "trial_id": trial._trial_id,
                    "params": params, "__mtsearch": meta}  # fmt: skip

        def _pick(self):
            reserved = {k for k, _ in self.handed.values()}
            recover_stale(study, ctx, alive=reserved)
            plan = plan_work(ctx, reserved=reserved, budget=budget)
            if plan.pending:
                key = plan.pending[0]
                params = plan.configurations[key.config_hash]["params"]
                return key, params, run_trial(study, ctx, key, params)
            if plan.next_point is not None:
                return self._new(plan.next_point)
            if plan.proposals_left:
                return self._propose(plan)
            return plan.finished_because  # None: wait for the runs in flight

        def _new(self, params, trial=None):
            h = register_configuration(ctx, params)
            fault_point("propose")
            key = RunKey(h, 0)
            if trial is None:
                trial = run_trial(study, ctx, key, params)
            else:
                for k, v in run_attrs(ctx, key).items():
                    trial.set_user_attr(k, v)
            return key, params, trial

        def _propose(self, plan):
            from optuna.trial import TrialState

            trial = study.ask()
            params = ctx.space.sample(trial)
            h = ctx.space.config_hash(params)
            if h not in plan.configurations:
                self.streak = 0
                return self._new(params, trial)
            trial.set_user_attr("duplicate_of", h)
            study.tell(trial, state=TrialState.FAIL)
            self.duplicates += 1
            self.streak += 1
            if self.streak >= DUPLICATE_STREAK:
                untried = [p for p, ph in finite_points(ctx) if ph not in plan.configurations]
                if untried:
                    import numpy as np

                    self.streak = 0
                    rng = np.random.default_rng([ctx.session, self.duplicates])
                    return self._new(untried[int(rng.integers(len(untried)))])
            return None

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if result.get("node_ip"):
                self.nodes.add(str(result["node_ip"]))

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id not in self.handed:
                return
            key, number = self.handed.pop(trial_id)
            rd = ctx.run_dir(key)
            # The worker's process ends its run before Tune hears of it; wait for its lock to go
            # (not when the run was busy: a worker of an earlier driver still trains it).
            deadline = time.time() + (0 if (result or {}).get("busy") else 60)
            while is_locked(rd) and time.time() < deadline:
                time.sleep(0.2)
            fault_point("ray_complete")
            summary = run_summary(ctx, key)
            if summary["status"] is None and error:
                self.crashes[key] = self.crashes.get(key, 0) + 1
                if self.crashes[key] >= MAX_CRASHES:
                    _record_crashes(ctx, key, self.crashes[key])
                    summary = run_summary(ctx, key)
            with file_lock(ctx.sweep_dir / ".propose.lock"):
                tell_from_run(study, ctx, number, summary)
            if summary["status"] == "failed":
                self.failures += 1

    return RunSearcher()


def _record_crashes(ctx: SweepContext, key: RunKey, n: int) -> None:
    """A run whose worker keeps dying (out of memory, a crash in native code) is recorded as failed."""
    from mtsearch.records import write_json

    lock = RunLock.try_acquire(ctx.run_dir(key))
    if lock is None:
        return
    try:
        write_json(ctx.run_dir(key) / "result.json",
                   {"status": "failed", "error": f"its Ray worker died {n} times without a result"})  # fmt: skip
    finally:
        lock.release()


#: Ray's own switch for one machine (its "Windows or OSX cluster" setting, honoured on Linux too).
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _single_machine():
    """Ray's single-machine mode while a local instance starts, so that nothing it starts listens beyond loopback.

    Ray's gRPC servers (GCS, raylet, object manager, every worker) listen on loopback only when
    the node's address is exactly 127.0.0.1, and on every interface otherwise; but Ray rewrites
    a given 127.0.0.1 to the machine's network address unless this mode is on. Its processes
    inherit the variable when they start; Ray reads it once, when imported, so the module's
    copy is set too for a process that imported Ray before. Both are restored afterwards: a
    later ``ray start`` of another node from this process must not be refused.
    """
    from ray._private import ray_constants

    old_env, old_flag = os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = old_env


def init_ray(num_cpus: int | None = None) -> None:
    """Join ``RAY_ADDRESS``'s cluster, or start a local instance that listens on loopback only.

    ``MTSEARCH_RAY_NODE_IP`` gives the local instance that node address instead (then Ray's
    gRPC servers listen on every interface: see the README's Ray section).
    """
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
        return
    node_ip = os.environ.get("MTSEARCH_RAY_NODE_IP")
    kwargs = {"_node_ip_address": node_ip} if node_ip else {}
    with contextlib.nullcontext() if node_ip else _single_machine():
        ray.init(
            address="local", include_dashboard=False, num_cpus=num_cpus, runtime_env=env, log_to_driver=False,
            **kwargs,
        )  # fmt: skip


@BACKENDS.register("ray")
class RayBackend(Backend):
    """Ray Tune places the sweep's runs on local cores or a cluster (RAY_ADDRESS)."""

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
        race_policy=None,
        on_round=None,
        jobs_reason: str | None = None,
        **_: Any,
    ) -> SweepOutcome:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
        import ray
        from ray import tune
        from ray.tune.search import ConcurrencyLimiter

        t0 = time.perf_counter()
        ctx = prepare_sweep(space, name, "ray", mlflow=mlflow)
        ctx.race_policy = race_policy
        ctx.on_round = on_round  # the searcher runs in this driver process: it prints the rounds
        for note in ctx.notes:
            log.warning("%s", note)
        url = storage_url(ctx, None)
        with file_lock(ctx.sweep_dir / ".propose.lock"):
            study = open_study(url, ctx.name, space, sampler_seed=session_seed(ctx))
        init_ray()
        try:
            meta = _worker_meta(ctx, url, extra_set or {}, cpus_per_trial)
            slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_trial, 1e-9)))
            with sweep_session(ctx):
                searcher = _searcher(ctx, study, meta, max_trials or space.trials)
                tuner = tune.Tuner(
                    tune.with_resources(_trainable, trial_resources(cpus_per_trial, gpus_per_trial)),
                    tune_config=tune.TuneConfig(
                        # One run per free slot: a sampler proposes with the results so far.
                        search_alg=ConcurrencyLimiter(searcher, max_concurrent=slots),
                        num_samples=-1,
                        time_budget_s=space.minutes * 60 if space.minutes else None,
                        reuse_actors=True,  # a worker imports torch once, not once per run
                    ),
                    run_config=tune.RunConfig(
                        name=f"session-{ctx.session}",
                        storage_path=str((ctx.sweep_dir / "ray").resolve()),
                        verbose=1 if progress else 0,
                        failure_config=tune.FailureConfig(max_failures=0),
                    ),
                )
                grid = tuner.fit()
        finally:
            if not os.environ.get("RAY_ADDRESS"):
                ray.shutdown()
        wall = time.perf_counter() - t0
        stopped = searcher.finished_because or (
            f"wall-clock budget of {space.minutes} minutes spent" if space.minutes else "Ray Tune finished"
        )
        runs, run_seconds, train_eval = _session_runs(ctx)
        outcome = SweepOutcome(
            name=ctx.name, sweep_dir=str(ctx.sweep_dir), backend="ray", wall_seconds=wall, runs=runs,
            run_seconds=run_seconds, train_eval_seconds=train_eval, counts=run_counts(ctx),
            stopped_because=stopped, notes=ctx.notes, nodes=sorted(searcher.nodes), slots=slots,
        )  # fmt: skip
        record_session(ctx, {**outcome.record(), "tune_trials": len(grid), "duplicates": searcher.duplicates,
                             "ended": time.time(), "jobs_reason": jobs_reason})  # fmt: skip
        return outcome


def trial_resources(cpus_per_trial: float, gpus_per_trial: float) -> dict[str, float]:
    """What Ray reserves for each trial: a fractional GPU (``--gpus-per-trial auto``: 1 / runs per
    GPU) lets that many trials share one GPU, Ray pinning each to its GPU itself."""
    return {"cpu": cpus_per_trial, "gpu": gpus_per_trial}


def _worker_meta(ctx: SweepContext, url: str, extra_set: dict[str, Any], cpus_per_trial: float) -> dict:
    """What a Ray worker needs to rebuild the space and the sweep context on its side."""
    space = ctx.space
    meta = {
        "space_path": str(space.path.resolve()),
        "profile": space.profile,
        "extra_set": extra_set,
        "name": ctx.name,
        "sweep_dir": str(ctx.sweep_dir.resolve()),
        "storage": url,
        "mlflow": ctx.mlflow,
        "mlflow_parent": ctx.mlflow_parent,
        "commit": ctx.commit,
        "session": ctx.session,
        "env": {k: os.environ[k] for k in ENV_PASSED if k in os.environ},
    }
    meta["env"].setdefault("MTSEARCH_RUNS", str(ctx.sweep_dir.resolve().parent.parent))
    # One trial's torch threads match the CPUs Ray gives it: no oversubscription.
    threads = max(1, int(cpus_per_trial))
    if "num_threads" not in extra_set:
        meta["extra_set"] = {**meta["extra_set"], "num_threads": threads}
    return meta


def _session_runs(ctx: SweepContext) -> tuple[int, float, float]:
    """Runs this session trained (their run.json names the session), their seconds and training time."""
    from mtsearch.sweep.runner import load_runs

    runs = load_runs(ctx.sweep_dir)
    n, secs, te = 0, 0.0, 0.0
    for _, r in runs.iterrows():
        info_session = _run_session(Path(r["run_dir"]))
        if info_session != ctx.session or r["status"] in ("running", "interrupted"):
            continue
        n += 1
        secs += float(r["seconds"] or 0.0) if not _nan(r["seconds"]) else 0.0
        te += run_summary(ctx, RunKey(r["config_hash"], int(r["seed_index"])))["train_eval_seconds"]
    return n, secs, te


def _run_session(rd: Path) -> int | None:
    import json

    try:
        return json.loads((rd / "run.json").read_text()).get("session")
    except (OSError, ValueError):
        return None


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))
