"""Optuna backend: a resumable study in ``runs/sweeps/<name>/study.db``, one trial per run.

**One Optuna trial per run** (configuration, seed index), not one per configuration:

- exactly-once: a trial is created for a run only while its worker holds the run's lock,
  and the run's folder (:mod:`mtsearch.sweep.runner`) decides what is done, so a trial
  that dies is simply followed by another trial of the same run;
- pruning compares like with like: each trial's intermediate values are one seed's
  curve on its own step axis, and :func:`seed_aligned_pruner` hands the inner Optuna pruner
  only the trials of the same seed index, never prunes before a run's second evaluation,
  and a pruned run closes its configuration (it gets no further seed);
- a trial's curve and its value are on the same rows (:func:`curve_points`): with held-out
  halves the curve is half B's score, so the value is the curve's point at the checkpoint
  half A chose, while pruning, a choice like the checkpoint's, compares half A's curves;
- optuna-dashboard shows one curve per run (issue 12: no seeds concatenated on one axis),
  the trials of a configuration share its parameters and carry flat, readable user
  attributes (``config_hash``, ``seed_index``, ``seed``, ``run``, ``status``, the scores);
  the study's metric names are its objectives.

The sampler (TPE, random, ...) sees one observation per run: repeated parameters with
noisy values, which it handles as such. It is only asked for a *new* configuration; the
other seeds of a configuration, and runs a dead worker left, become trials with the
configuration's stored parameters.

Running the same command again resumes; ``--worker`` is the same command run beside it
(several processes, or machines sharing the sweep folder; ``--storage URL`` puts the study
in any database Optuna supports). Each session's sampler gets its own seed, derived from
the sweep's, so two workers never draw the same sequence. Every change to the study that
picks work happens under the sweep's ``.propose.lock``, which makes the recovery of a dead
worker's RUNNING trials exact: a trial whose run nobody locks is over, and the study is
told what its folder says (a result written just before the kill is kept, not rerun).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from mtsearch.backends.base import BACKENDS, Backend, SweepOutcome
from mtsearch.faults import fault_point
from mtsearch.sweep.algorithms import ALGORITHMS, PRUNERS
from mtsearch.sweep.keys import RunKey
from mtsearch.sweep.runner import (
    HOST,
    Plan,
    RunLock,
    SweepContext,
    announce_round,
    describe_params,
    execute_run,
    file_lock,
    finite_points,
    is_locked,
    plan_work,
    prepare_sweep,
    read_configurations,
    record_session,
    register_configuration,
    run_summary,
    sweep_session,
)
from mtsearch.sweep.space import Space

log = logging.getLogger("mtsearch.sweep")

#: A sampler that proposes known configurations this many times in a row over a finite
#: space is handed an untried configuration instead (random search over 4 points would
#: otherwise draw duplicates for a while before finding the last one).
DUPLICATE_STREAK = 5
#: How often a worker with nothing to do looks whether a run another worker trains ended.
WAIT_SECONDS = 0.5


def storage_url(ctx: SweepContext, storage: str | None) -> str:
    return storage or f"sqlite:///{(ctx.sweep_dir / 'study.db').resolve()}"


def session_seed(ctx: SweepContext) -> int:
    """The sampler seed of this session: the sweep's search seed, then one derived per session."""
    from mtsearch.sweep.algorithms import SEARCH_SEED

    if ctx.session == 0:
        return SEARCH_SEED
    import numpy as np

    return int(np.random.SeedSequence([SEARCH_SEED, ctx.session]).generate_state(1, dtype=np.uint32)[0])


def open_study(url: str, name: str, space: Space | None = None, create: bool = True, sampler_seed: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A generous sqlite timeout: several workers write to one file.
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    if not create:
        return optuna.load_study(study_name=name, storage=storage)
    assert space is not None
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=ALGORITHMS[space.algorithm].optuna_sampler(seed=sampler_seed),
        pruner=seed_aligned_pruner(PRUNERS[space.pruner].optuna_pruner()),
        directions=["maximize"] * len(space.objectives),
        load_if_exists=True,
    )
    if study.metric_names != list(space.objectives):
        import warnings

        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(space.objectives))
    return study


# ------------------------------------------------------------------------- pruning
#: A trial's system attribute: its curve on the rows that choose, {step: value}, which the pruner compares.
CHOOSING_CURVE = "mtsearch:choosing_curve"


def curve_points(metrics: dict[str, float], objective: str) -> tuple[float, float, str]:
    """(shown, choosing, rows): what an evaluation reports as the trial's intermediate value, what
    pruning compares, and a name for the shown curve's rows.

    With held-out halves (``held_out_score``) a run's value is its checkpoint's score on half B,
    and half A chose that checkpoint. The curve shows half B, so the trial's value is one of its
    points. Pruning stays on half A: it chooses which configurations go on (a pruned one leaves
    the level means and gets no more seeds), and choosing on half B would let the rows that
    score the survivors pick them, the optimism the halves exist to remove. Without halves
    both are the evaluated rows (then a final evaluation on the full dev sets, if any, gives
    the value; the curve is its subset's).
    """
    if f"half_b_{objective}" in metrics:
        return float(metrics[f"half_b_{objective}"]), float(metrics[f"half_a_{objective}"]), "half_b"
    return float(metrics[objective]), float(metrics[objective]), "eval_rows"


def curve_reporter(trial, objective: str):
    """A function ``(step, metrics)`` that reports one evaluation to ``trial`` (see :func:`curve_points`).

    The choosing curve goes to a system attribute (the dashboard shows user attributes); the
    user attribute ``curve`` names the rows of the shown curve.
    """
    choosing: dict[str, float] = {}

    def report(step: int, metrics: dict[str, float]) -> None:
        shown, chosen_on, rows = curve_points(metrics, objective)
        if not choosing:
            trial.set_user_attr("curve", CURVE_NAMES[rows])
        choosing[str(step)] = chosen_on
        trial.storage.set_trial_system_attr(trial._trial_id, CHOOSING_CURVE, dict(choosing))
        trial.report(shown, step)

    return report


CURVE_NAMES = {
    "half_b": "half B, the rows that score the run (half A chose its checkpoint and decides pruning)",
    "eval_rows": "the evaluated dev rows (they chose the checkpoint and decide pruning)",
}


def _on_choosing_rows(trial):
    """The trial as the pruner sees it: its intermediate values on the rows that choose."""
    curve = trial.system_attrs.get(CHOOSING_CURVE)
    if curve is None:
        return trial
    import copy

    trial = copy.copy(trial)
    trial.intermediate_values = {int(step): value for step, value in curve.items()}
    return trial


class _SeedIndexStorage:
    """A study storage that lists only the trials of one seed index, on their choosing rows (everything
    else passes through)."""

    def __init__(self, inner, seed_index: int | None):
        self._inner, self._seed_index = inner, seed_index

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states=None):
        trials = self._inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        return [_on_choosing_rows(t) for t in trials if t.user_attrs.get("seed_index") == self._seed_index]

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


_PRUNER_CLASS: list = []


def seed_aligned_pruner(inner):
    """Wrap an Optuna pruner: seed k's curve is compared with other configurations' seed k curves.

    The inner pruner gets a view of the study that holds only the trials of the run's seed
    index (a storage filter, so Hyperband's bracket studies see the same view) with their
    curves on the rows that choose (:func:`curve_points`), and is not asked before the run's
    second evaluation.
    """
    if not _PRUNER_CLASS:
        import optuna

        class SeedAlignedPruner(optuna.pruners.BasePruner):
            def __init__(self, inner_pruner):
                self.inner = inner_pruner

            def prune(self, study, trial) -> bool:
                if isinstance(self.inner, optuna.pruners.NopPruner) or len(trial.intermediate_values) < 2:
                    return False
                view = optuna.study.Study(
                    study.study_name, _SeedIndexStorage(study._storage, trial.user_attrs.get("seed_index")),
                    sampler=study.sampler, pruner=self.inner,
                )  # fmt: skip
                return self.inner.prune(view, _on_choosing_rows(trial))

        _PRUNER_CLASS.append(SeedAlignedPruner)
    return _PRUNER_CLASS[0](inner)


# ------------------------------------------------------------------ trials and runs
def _distributions(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    import optuna

    fixed = optuna.trial.FixedTrial(params)
    space.sample(fixed)
    return fixed.distributions


def run_trial(study, ctx: SweepContext, key: RunKey, params: dict[str, Any]):
    """A new RUNNING trial for ``key`` with its configuration's stored parameters (no sampler asked)."""
    import optuna

    template = optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, params=params, distributions=_distributions(ctx.space, params),
        user_attrs=run_attrs(ctx, key),
    )  # fmt: skip
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    return optuna.Trial(study, trial_id)


def run_attrs(ctx: SweepContext, key: RunKey) -> dict[str, Any]:
    return {"config_hash": key.config_hash, "seed_index": key.seed_index, "seed": ctx.space.seed_for(key.seed_index),
            "run": key.rel, "worker": f"{HOST}:{os.getpid()}"}  # fmt: skip


def tell_from_run(study, ctx: SweepContext, trial_number: int, summary: dict[str, Any] | None = None) -> str:
    """Tell the study what a run's folder says (the folders win); returns the state told."""
    from optuna.trial import TrialState

    frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id,
                                                                                          trial_number))  # fmt: skip
    if frozen.state != TrialState.RUNNING:
        return frozen.state.name
    h, k = frozen.user_attrs.get("config_hash"), frozen.user_attrs.get("seed_index")
    if summary is None and h is not None and k is not None:
        summary = run_summary(ctx, RunKey(h, int(k)))
    status = (summary or {}).get("status")
    tid = frozen._trial_id
    if summary and status:
        study._storage.set_trial_user_attr(tid, "status", status)
    if status in ("finished", "stopped_early"):
        for task, value in summary["scores"].items():
            study._storage.set_trial_user_attr(tid, task, float(value))
        study._storage.set_trial_user_attr(tid, "overall", float(summary["overall"]))
        values = summary["values"]
        study.tell(trial_number, values if ctx.space.multi_objective else values[0])
        return "COMPLETE"
    if status == "pruned":
        study.tell(trial_number, state=TrialState.PRUNED)
        return "PRUNED"
    error = (summary or {}).get("error") if status == "failed" else "interrupted: its worker process died"
    study._storage.set_trial_user_attr(tid, "error", str(error or "failed")[:2000])
    study.tell(trial_number, state=TrialState.FAIL)
    return "FAIL"


def recover_stale(
    study, ctx: SweepContext, alive: frozenset[RunKey] | set[RunKey] = frozenset()
) -> list[int]:
    """RUNNING trials whose worker is gone (nobody locks their run) get the state their run folder says.

    Called under the sweep's propose lock, where every live worker's trial already has its
    run and holds its lock; a RUNNING trial without a run was killed while being set up.
    ``alive``: runs this process has handed out whose worker may not hold the lock yet (Ray).
    """
    from optuna.trial import TrialState

    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        h, k = t.user_attrs.get("config_hash"), t.user_attrs.get("seed_index")
        if (
            h is not None
            and k is not None
            and (RunKey(h, int(k)) in alive or is_locked(ctx.run_dir(RunKey(h, int(k)))))
        ):
            continue
        state = tell_from_run(study, ctx, t.number)
        log.warning("trial %d was left running by a dead worker: %s (run %s)", t.number,
                    "recorded from its run folder" if state != "FAIL" else "failed; its run is trained again",
                    f"{h}/s{k}" if h else "not chosen yet")  # fmt: skip
        recovered.append(t.number)
    return recovered


# ------------------------------------------------------------------------ a worker
@dataclass
class _Job:
    key: RunKey
    params: dict[str, Any]
    lock: RunLock
    trial: Any  # optuna.Trial


@dataclass
class _Tally:
    runs: int = 0
    run_seconds: float = 0.0
    train_eval: float = 0.0
    failures: int = 0
    duplicates: int = 0
    streak: int = 0


class _Worker:
    """One process's part of a sweep: pick a run under the propose lock, train it, tell the study."""

    def __init__(self, study, ctx: SweepContext, budget: int | None, deadline: float, bar):
        self.study, self.ctx, self.budget, self.deadline, self.bar = study, ctx, budget, deadline, bar
        self.tally = _Tally()

    def loop(self) -> str:
        while True:
            fault_point("between_runs")
            if time.perf_counter() >= self.deadline:
                return f"wall-clock budget of {self.ctx.space.minutes} minutes spent"
            if self.tally.failures > self.ctx.space.max_failures:
                return f"more than max_failures={self.ctx.space.max_failures} failed runs"
            job, plan = self._next()
            try:
                announce_round(self.ctx)  # a racing round just completed: its provisional tables
            except BaseException:  # Ctrl-C while they print: the run just taken is given back
                if job is not None:
                    self._abandon(job)
                raise
            if job is not None:
                self._run(job)
            elif plan is not None and plan.finished_because:
                return plan.finished_because
            elif plan is not None and plan.in_flight:
                self._wait(plan)
            # else: a duplicate proposal was set aside; ask again

    def _next(self) -> tuple[_Job | None, Plan | None]:
        ctx, study = self.ctx, self.study
        with file_lock(ctx.sweep_dir / ".propose.lock"):
            recover_stale(study, ctx)
            plan = plan_work(ctx, budget=self.budget)
            for key in plan.pending:
                lock = RunLock.try_acquire(ctx.run_dir(key))
                if lock is not None:
                    params = plan.configurations[key.config_hash]["params"]
                    return _Job(key, params, lock, run_trial(study, ctx, key, params)), plan
            if plan.next_point is not None:  # a grid: its next point, never a sampler
                return self._start_new(plan.next_point), plan
            if plan.proposals_left:
                return self._propose(plan), None
        return None, plan

    def _start_new(self, params: dict[str, Any], trial=None) -> _Job | None:
        h = register_configuration(self.ctx, params)
        fault_point("propose")
        key = RunKey(h, 0)
        lock = RunLock.try_acquire(self.ctx.run_dir(key))
        if lock is None:  # cannot happen under the propose lock; be safe
            return None
        if trial is None:
            trial = run_trial(self.study, self.ctx, key, params)
        else:
            for k, v in run_attrs(self.ctx, key).items():
                trial.set_user_attr(k, v)
        return _Job(key, params, lock, trial)

    def _propose(self, plan: Plan) -> _Job | None:
        """Ask the sampler for a configuration; one it proposed before is set aside (told FAIL, duplicate_of)."""
        from optuna.trial import TrialState

        ctx, study = self.ctx, self.study
        trial = study.ask()
        params = ctx.space.sample(trial)
        h = ctx.space.config_hash(params)
        if h not in plan.configurations:
            self.tally.streak = 0
            return self._start_new(params, trial)
        trial.set_user_attr("duplicate_of", h)
        study.tell(trial, state=TrialState.FAIL)
        self.tally.duplicates += 1
        self.tally.streak += 1
        if self.tally.streak >= DUPLICATE_STREAK:
            # A finite space nearly exhausted: take an untried configuration directly.
            untried = [p for p, ph in finite_points(ctx) if ph not in plan.configurations]
            if untried:
                import numpy as np

                rng = np.random.default_rng([ctx.session, self.tally.duplicates])
                self.tally.streak = 0
                return self._start_new(untried[int(rng.integers(len(untried)))])
        return None

    def _run(self, job: _Job) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        from mtsearch.errors import Pruned

        ctx, study, trial = self.ctx, self.study, job.trial
        fault_point("trial_created")

        report_curve = curve_reporter(trial, ctx.space.objectives[0])

        def report(step: int, metrics: dict[str, float]) -> None:
            if ctx.space.multi_objective:
                return
            report_curve(step, metrics)
            if trial.should_prune():
                raise Pruned()

        try:
            summary = execute_run(ctx, job.key, job.params, report, trial=trial.number)
        except Pruned:
            summary = run_summary(ctx, job.key)
        except KeyboardInterrupt:
            self._abandon(job)
            raise
        try:
            state = tell_from_run(study, ctx, trial.number, summary)
        except UpdateFinishedTrialError:
            state = "?"
        fault_point("after_tell")
        job.lock.release()
        t = self.tally
        t.runs += 1
        t.run_seconds += float(summary["seconds"] or 0.0)
        t.train_eval += float(summary["train_eval_seconds"])
        if summary["status"] == "failed":
            t.failures += 1
        desc = describe_params(job.params)
        score = summary["values"][0] if state == "COMPLETE" else None
        self.bar.run_done(job.key.rel, desc, ctx.space.seed_for(job.key.seed_index), summary["status"], score,
                          float(summary["seconds"] or 0.0))  # fmt: skip
        if state == "COMPLETE":
            log.info("run %s (%s): %s", job.key, desc, " / ".join(f"{v:.4f}" for v in summary["values"]))
        else:
            log.info("run %s (%s): %s", job.key, desc, summary["status"])

    def _abandon(self, job: _Job) -> None:
        """Ctrl-C: the run's trial fails as interrupted and its lock goes, so a resume trains it again."""
        study, trial = self.study, job.trial
        with contextlib.suppress(Exception):
            study._storage.set_trial_user_attr(trial._trial_id, "error", "interrupted by the user")
            study.tell(trial, state=__import__("optuna").trial.TrialState.FAIL)
        job.lock.release()

    def _wait(self, plan: Plan) -> None:
        """Nothing to start: wait until a run another worker trains ends (it may end by a crash)."""
        while time.perf_counter() < self.deadline:
            if any(not is_locked(self.ctx.run_dir(k)) for k in plan.in_flight):
                return
            time.sleep(WAIT_SECONDS)


@BACKENDS.register("optuna")
class OptunaBackend(Backend):
    """Optuna samplers and pruners over a (possibly conditional) space, in a resumable study."""

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
        race_policy=None,
        jobs: int = 1,
        threads: int | None = None,
        extra_set: dict[str, Any] | None = None,
        on_round=None,
        gpus: tuple[str, ...] = (),
        jobs_reason: str | None = None,
        **_: Any,
    ) -> SweepOutcome:
        """``on_round``: see :attr:`SweepContext.on_round`; ``jobs``: runs at once on this machine
        (this process and jobs-1 more workers, see :mod:`mtsearch.backends.jobs`), the workers
        spread round-robin over ``gpus`` (CUDA_VISIBLE_DEVICES entries; this process is the
        caller's to pin, see :mod:`mtsearch.backends.packing`), ``jobs_reason`` recorded in the
        session; ``threads``:
        torch threads of each run (None: the config's, or the cores split between the jobs);
        ``extra_set``: the --set overrides the space was loaded with, for the other jobs to load
        it alike."""
        from mtsearch.backends.jobs import start_jobs, threads_per_job

        t0 = time.perf_counter()
        ctx = prepare_sweep(space, name, "optuna", mlflow=mlflow, worker=worker)
        ctx.race_policy = race_policy
        ctx.on_round = on_round
        if threads is None and jobs > 1:
            threads = threads_per_job(jobs, space.base.get("num_threads"))
        ctx.threads = threads
        for note in ctx.notes:
            log.warning("%s", note)
        url = storage_url(ctx, storage)
        with file_lock(ctx.sweep_dir / ".propose.lock"):
            study = open_study(url, ctx.name, space, sampler_seed=session_seed(ctx))
        budget = max_trials or space.trials
        deadline = t0 + space.minutes * 60 if space.minutes else float("inf")
        others: list[dict[str, Any]] = []
        with sweep_session(ctx):
            bar = _progress_bar(ctx, budget, progress)
            w = _Worker(study, ctx, budget, deadline, bar)
            helpers = None
            if jobs > 1:  # after the study exists: the other jobs only join it
                helpers = start_jobs(jobs - 1, space_path=space.path.resolve(), profile=space.profile,
                                     budget={"trials": space.trials, "minutes": space.minutes},
                                     extra_set=dict(extra_set or {}), name=ctx.name, storage=storage,
                                     mlflow=mlflow, threads=threads or 1, gpus=gpus)  # fmt: skip
            try:
                stopped = w.loop()
                if helpers is not None:
                    others = helpers.wait()
            except BaseException:  # Ctrl-C or a crash: no job outlives the command
                if helpers is not None:
                    helpers.stop()
                raise
            finally:
                bar.close()
        wall = time.perf_counter() - t0
        outcome = SweepOutcome(
            name=ctx.name, sweep_dir=str(ctx.sweep_dir), backend="optuna", wall_seconds=wall,
            runs=w.tally.runs + sum(int(o.get("runs") or 0) for o in others),
            run_seconds=w.tally.run_seconds + sum(float(o.get("run_seconds") or 0.0) for o in others),
            train_eval_seconds=w.tally.train_eval + sum(float(o.get("train_eval_seconds") or 0.0) for o in others),
            counts=run_counts(ctx), stopped_because=stopped, notes=ctx.notes, slots=max(1, jobs),
        )  # fmt: skip
        session = {**outcome.record(), "storage": url, "duplicates": w.tally.duplicates, "ended": time.time()}
        if jobs_reason:
            session["jobs_reason"] = jobs_reason
        if jobs > 1:  # each job records its own session: this one keeps its own runs (sessions add up)
            session.update(runs=w.tally.runs, run_seconds=w.tally.run_seconds, train_eval_seconds=w.tally.train_eval,
                           jobs=jobs, threads=threads, jobs_runs=outcome.runs)  # fmt: skip
        record_session(ctx, session)
        return outcome


def run_counts(ctx: SweepContext) -> dict[str, int]:
    """Runs by status, and configurations, from the run folders."""
    from mtsearch.sweep.runner import load_runs

    runs = load_runs(ctx.sweep_dir)
    counts = {s: int(n) for s, n in runs["status"].value_counts().items()} if not runs.empty else {}
    counts["configurations"] = len(read_configurations(ctx.sweep_dir))
    return counts


def trial_counts(study) -> dict[str, int]:
    """Trials by state (duplicate proposals apart): what the dashboard's sweeps table shows of a study."""
    from optuna.trial import TrialState

    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("duplicate_of") is not None:
            counts["duplicate"] = counts.get("duplicate", 0) + 1
            continue
        counts[t.state.name.lower()] += 1
    return counts


def _progress_bar(ctx: SweepContext, budget: int | None, progress: bool):
    """A bar of runs on a terminal, one line per finished run otherwise (:class:`SweepProgress`)."""
    from mtsearch.sweep.keys import DONE
    from mtsearch.sweep.runner import load_runs
    from mtsearch.sweep.space import expected_runs
    from mtsearch.train.runtime import SweepProgress

    total = expected_runs(ctx.space) if ctx.space.exhaustive or budget else None
    runs = load_runs(ctx.sweep_dir)
    done = int(runs["status"].isin(DONE).sum()) if not runs.empty else 0
    return SweepProgress(ctx.name, max(total or 0, done) or None, done, progress)
