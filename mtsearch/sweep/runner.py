"""A sweep's work, kept in its run directories: what to train next, training it, reading it back.

Backends only schedule; what the work *is* lives here, once, for Optuna and Ray alike.

The unit of work is a run: one (configuration, seed index), at
``runs/sweeps/<sweep>/runs/<config_hash>/s<k>/`` (:mod:`mtsearch.sweep.keys`). Three rules
make "every run trained exactly once" a property of the layout rather than of bookkeeping:

1. **A run's folder is the truth.** A ``result.json`` with a final status (finished,
   stopped_early, pruned, failed) means done, whatever a study, Ray or MLflow says; a run
   is never trained twice because there is one folder to train it into, and results read
   runs by their folder, so a seed cannot be counted twice.
2. **Liveness comes from the operating system.** A worker holds an ``flock`` on a run's
   ``.lock`` while it trains it. When the worker dies (SIGKILL, power loss, a pre-empted
   job) the kernel drops the lock, so the next worker or rerun knows at once that nobody
   trains that run and takes it up again, with no timeout and no heartbeat. Workers on
   several machines (``--storage URL``) must share the sweep folder (e.g. over NFS, where
   flock works as a lock of the file server; a machine that disappears loses its locks
   when the server's lease expires). A worker that cannot see the folder could not write
   its runs there either, so the study database alone is never enough.
3. **A configuration's parameters are stored before any of its runs trains**
   (``<config_hash>/config.json``), so a retried run keeps its own parameters: a grid point
   keeps its point and a sampled configuration is never drawn again.

What to train next (:func:`plan_work`) is a pure function of those folders (plus the
runs a scheduler has just handed out), so any worker, a rerun after a crash, or the Ray
driver computes the same answer: the runs every open configuration still needs (seed
indices ``0 .. seeds-1``, more where racing extends it), those not done and not locked
first; then a new configuration if the budget and the space allow. A configuration with a
pruned or failed run is closed: it gets no further seed. Racing replays the policy's
decisions level by level (seed indices below m) from the same folders, so a crash between
rounds changes nothing.

Optuna trials are one per run (see :mod:`mtsearch.backends.optuna_study`), the runs
table (:func:`load_runs`) has one row per run folder, and every write of ``sweep.json`` is
done under a lock and atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtsearch.faults import fault_point
from mtsearch.paths import runs_dir
from mtsearch.records import git_commit, run_scores, write_json  # run_scores: re-exported for callers
from mtsearch.sweep.keys import (
    CLOSING,
    CONFIG_FILE,
    DONE,
    LOCK_FILE,
    RUN_FILE,
    RunKey,
    config_dir,
    config_hashes,
    run_dir,
    runs_root,
    seed_indices,
)
from mtsearch.sweep.space import Space, params_key
from mtsearch.tasks import overall_score

log = logging.getLogger("mtsearch.sweep")
HOST = socket.gethostname()


def sweeps_dir() -> Path:
    return runs_dir() / "sweeps"


def sweep_name(space: Space, name: str | None = None) -> str:
    """The sweep's name: ``name``, else the space's (with its profile unless cpu)."""
    return name or (space.name if space.profile == "cpu" else f"{space.name}-{space.profile}")


# ----------------------------------------------------------------------------- locks
@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """Hold an flock on ``path`` (created if missing) for the block; waits for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class RunLock:
    """The flock a worker holds on a run while it trains it (``<run_dir>/.lock``).

    A process never probes (:func:`is_locked`) a run it holds itself: on NFS, Linux
    emulates flock with POSIX locks, which belong to the process and are dropped when it
    closes any descriptor of the file.
    """

    def __init__(self, fh):
        self._fh = fh

    @classmethod
    def try_acquire(cls, rd: Path) -> RunLock | None:
        rd.mkdir(parents=True, exist_ok=True)
        fh = open(rd / LOCK_FILE, "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        return cls(fh)

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def is_locked(rd: Path) -> bool:
    """Some live process trains this run (holds its lock)."""
    if not (rd / LOCK_FILE).exists():
        return False
    lock = RunLock.try_acquire(rd)
    if lock is None:
        return True
    lock.release()
    return False


# ------------------------------------------------------------------------ the sweep
@dataclass
class SweepContext:
    space: Space
    name: str
    backend: str
    sweep_dir: Path
    mlflow: bool = True
    mlflow_parent: str | None = None
    commit: str | None = None
    session: int = 0  # this invocation's index in sweep.json's sessions
    notes: list[str] = field(default_factory=list)  # what the user should know (seeds changed, ...)
    race_policy: Callable[[Any, Any], Any] | None = None  # tests may pass a policy; default: racing.decide
    threads: int | None = None  # torch threads of each run (--jobs splits the cores); None: the config's
    # Called with (sweep_dir, level, decision, extend) once per racing round this process sees complete (the
    # command's own process sets it to print the provisional tables; extra workers leave it None).
    on_round: Callable[[Path, int, Any, list[str]], None] | None = None
    _decisions: dict = field(default_factory=dict, repr=False)

    def run_dir(self, key: RunKey) -> Path:
        return run_dir(self.sweep_dir, key)


def read_sweep_meta(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / "sweep.json"
    return json.loads(path.read_text()) if path.exists() else {}


@contextlib.contextmanager
def _sweep_meta(sweep_dir: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write sweep.json under its lock; written atomically when the block ends."""
    with file_lock(sweep_dir / ".sweep.lock"):
        meta = read_sweep_meta(sweep_dir)
        yield meta
        if meta:
            write_json(sweep_dir / "sweep.json", meta)


def prepare_sweep(
    space: Space, name: str | None, backend: str, mlflow: bool = True, worker: bool = False
) -> SweepContext:
    """Create or reopen ``runs/sweeps/<name>/`` and register this invocation as a session.

    Refuses to mix two spaces (or backends) under one name. A changed ``seeds`` is taken
    up when it only adds seeds (every configuration gets them; ``ctx.notes`` says so) and
    refused when it would leave runs out. Every worker joins the sweep's one MLflow
    parent run.
    """
    from mtsearch.errors import ConfigError
    from mtsearch.paths import check_name

    name = check_name(sweep_name(space, name), "sweep name")
    sweep_dir = sweeps_dir() / name
    if (sweep_dir / "trials").is_dir() and not runs_root(sweep_dir).is_dir():
        raise ConfigError(f"sweep '{name}' in {sweep_dir} was written by an older mtsearch (trials/ folders); "
                          "start a new sweep with --name")  # fmt: skip
    sweep_dir.mkdir(parents=True, exist_ok=True)
    ctx = SweepContext(space, name, backend, sweep_dir, mlflow=mlflow, commit=git_commit())
    with _sweep_meta(sweep_dir) as meta:
        if meta:
            if meta.get("fingerprint") != space.fingerprint():
                raise ConfigError(
                    f"sweep '{name}' in {sweep_dir} was started with a different space (or settings); "
                    f"resume it unchanged, or start a new one with --name"
                )
            if meta.get("backend") != backend:
                raise ConfigError(
                    f"sweep '{name}' was started with backend '{meta.get('backend')}', not '{backend}'"
                )
            ctx.notes += _seeds_changed(ctx, meta)
        else:
            meta.update(name=name, space=space.describe(), fingerprint=space.fingerprint(), backend=backend,
                        created=time.time(), sweep_id=uuid.uuid4().hex, mlflow_parent=None, sessions=[])  # fmt: skip
            write_json(sweep_dir / "sweep.json", meta)  # before MLflow: the parent is found by sweep_id
        ctx.session = len(meta["sessions"])
        meta["sessions"].append({"started": time.time(), "host": HOST, "pid": os.getpid(), "worker": worker,
                                 "backend": backend})  # fmt: skip
        if mlflow:
            meta["mlflow_parent"] = ctx.mlflow_parent = _parent_run(ctx, meta)
    return ctx


def _seeds_changed(ctx: SweepContext, meta: dict[str, Any]) -> list[str]:
    """A resumed sweep whose space now asks for other seeds: add them, or refuse in one line."""
    from mtsearch.errors import ConfigError

    space, recorded = ctx.space, meta.get("space") or {}
    before = (int(recorded.get("seeds") or space.seeds), int(recorded.get("max_seeds") or recorded.get("seeds")
                                                                or space.max_seeds))  # fmt: skip
    now = (space.seeds, space.max_seeds)
    if before == now:
        return []
    highest = max(
        (k for h in config_hashes(ctx.sweep_dir) for k in seed_indices(ctx.sweep_dir, h)), default=-1
    )
    if space.max_seeds <= highest:
        raise ConfigError(
            f"sweep '{ctx.name}' has runs up to seed index {highest}, and seeds {_spec(now)} would leave them "
            f"out; resume it with seeds >= {highest + 1} (it had {_spec(before)}), or start a new sweep with --name"
        )
    recorded.update(seeds=space.seeds, max_seeds=space.max_seeds)
    meta["space"] = recorded
    if now[0] > before[0]:
        added = (
            f"seed indices {before[0]}..{now[0] - 1}" if now[0] - before[0] > 1 else f"seed index {before[0]}"
        )
        what = f"every configuration gets {added} (the runs already done are kept)"
    else:
        what = "configurations keep the runs they have; racing decides the rest"
    return [f"seeds changed from {_spec(before)} to {_spec(now)}: {what}"]


def _spec(seeds: tuple[int, int]) -> str:
    return str(seeds[0]) if seeds[0] == seeds[1] else f"{{min: {seeds[0]}, max: {seeds[1]}}}"


def _parent_run(ctx: SweepContext, meta: dict[str, Any]) -> str | None:
    """The sweep's one MLflow parent: recorded, or left by a session killed before recording it, or new."""
    try:
        from mtsearch import tracking

        parent = meta.get("mlflow_parent") or tracking.find_parent(meta["sweep_id"])
        if parent:
            tracking.set_status(parent, "RUNNING")  # a resumed sweep is running again
            return parent
        space = ctx.space
        parent = tracking.parent_run(
            ctx.name,
            {"space": space.name, "profile": space.profile, "algorithm": space.algorithm, "pruner": space.pruner,
             "seeds": space.seeds, "max_seeds": space.max_seeds, "base_seed": space.base_seed,
             "vary_data": space.vary_data, "objective": ",".join(space.objectives)},
            {"sweep": ctx.name, "space": space.name, "backend": ctx.backend, "git_commit": ctx.commit or "",
             "mtsearch.kind": "sweep", "mtsearch.sweep_id": meta["sweep_id"]},
        )  # fmt: skip
        fault_point("mlflow_parent")
        return parent
    except Exception as err:  # the sweep's own files are the record; MLflow only mirrors
        log.warning("MLflow parent run could not be created: %s", err)
        return None


def record_session(ctx: SweepContext, session: dict[str, Any]) -> None:
    """This invocation's wall time and counts, in its entry of sweep.json's sessions (for overhead figures)."""
    with _sweep_meta(ctx.sweep_dir) as meta:
        sessions = meta.setdefault("sessions", [])
        while len(sessions) <= ctx.session:
            sessions.append({})
        sessions[ctx.session] = {**sessions[ctx.session], **session}
    if ctx.mlflow and ctx.mlflow_parent:
        try:  # the parent run's step ctx.session: the sweep's totals after this session
            log_sweep_progress(ctx.mlflow_parent, ctx.sweep_dir, ctx.session)
        except Exception as err:  # the sweep's own files are the record; MLflow only mirrors
            log.warning("MLflow parent run could not be updated: %s", err)


@contextlib.contextmanager
def sweep_session(ctx: SweepContext) -> Iterator[None]:
    """The span of one invocation: MLflow runs left RUNNING by dead workers are closed at its start and end;
    the last session to end finishes the parent run (a shared flock tells who is last)."""
    path = ctx.sweep_dir / ".sessions.lock"
    fh = open(path, "a")
    fcntl.flock(fh, fcntl.LOCK_SH)
    try:
        close_orphan_mlflow_runs(ctx)
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            last = True
        except BlockingIOError:
            last = False  # another worker is still at work: it finishes the parent
        fault_point("session_end")
        if last:
            close_orphan_mlflow_runs(ctx)
            if ctx.mlflow_parent:
                with contextlib.suppress(Exception):
                    from mtsearch.tracking import set_status

                    set_status(ctx.mlflow_parent, "FINISHED")
        fh.close()


def close_orphan_mlflow_runs(ctx: SweepContext, own: RunKey | None = None) -> list[str]:
    """End MLflow runs of this sweep left RUNNING by a killed worker (their run is not locked).

    Their status follows the run folder: FINISHED for a run that finished (killed between
    its result and MLflow's update), KILLED for a pruned one, FAILED otherwise. ``own``: a
    run this process holds the lock of, about to train it again.
    """
    if not (ctx.mlflow and ctx.mlflow_parent):
        return []
    try:
        from mtsearch import tracking

        closed = []
        for run_id, tags in tracking.running_children(ctx.mlflow_parent):
            h, k = tags.get("config_hash"), tags.get("seed_index")
            if h is None or k is None or not str(k).isdigit():
                continue
            key = RunKey(h, int(k))
            rd = ctx.run_dir(key)
            if key != own and is_locked(rd):
                continue
            status = (_read_json(rd / "result.json") or {}).get("status")
            mstatus = {"finished": "FINISHED", "stopped_early": "FINISHED", "pruned": "KILLED"}.get(
                status, "FAILED"
            )
            tracking.set_status(run_id, mstatus)
            closed.append(run_id)
        return closed
    except Exception as err:
        log.warning("MLflow runs left running could not be closed: %s", err)
        return []


# -------------------------------------------------------------------- configurations
def register_configuration(ctx: SweepContext, params: dict[str, Any]) -> str:
    """Store a configuration's parameters (once) before any of its runs trains; returns its hash."""
    h = ctx.space.config_hash(params)
    path = config_dir(ctx.sweep_dir, h) / CONFIG_FILE
    if not path.exists():
        write_json(path, {"config_hash": h, "params": params, "params_key": params_key(params),
                          "created": time.time(), "session": ctx.session})  # fmt: skip
    return h


def read_configurations(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Every registered configuration (hash -> config.json), oldest first."""
    out = {}
    for h in config_hashes(sweep_dir):
        info = _read_json(config_dir(sweep_dir, h) / CONFIG_FILE)
        if info is not None:
            out[h] = info
    return dict(sorted(out.items(), key=lambda kv: (kv[1].get("created", 0.0), kv[0])))


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # missing or half-written
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------- the runs table
def load_runs(sweep_dir: Path | str):
    """The sweep's runs table: one row per run folder, each (config_hash, seed_index) once.

    Columns: ``config_hash, seed_index, seed, status, error, score`` (what the sweep ranks a
    run by: the single objective, else overall), ``overall`` and every task's score (NaN
    unless finished or stopped early), ``params`` (dict) and one column per space
    dimension (None where inactive), ``pruned_config`` (some run of the configuration was
    pruned), ``run_dir``, ``seconds``; also ``run`` (the folder under ``runs/``),
    ``params_key``, ``data_seed``, ``trial`` (the Optuna trial of its last attempt),
    ``best_step``, ``mlflow_run_id``.

    Status is the result's final status, else ``running`` (a worker holds the run's lock)
    or ``interrupted`` (nobody does: the next session trains it again).
    """
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    meta = read_sweep_meta(sweep_dir)
    space = meta.get("space") or {}
    dims = [d["name"] for d in space.get("dimensions", [])]
    objectives = list(space.get("objectives") or ["overall"])
    tasks = list((space.get("base") or {}).get("tasks") or ["sst", "para", "sts"])
    rank_by = objectives[0] if len(objectives) == 1 else "overall"
    rows = []
    for h, conf in read_configurations(sweep_dir).items():
        params = conf.get("params") or {}
        for k in seed_indices(sweep_dir, h):
            key = RunKey(h, k)
            rd = run_dir(sweep_dir, key)
            info = _read_json(rd / RUN_FILE) or {}
            res = _read_json(rd / "result.json") or {}
            status = res.get("status")
            if status not in DONE:
                status = "running" if is_locked(rd) else "interrupted"
            scores = run_scores(res) if status in ("finished", "stopped_early") else {}
            row: dict[str, Any] = {
                "config_hash": h, "seed_index": k, "seed": info.get("seed"), "status": status,
                "error": res.get("error") if status == "failed" else None,
                "score": float("nan"), "overall": overall_score(scores) if scores else float("nan"),
                **{t: float(scores[t]) if t in scores else float("nan") for t in tasks},
                "params": params, **{d: params.get(d) for d in dims},
                "pruned_config": False, "run_dir": str(rd), "seconds": res.get("seconds"),
                "run": key.rel, "params_key": conf.get("params_key") or params_key(params),
                "data_seed": info.get("data_seed"), "trial": info.get("trial"),
                "best_step": (res.get("best") or {}).get("step"), "mlflow_run_id": res.get("mlflow_run_id"),
            }  # fmt: skip
            row["score"] = row.get(rank_by, float("nan"))
            rows.append(row)
    cols = ["config_hash", "seed_index", "seed", "status", "error", "score", "overall", *tasks, "params", *dims,
            "pruned_config", "run_dir", "seconds", "run", "params_key", "data_seed", "trial", "best_step",
            "mlflow_run_id"]  # fmt: skip
    table = pd.DataFrame(rows, columns=list(dict.fromkeys(cols)))
    if not table.empty:
        pruned = set(table.loc[table["status"] == "pruned", "config_hash"])
        table["pruned_config"] = table["config_hash"].isin(pruned)
    return table


# ------------------------------------------------------------------------- planning
@dataclass
class Plan:
    """What a sweep still needs, read from its run folders."""

    pending: list[RunKey]  # runs to train now: not done, nobody trains them
    in_flight: list[RunKey]  # runs a live worker (or this scheduler) trains
    proposals_left: bool  # a new configuration may still be proposed
    next_point: dict[str, Any] | None  # grid: the next configuration to register
    finished_because: str | None  # nothing left: why the sweep is complete
    need: dict[str, int]  # seeds each open configuration needs (seed indices 0 .. n-1)
    configurations: dict[str, dict[str, Any]]


def plan_work(ctx: SweepContext, reserved: frozenset[RunKey] | set[RunKey] = frozenset(),
              budget: int | None = None) -> Plan:  # fmt: skip
    """The runs still needed and whether new configurations may be proposed: a function of the folders.

    ``reserved``: runs a scheduler has handed out but whose worker may not hold the lock
    yet (Ray). ``budget``: the most configurations to propose (None: no limit).
    """
    space = ctx.space
    configs = read_configurations(ctx.sweep_dir)
    status: dict[RunKey, str] = {}
    for h in configs:
        for k in seed_indices(ctx.sweep_dir, h):
            key = RunKey(h, k)
            res = _read_json(ctx.run_dir(key) / "result.json") or {}
            status[key] = res.get("status") if res.get("status") in DONE else "open"
    closed = {key.config_hash for key, s in status.items() if s in CLOSING}
    open_configs = [h for h in configs if h not in closed]

    next_point, proposals_left = None, False
    if space.exhaustive:
        # --trials N (budget) under a grid: its first N points in grid() order, then no more.
        known = set(configs)
        if budget is None or len(configs) < budget:
            next_point = next((p for p in _grid(ctx) if p[1] not in known), (None, None))[0]
        proposals_left = next_point is not None
    else:
        finite = _finite(ctx)
        proposals_left = (budget is None or len(configs) < budget) and (
            finite is None or len(configs) < finite
        )

    need = {h: space.seeds for h in open_configs}
    finished_because = None
    if not proposals_left:
        need, finished_because = _race(ctx, status, need, closed)

    pending, in_flight = [], []
    for k in range(max(need.values(), default=0)):  # seed-index-major inside a level: blocks fill evenly
        for h in open_configs:
            if k >= need[h]:
                continue
            key = RunKey(h, k)
            if status.get(key) in DONE:
                continue
            if key in reserved or is_locked(ctx.run_dir(key)):
                in_flight.append(key)
            else:
                pending.append(key)
    # Keep a configuration's seeds together where the race does not interleave them: the
    # first seeds of a configuration come before the next configuration's.
    order = {h: i for i, h in enumerate(configs)}
    pending.sort(key=lambda key: (key.seed_index >= space.seeds, order[key.config_hash], key.seed_index))
    if pending or in_flight or proposals_left:
        finished_because = None
    elif finished_because is None:
        finished_because = _complete_reason(ctx, len(configs), budget)
    return Plan(pending, in_flight, proposals_left, next_point, finished_because, need, configs)


def _complete_reason(ctx: SweepContext, n: int, budget: int | None) -> str:
    space = ctx.space
    if space.exhaustive:
        size = len(_grid(ctx))
        if budget is not None and budget < size:
            return f"the first {budget} of the grid's {size} configurations are done (--trials {budget})"
        return "every grid configuration is done"
    if _finite(ctx) is not None and (budget is None or n < budget):
        return f"every one of the space's {n} distinct configurations is done"
    return f"{n} configurations done"


def _grid(ctx: SweepContext) -> list[tuple[dict[str, Any], str]]:
    """The grid's points with their configuration hashes (computed once per process)."""
    cache = ctx._decisions.setdefault("grid", None)
    if cache is None:
        cache = [(p, ctx.space.config_hash(p)) for p in ctx.space.grid()]
        ctx._decisions["grid"] = cache
    return cache


def _finite(ctx: SweepContext) -> int | None:
    """How many distinct configurations the space has, None when unbounded (a float range)."""
    if "finite" not in ctx._decisions:
        points = ctx.space.finite_grid()
        ctx._decisions["finite"] = None if points is None else len({ctx.space.config_hash(p) for p in points})
    return ctx._decisions["finite"]


def finite_points(ctx: SweepContext) -> list[tuple[dict[str, Any], str]]:
    """A finite space's configurations with their hashes (for a sampler that keeps repeating itself)."""
    points = ctx.space.finite_grid() or []
    return [(p, ctx.space.config_hash(p)) for p in points]


def _race(ctx: SweepContext, status: dict[RunKey, str], need: dict[str, int], closed: set[str]):
    """Racing: replay the policy round by round (level m = the runs of seed index < m).

    At a level whose every needed run is done, the policy sees those runs and names the
    configurations that get seed index m (all of them the same index); the next level
    needs them. Returns the seeds each open configuration needs now and, when the race is
    over, why.
    """
    space = ctx.space
    if not space.racing:
        return need, None
    m = space.seeds
    while True:
        if any(status.get(RunKey(h, k)) not in DONE for h, n in need.items() for k in range(n)):
            return need, None  # this level's runs are still to train
        if m >= space.max_seeds:
            return need, f"racing: every configuration still open reached seeds.max = {space.max_seeds}"
        decision = _decide(ctx, m)
        if decision.stop:
            return need, f"racing: {decision.reason}"
        extend = [h for h in decision.extend if h in need and h not in closed]
        if not extend:
            return need, f"racing: {decision.reason or 'no configuration left to extend'}"
        for h in extend:
            need[h] = m + 1
        ctx._decisions["round"] = (m, decision, extend)  # the latest round decided: what it is for
        m += 1


def announce_round(ctx: SweepContext) -> None:
    """Tell ``ctx.on_round`` of the latest racing round :func:`plan_work` found decided, once per round.

    Called by a backend's scheduler after planning, outside the propose lock (the callback
    reads every run folder). A resumed sweep announces the round it stands at first.
    """
    latest = ctx._decisions.get("round")
    shown = ctx._decisions.setdefault("rounds shown", set())
    if ctx.on_round is None or latest is None or latest[0] in shown:
        return
    shown.add(latest[0])
    ctx.on_round(ctx.sweep_dir, *latest)


def _decide(ctx: SweepContext, level: int):
    """The race policy's decision on the runs below seed index ``level`` (memoised: done runs never change)."""
    runs = load_runs(ctx.sweep_dir)
    table = runs[(runs["seed_index"] < level) & runs["status"].isin(DONE)].reset_index(drop=True)
    memo_key = (
        "race",
        level,
        tuple(zip(table["run"], table["status"], table["score"].fillna(-1e9), strict=True)),
    )
    if memo_key not in ctx._decisions:
        policy = ctx.race_policy
        if policy is None:
            from mtsearch.sweep.racing import decide as policy  # type: ignore[no-redef]
        ctx._decisions[memo_key] = policy(table, ctx.space)
    return ctx._decisions[memo_key]


# -------------------------------------------------------------------------- a run
def objective_values(space: Space, summary: dict[str, Any]) -> list[float]:
    """A finished run's value of each objective (overall or a task's score)."""
    scores = summary["scores"]
    return [float(summary["overall"] if o == "overall" else scores[o]) for o in space.objectives]


def _clear(rd: Path) -> bool:
    """Remove what an interrupted attempt left in a run folder (its lock stays); True if there was any."""
    stale = False
    for p in rd.iterdir() if rd.is_dir() else []:
        if p.name == LOCK_FILE:
            continue
        stale = True
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


def execute_run(
    ctx: SweepContext,
    key: RunKey,
    params: dict[str, Any],
    report: Callable[[int, dict[str, float]], None] | None = None,
    *,
    trial: int | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train one run into its folder; the caller holds its :class:`RunLock`. Returns its summary.

    A folder an earlier attempt left (killed mid-run) is emptied first, and that attempt's
    MLflow run closed. A run that fails is recorded as failed with its error, also when
    it fails before the trainer opened its records (a bad configuration, missing data).
    Pruned (from ``report``) and KeyboardInterrupt propagate after the trainer wrote them.
    """
    from mtsearch.errors import Pruned
    from mtsearch.train import train

    space, rd = ctx.space, ctx.run_dir(key)
    if _clear(rd):
        close_orphan_mlflow_runs(ctx, own=key)
    seed = space.seed_for(key.seed_index)
    info = {"sweep": ctx.name, "space": space.name, "backend": ctx.backend, "config_hash": key.config_hash,
            "seed_index": key.seed_index, "seed": seed, "data_seed": space.data_seed, "params": params,
            "params_key": params_key(params), "trial": trial, "session": ctx.session,
            "worker": f"{HOST}:{os.getpid()}", "started": time.time()}  # fmt: skip
    write_json(rd / RUN_FILE, info)
    fault_point("run_start")

    def run_report(step: int, metrics: dict[str, float]) -> None:
        fault_point("during_run")
        if report is not None:
            report(step, metrics)

    mtags = {"sweep": ctx.name, "space": space.name, "backend": ctx.backend, "config_hash": key.config_hash,
             "seed_index": str(key.seed_index), "seed": str(seed), "params_key": info["params_key"],
             "trial": "" if trial is None else str(trial), "git_commit": ctx.commit or "",
             "mtsearch.kind": "trial", "mtsearch.score": space.objectives[0] if len(space.objectives) == 1
             else "overall", **(tags or {})}  # fmt: skip
    try:
        threads = {} if ctx.threads is None else {"num_threads": ctx.threads}  # outside the config hash
        cfg = space.run_config(params, key.seed_index, name=f"{key.config_hash}-s{key.seed_index}",
                               progress=False, mlflow=ctx.mlflow, **threads)  # fmt: skip
        from mtsearch.tracking import dimension_params

        train(cfg, report=run_report, run_dir=rd, mlflow_parent=ctx.mlflow_parent, mlflow_tags=mtags,
              mlflow_params=dimension_params([d.name for d in space.dimensions], params))  # fmt: skip
    except (Pruned, KeyboardInterrupt):
        raise
    except Exception as err:
        res = _read_json(rd / "result.json") or {}
        if res.get("status") not in DONE:  # failed before the trainer could record it
            write_json(
                rd / "result.json", {"status": "failed", "error": f"{type(err).__name__}: {err}"[:4000]}
            )
        log.warning("run %s (%s) failed: %s: %s", key, describe_params(params), type(err).__name__, err)
    fault_point("after_result")
    return run_summary(ctx, key)


def run_summary(ctx: SweepContext, key: RunKey) -> dict[str, Any]:
    """What a run's folder says of it: status, error, scores, the objective values."""
    rd = ctx.run_dir(key)
    res = _read_json(rd / "result.json") or {}
    status = res.get("status") if res.get("status") in DONE else None
    scores = run_scores(res) if status in ("finished", "stopped_early") else {}
    out = {"key": key, "run_dir": str(rd), "status": status, "error": res.get("error"), "scores": scores,
           "overall": overall_score(scores) if scores else float("nan"), "seconds": res.get("seconds") or 0.0,
           "train_eval_seconds": _train_eval_seconds(rd)}  # fmt: skip
    out["values"] = objective_values(ctx.space, out) if scores else None
    return out


def _train_eval_seconds(rd: Path) -> float:
    from mtsearch.records import read_metrics

    rows = [r for r in read_metrics(rd / "metrics.jsonl") if r.get("kind") == "eval"]
    if not rows:
        return 0.0
    return float(rows[-1].get("train_seconds", 0.0) + rows[-1].get("eval_seconds", 0.0))


def describe_params(params: dict[str, Any]) -> str:
    """``sampler=temperature, sampler_args.temperature=2.0`` (``base`` for no parameter)."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "base"


def format_failures(runs, limit: int = 10) -> list[str]:
    """Failed runs with their errors, for the closing output."""
    failed = runs[runs["status"] == "failed"] if not runs.empty else runs
    lines = []
    for _, r in failed.head(limit).iterrows():
        lines.append(f"  {r['run']} ({describe_params(r['params'])}): {r['error'] or 'no error recorded'}")
    if len(failed) > limit:
        lines.append(f"  ... and {len(failed) - limit} more (see runs/<config>/s<k>/result.json)")
    return lines


# ------------------------------------------------------------- MLflow parent
def log_sweep_progress(run_id: str, sweep_dir: Path, session: int) -> dict[str, float]:
    """The sweep's state as its parent run shows it, at step ``session`` (one step per session).

    Read from the run folders (the truth) and sweep.json, so every value is the sweep's
    total so far, never this session's alone: a resumed sweep's parent keeps counting up
    and the history of earlier sessions stays. ``best_score`` is the best configuration's
    mean score over its finished runs (how the sweep ranks configurations); its hash and
    parameters go in tags, sweep.json in the artifacts. Returns the metrics logged.
    """
    import json

    from mtsearch.tracking import _log_metrics, mlflow_client

    runs = load_runs(sweep_dir)
    meta = json.loads((Path(sweep_dir) / "sweep.json").read_text())
    count = {s: int((runs["status"] == s).sum()) if not runs.empty else 0
             for s in ("finished", "stopped_early", "failed", "pruned")}  # fmt: skip
    metrics: dict[str, float] = {
        "runs_done": sum(count.values()),
        "runs_finished": count["finished"] + count["stopped_early"],
        "runs_failed": count["failed"],
        "runs_pruned": count["pruned"],
        "configurations": int(runs["config_hash"].nunique()) if not runs.empty else 0,
        "wall_seconds": float(sum(s.get("wall_seconds") or 0.0 for s in meta.get("sessions", []))),
        "sessions": len(meta.get("sessions", [])),
    }
    tags = {}
    scored = runs[runs["score"].notna() & ~runs["pruned_config"]] if not runs.empty else runs
    if len(scored):
        means = scored.groupby("config_hash")["score"].agg(["mean", "size"])
        best = means["mean"].idxmax()
        metrics["best_score"] = float(means.loc[best, "mean"])
        metrics["best_score_runs"] = int(means.loc[best, "size"])
        params = scored.loc[scored["config_hash"] == best, "params"].iloc[0]
        tags = {"mtsearch.best_config": str(best), "mtsearch.best_params": describe_params(params)[:5000]}
    client = mlflow_client()
    _log_metrics(client, run_id, session, metrics)
    for k, v in tags.items():
        client.set_tag(run_id, k, v)
    try:
        client.log_artifact(run_id, str(Path(sweep_dir) / "sweep.json"))
    except Exception as err:
        log.warning("could not copy sweep.json to MLflow: %s", err)
    return metrics
