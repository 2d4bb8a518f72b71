"""`mtsearch sweep --jobs N`: N workers of one sweep on one machine (tiny model, first rows of the real data)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mtsearch import faults
from mtsearch.cli import main
from mtsearch.sweep.runner import load_runs
from tests.sweep import fault_harness as F


@pytest.fixture
def jobs_env(runs, small_data_dir, monkeypatch):
    monkeypatch.setenv("MTSEARCH_DATA", str(small_data_dir))
    return runs


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", ""])
def test_bad_jobs_end_in_one_line(runs, value, capsys):
    assert main(["sweep", "smoke", "--quiet", "--jobs", value]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"mtsearch: error: --jobs is the number of runs trained at once, a whole number >= 1 (got {value})"
    )
    assert not (runs / "sweeps").exists()


def test_ray_refuses_jobs_and_points_at_cpus_per_trial(runs, capsys):
    assert main(["sweep", "smoke", "--quiet", "--backend", "ray", "--jobs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtsearch: error: --jobs is for the optuna backend") and "\n" not in err
    assert "--cpus-per-trial" in err


@pytest.mark.e2e
def test_two_jobs_train_every_run_once_with_the_scores_of_one(jobs_env, tmp_path, capsys, monkeypatch):
    runs = jobs_env
    space = F.fault_space(tmp_path, "jobs")  # four samplers, two seeds: eight runs
    assert main(["sweep", str(space), "--quiet", "--no-mlflow", "--name", "one", "--jobs", "1"]) == 0
    reference = F.scores_by_key(load_runs(runs / "sweeps" / "one"))
    assert len(reference) == 8
    # Each process's first run waits at its start until two have started: the job (a fresh process,
    # seconds of imports behind the command) trains runs however fast the command is.
    monkeypatch.setenv("MTSEARCH_HOLD", "run_start:1:2")
    monkeypatch.setattr(faults, "_seen", {})  # this process counts its points afresh
    assert main(["sweep", str(space), "--quiet", "--name", "two", "--jobs", "2"]) == 0
    monkeypatch.delenv("MTSEARCH_HOLD")
    out = capsys.readouterr().out
    assert "8 run(s) trained" in out  # the command counts its job's runs too
    # two runs at once: their training times add up beyond the wall time, the overhead does not go negative
    line = [x for x in out.splitlines() if x.startswith("time outside training and evaluation:")][-1]
    assert line.endswith("% of the wall time of 2 runs at once") and 0 <= float(line.split()[5][:-1]) < 100
    sweep_dir = runs / "sweeps" / "two"
    # Each (configuration, seed) once with the one-job scores; nothing left RUNNING or locked;
    # one MLflow parent, FINISHED, and one FINISHED child per run.
    assert F.problems(sweep_dir, reference, seeds=2, configurations=4, mlflow=True) == []
    table = load_runs(sweep_dir)
    assert set(table["status"]) == {"finished"}  # "running" would mean a lock is still held
    meta = F.meta(sweep_dir)
    assert [s["worker"] for s in meta["sessions"]] == [False, True], "the command and one job"
    assert sum(s["runs"] for s in meta["sessions"]) == 8 and meta["sessions"][0]["jobs_runs"] == 8
    assert meta["sessions"][1]["runs"] > 0, "the job trained runs beside the command"
    # The cores split between the jobs, capped by the space's num_threads: 1 (what torch ran with).
    envs = [json.loads((Path(rd) / "env.json").read_text()) for rd in table["run_dir"]]
    assert {e["torch_threads"] for e in envs} == {1}


@pytest.mark.e2e
def test_the_jobs_keep_the_commands_budget(jobs_env, tmp_path):
    """--trials reaches every job: a random search over four samplers with --trials 1 trains one configuration."""
    space = F.fault_space(tmp_path, "budget")
    space.write_text(space.read_text().replace("algorithm: grid", "algorithm: random"))
    assert main(["sweep", str(space), "--quiet", "--no-mlflow", "--jobs", "2", "--trials", "1"]) == 0
    table = load_runs(jobs_env / "sweeps" / "budget")
    assert table["config_hash"].nunique() == 1 and sorted(table["seed_index"]) == [0, 1]


@pytest.mark.e2e
def test_ctrl_c_stops_the_jobs_and_their_runs_are_trained_on_resume(jobs_env, tmp_path):
    runs = jobs_env
    space = F.fault_space(tmp_path, "stop", seeds=1)
    # Every process holds at its first evaluation report (inside the trainer) until a signal ends it: the
    # Ctrl-C always finds the job mid-run, however fast or slow the machine.
    env = F.sweep_env(runs, Path(os.environ["MTSEARCH_DATA"]), Path(os.environ["MTSEARCH_CACHE"]),
                      MTSEARCH_HOLD="during_run:1")  # fmt: skip
    cmd = [sys.executable, "-m", "mtsearch.cli", "sweep", str(space), "--quiet", "--jobs", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sweep_dir = runs / "sweeps" / "stop"
    job_pid = F.wait_for_hold(runs, "during_run", proc, other_than=proc.pid)
    victim = next(
        info.parent
        for info in sweep_dir.glob("runs/*/s*/run.json")
        if json.loads(info.read_text())["worker"].endswith(f":{job_pid}")
    )
    proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the command
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    with pytest.raises(ProcessLookupError):  # the job ended with the command
        os.kill(job_pid, 0)
    table = load_runs(sweep_dir)
    assert "running" not in set(table["status"]), "a run is still locked"
    assert str(victim) in set(table.loc[table["status"] == "interrupted", "run_dir"]), "the job's run is open"
    # The resume trains what was interrupted; every run once, every study trial closed.
    assert main(["sweep", str(space), "--quiet", "--jobs", "2"]) == 0
    table = load_runs(sweep_dir)
    assert len(table) == 4 and set(table["status"]) == {"finished"}
    assert table.groupby("config_hash").size().tolist() == [1, 1, 1, 1]
    import optuna

    study = optuna.load_study(study_name="stop", storage=f"sqlite:///{sweep_dir / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 4 and "RUNNING" not in states
