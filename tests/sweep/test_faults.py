"""Fault injection: SIGKILL a sweep at every kind of moment, resume at once, compare with no kill.

Each sweep process gets ``MTSEARCH_FAULT=<point>:<n>`` and kills itself there
(:mod:`mtsearch.faults`); the next process resumes right away. Optuna sweep processes are
forked from a helper that imported everything once (:class:`fault_harness.Forker`); Ray
sweeps are plain processes. At the end every
configuration has each seed once, the runs table's scores equal an uninterrupted sweep's
(key by key: scores are deterministic per seed), no study trial and no MLflow run is
left RUNNING. The space is the smoke space with four samplers and two seeds on the first
rows of the real files, so a kill costs a process start, not training.
"""

from __future__ import annotations

import pytest

from tests.sweep import fault_harness as F

#: One worker: the kills in order, each in its own process (the sweep goes on between them).
CHAIN = [
    "mlflow_parent:1",  # a parent run created, not recorded
    "cache_build:1",  # the first run's token cache half-written
    "during_run:1",  # the retried first run, after its first evaluation
    "after_result:1",  # its result written, the study not told
    "trial_created:1",  # between seeds: seed 1 locked, not started
    "between_runs:2",  # between configurations: one done in this process, the next not begun
    "propose:1",  # a configuration's params stored, no run of it started
    "after_tell:1",  # told, lock not released
    "run_start:1",  # run.json written, the trainer not started
    "session_end:1",  # all done, the parent not finished
]


# Whole sweeps in subprocesses killed at every fault point: minutes, so behind `make test-e2e`.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def forker(tmp_path_factory, small_data_dir):
    base = tmp_path_factory.mktemp("forker")
    f = F.Forker(F.sweep_env(base / "runs", small_data_dir, base / "cache"))  # imports while others work
    yield f
    f.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_data_dir):
    """The same space swept without a kill (in this process; scores do not depend on MLflow)."""
    import os

    from mtsearch.backends import BACKENDS
    from mtsearch.sweep.runner import load_runs
    from mtsearch.sweep.space import load_space

    tmp = tmp_path_factory.mktemp("reference")
    space = F.fault_space(tmp, "faults")
    saved = {k: os.environ.get(k) for k in ("MTSEARCH_RUNS", "MTSEARCH_DATA", "MTSEARCH_CACHE")}
    os.environ.update(MTSEARCH_RUNS=str(tmp / "runs"), MTSEARCH_DATA=str(small_data_dir),
                      MTSEARCH_CACHE=str(tmp / "cache"))  # fmt: skip
    try:
        out = BACKENDS.get("optuna")().run(load_space(str(space)), progress=False, mlflow=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    table = load_runs(out.sweep_dir)
    assert len(table) == 8 and set(table["status"]) == {"finished"}
    return F.scores_by_key(table)


# Under pytest-xdist (--dist loadgroup) the Optuna chains share one worker's forker and reference.
@pytest.mark.xdist_group("faults")
def test_optuna_one_worker_survives_a_kill_at_every_point(tmp_path, small_data_dir, forker, reference):
    space = F.fault_space(tmp_path, "faults")
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    env = F.sweep_env(runs, small_data_dir, cache)
    for fault in CHAIN:
        code, log = forker.run(space, env, fault)
        point = fault.replace(":", "-")
        assert point in F.fired(runs), f"{fault} was never reached (exit {code}): {log[-2000:]}"
        assert code == -9, f"{fault}: the process was not killed (exit {code}): {log[-2000:]}"
    code, log = forker.run(space, env)
    assert code == 0, log[-3000:]
    assert "every grid configuration is done" in log
    sweep_dir = runs / "sweeps" / "faults"
    assert F.problems(sweep_dir, reference, seeds=2, configurations=4, mlflow=True) == []
    # The last process only closed what the killed ones left: it trained nothing.
    assert F.meta(sweep_dir)["sessions"][-1]["runs"] == 0


@pytest.mark.xdist_group("faults")
def test_optuna_two_workers_survive_kills(tmp_path, small_data_dir, forker, reference):
    space = F.fault_space(tmp_path, "faults")
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    env = F.sweep_env(runs, small_data_dir, cache)
    # Both start on the fresh sweep; one dies mid-run, the other after a result it has not told.
    a = forker.start(space, env, "during_run:3")
    b = forker.start(space, env, "after_result:2", "--worker")
    results = [forker.wait(a), forker.wait(b)]
    assert {"during_run-3", "after_result-2"} <= F.fired(runs), [r[1][-1500:] for r in results]
    assert [r[0] for r in results] == [-9, -9], [r[1][-1500:] for r in results]
    code, log = forker.run(space, env, None, "--worker")
    assert code == 0, log[-3000:]
    assert F.problems(runs / "sweeps" / "faults", reference, seeds=2, configurations=4, mlflow=True) == []


@pytest.mark.xdist_group("ray")  # with the other Ray tests (tests/sweep/test_ray_backend.py)
def test_ray_survives_a_killed_worker_and_a_killed_driver(tmp_path, small_data_dir, reference):
    space = F.fault_space(tmp_path, "faults")
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    env = F.sweep_env(runs, small_data_dir, cache)
    # A Ray worker dies in its first run (the driver hands the run out again), then the
    # driver dies between a run's end and the study update; the next rerun finishes.
    code, _, err = F.run(space, env, "during_run:1,ray_complete:3", "--backend", "ray")
    assert {"during_run-1", "ray_complete-3"} <= F.fired(runs), err[-3000:]
    assert code == -9, err[-3000:]
    code, out, err = F.run(space, env, None, "--backend", "ray")
    assert code == 0, err[-3000:]
    assert "every grid configuration is done" in out
    assert F.problems(runs / "sweeps" / "faults", reference, seeds=2, configurations=4, mlflow=True) == []
