"""Optuna backend: a resumable study in ``runs/sweeps/<name>/study.db``.

Running the same command again resumes: finished trials are kept, a trial left RUNNING
by a dead process is marked failed and its configuration re-enqueued (seeds it had
finished are reused, not rerun). ``--storage URL`` points at any database Optuna
supports; ``--worker`` joins an existing study from another process or machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from mtsearch.backends.base import BACKENDS, Backend, SweepOutcome
from mtsearch.errors import MtsearchError
from mtsearch.sweep.algorithms import ALGORITHMS, PRUNERS
from mtsearch.sweep.runner import (
    SweepContext,
    objective_values,
    prepare_sweep,
    record_session,
    run_configuration,
    run_dir_for,
)
from mtsearch.sweep.space import Space, params_key

log = logging.getLogger("mtsearch.sweep")

HEARTBEAT_SECONDS = 15.0
#: A RUNNING trial whose worker has not beaten for this long is taken as dead.
STALE_SECONDS = float(os.environ.get("MTSEARCH_STALE_SECONDS", 120))
HOST = socket.gethostname()


def storage_url(ctx: SweepContext, storage: str | None) -> str:
    return storage or f"sqlite:///{(ctx.sweep_dir / 'study.db').resolve()}"


def open_study(url: str, name: str, space: Space | None = None, create: bool = True):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A generous sqlite timeout: several workers write to one file.
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    if not create:
        return optuna.load_study(study_name=name, storage=storage)
    assert space is not None
    directions = ["maximize"] * len(space.objectives)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=ALGORITHMS[space.algorithm].optuna_sampler(),
        pruner=PRUNERS[space.pruner].optuna_pruner(),
        directions=directions,
        load_if_exists=True,
    )


@contextlib.contextmanager
def _lock(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale(study, ctx: SweepContext) -> list[int]:
    """Fail RUNNING trials whose worker died and re-enqueue their configurations."""
    from optuna.trial import TrialState

    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        beat = t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else 0)
        same_host_dead = worker.get("host") == HOST and not _pid_alive(worker.get("pid"))
        if not (same_host_dead or time.time() - beat > STALE_SECONDS):
            continue
        storage = study._storage
        storage.set_trial_user_attr(t._trial_id, "error", "interrupted: its worker process died")
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        seed_results = {k.removeprefix("seed_"): v for k, v in t.user_attrs.items() if k.startswith("seed_")}
        study.enqueue_trial(
            t.params, user_attrs={"retry_of": t.number, "seed_results": seed_results}, skip_if_exists=False
        )
        if ctx.mlflow:
            with contextlib.suppress(Exception):
                from mtsearch.tracking import close_running_children

                close_running_children(ctx.name, "FAILED", trial=t.number)
        for seed in ctx.space.seed_list:
            rd = run_dir_for(ctx, t.number, seed)
            if rd.exists() and not (rd / "result.json").exists():
                from mtsearch.records import write_json

                write_json(rd / "result.json", {"status": "killed", "error": "the worker process died"})
        log.warning(
            "trial %d was left running by a dead worker: marked failed, its configuration re-queued", t.number
        )
        recovered.append(t.number)
    return recovered


class _Heartbeat:
    def __init__(self, study, trial_id: int):
        self.study, self.trial_id = study, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):
                self.study._storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def trial_counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("duplicate_of") is not None:
            counts["duplicate"] = counts.get("duplicate", 0) + 1
            continue
        counts[t.state.name.lower()] += 1
    return counts


def _configurations_started(study) -> int:
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(
        1 for t in study.get_trials(deepcopy=False, states=states) if t.user_attrs.get("duplicate_of") is None
    )


def _duplicate_of(study, trial_number: int, key: str) -> int | None:
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    for t in study.get_trials(deepcopy=False, states=states):
        if (
            t.number != trial_number
            and t.user_attrs.get("params_key") == key
            and not t.user_attrs.get("duplicate_of")
        ):
            return t.number
    return None


@dataclass
class _Tally:
    """What this invocation ran: train() calls, their time, their training + evaluation time, failures."""

    runs: int = 0
    run_seconds: float = 0.0
    train_eval: float = 0.0
    failures: int = 0

    def add(self, summary: dict) -> None:
        self.runs += 1
        self.run_seconds += summary["seconds"]
        self.train_eval += _train_eval_seconds(summary["run_dir"])


@BACKENDS.register("optuna")
class OptunaBackend(Backend):
    """Optuna study in an embedded sqlite store (or --storage URL); resumable; several workers."""

    def run(
        self,
        space: Space,
        name: str | None = None,
        *,
        storage: str | None = None,
        worker: bool = False,
        mlflow: bool = True,
        progress: bool = True,
        max_trials: int | None = None,
        **_: Any,
    ) -> SweepOutcome:
        t0 = time.perf_counter()
        ctx = prepare_sweep(space, name, "optuna", mlflow=mlflow)
        url = storage_url(ctx, storage)
        study = _open_session(space, ctx, url, worker)
        budget = space.trials if max_trials is None else max_trials
        deadline = t0 + space.minutes * 60 if space.minutes else math.inf
        tally = _Tally()
        bar = _progress_bar(study, space, ctx.name, budget, progress)
        while (stopped := _stop_reason(study, space, budget, deadline, tally.failures)) is None:
            _run_trial(study, ctx, tally, bar)
        bar.close()
        wall = time.perf_counter() - t0
        outcome = SweepOutcome(
            name=ctx.name, sweep_dir=str(ctx.sweep_dir), backend="optuna", wall_seconds=wall, runs=tally.runs,
            run_seconds=tally.run_seconds, train_eval_seconds=tally.train_eval, counts=trial_counts(study),
            stopped_because=stopped,
        )  # fmt: skip
        record_session(ctx, {**outcome.__dict__, "worker": worker, "ended": time.time(), "storage": url})
        if ctx.mlflow_parent and not worker:
            with contextlib.suppress(Exception):
                from mtsearch.tracking import finish_parent

                finish_parent(
                    ctx.mlflow_parent,
                    {"runs": tally.runs, "wall_seconds": wall, "failed": outcome.counts["fail"]},
                )
        return outcome


def _open_session(space: Space, ctx: SweepContext, url: str, worker: bool):
    """Open (or create) the study; a new grid study queues every point; dead workers' trials are re-queued."""
    with _lock(ctx.sweep_dir / ".study.lock"):
        study = open_study(url, ctx.name, space)
        if space.exhaustive and not study.get_trials(deepcopy=False) and not worker:
            for point in space.grid():
                study.enqueue_trial(point, user_attrs={"grid": True})
        recover_stale(study, ctx)
    return study


def _progress_bar(study, space: Space, name: str, budget: int | None, progress: bool):
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    total_runs = None
    if space.exhaustive:
        total_runs = len(space.grid()) * space.seeds
    elif budget:
        total_runs = budget * space.seeds
    done_runs = sum(
        len([k for k in t.user_attrs if k.startswith("seed_")])
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )
    return tqdm(total=total_runs, initial=min(done_runs, total_runs or done_runs), desc=f"sweep {name}",
                unit="run", disable=not progress)  # fmt: skip


def _stop_reason(study, space: Space, budget: int | None, deadline: float, failures: int) -> str | None:
    """Why the sweep stops before asking for another trial; None: go on."""
    from optuna.trial import TrialState

    if space.exhaustive and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return "every grid configuration is done"
    if budget is not None and not space.exhaustive and _configurations_started(study) >= budget:
        return f"{budget} configurations done"
    if time.perf_counter() >= deadline:
        return f"wall-clock budget of {space.minutes} minutes spent"
    if failures > space.max_failures:
        return f"more than max_failures={space.max_failures} failed trials"
    return None


def _run_trial(study, ctx: SweepContext, tally: _Tally, bar) -> None:
    """Ask for one configuration and run its seeds, unless another trial has it already."""
    from optuna.trial import TrialState

    space = ctx.space
    trial = study.ask()
    if space.exhaustive and not trial.user_attrs.get("grid") and "retry_of" not in trial.user_attrs:
        # Another worker took the last queued point between our check and ask().
        trial.set_user_attr("duplicate_of", -1)
        study.tell(trial, state=TrialState.PRUNED)
        return
    trial.set_user_attr("worker", {"host": HOST, "pid": os.getpid()})
    trial.set_user_attr("heartbeat", time.time())
    params = space.sample(trial)
    key = params_key(params)
    dup = _duplicate_of(study, trial.number, key)
    if dup is not None:
        # Never run one configuration twice (several workers, or a sampler repeating itself).
        trial.set_user_attr("duplicate_of", dup)
        study.tell(trial, state=TrialState.PRUNED)
        return
    trial.set_user_attr("params_key", key)
    done = {int(k): v for k, v in (trial.user_attrs.get("seed_results") or {}).items()}
    for seed, summary in done.items():
        trial.set_user_attr(f"seed_{seed}", summary)
    _run_seeds(study, trial, ctx, params, done, tally, bar)


def _run_seeds(study, trial, ctx: SweepContext, params: dict, done: dict, tally: _Tally, bar) -> None:
    """Run the configuration's seeds (those not ``done``) and tell the study: values, pruned or failed."""
    from optuna.trial import TrialState

    from mtsearch.errors import Pruned

    space = ctx.space

    def on_seed_done(seed: int, summary: dict) -> None:
        trial.set_user_attr(f"seed_{seed}", summary)
        tally.add(summary)
        bar.update(1)
        bar.set_postfix(trial=trial.number, overall=f"{summary['overall']:.3f}")

    def report(step: int, metrics: dict[str, float]) -> None:
        if space.multi_objective:
            return
        trial.report(float(metrics[space.objectives[0]]), step)
        if trial.should_prune():
            raise Pruned()

    desc = ", ".join(f"{k}={v}" for k, v in params.items())
    try:
        with _Heartbeat(study, trial._trial_id):
            seed_results = run_configuration(
                ctx, params, trial.number, report=report, done=done, on_seed_done=on_seed_done,
                tags={"mtsearch.kind": "trial"},
            )  # fmt: skip
        values = objective_values(space, seed_results)
        if any(not math.isfinite(v) for v in values):
            raise MtsearchError(f"objective is not finite: {values}")
        study.tell(trial, values if space.multi_objective else values[0])
        log.info("trial %d (%s): %s", trial.number, desc, " / ".join(f"{v:.4f}" for v in values))
    except Pruned:
        study.tell(trial, state=TrialState.PRUNED)
        log.info("trial %d (%s): pruned", trial.number, desc)
    except KeyboardInterrupt:
        trial.set_user_attr("error", "interrupted by the user")
        study.tell(trial, state=TrialState.FAIL)
        bar.close()
        raise
    except Exception as err:  # a failing trial must not stop the sweep
        tally.failures += 1
        trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:2000])
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d (%s) failed: %s: %s", trial.number, desc, type(err).__name__, err)


def _train_eval_seconds(run_dir: str) -> float:
    from pathlib import Path

    from mtsearch.records import read_metrics

    rows = [r for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r.get("kind") == "eval"]
    if not rows:
        return 0.0
    return float(rows[-1]["train_seconds"] + rows[-1]["eval_seconds"])
