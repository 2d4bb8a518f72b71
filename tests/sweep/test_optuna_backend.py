"""The Optuna backend end to end on the smoke space (tiny model, real data)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from mtsearch.backends import BACKENDS
from mtsearch.sweep.results import compute, format_results, write_tables
from mtsearch.sweep.space import load_space

ROOT = Path(__file__).resolve().parents[2]


def study_of(runs: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'sweeps' / name / 'study.db'}")


def mlflow_runs(runs: Path, sweep: str):
    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mtsearch")
    return client, client.search_runs([exp.experiment_id], filter_string=f"tags.sweep = '{sweep}'")


def test_smoke_sweep_study_mlflow_and_results(sweep_env):
    runs = sweep_env
    out = BACKENDS.get("optuna")().run(load_space("smoke"), progress=False)
    assert out.runs == 4 and out.counts["complete"] == 2 and out.counts["fail"] == 0
    study = study_of(runs, "smoke")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["sampler"] for t in done) == ["round_robin", "temperature"]
    assert all({"seed_0", "seed_1"} <= set(t.user_attrs) for t in done)
    # The trial's value is the mean over seeds of each seed's best overall.
    for t in done:
        assert t.value == pytest.approx(
            (t.user_attrs["seed_0"]["overall"] + t.user_attrs["seed_1"]["overall"]) / 2
        )

    client, mruns = mlflow_runs(runs, "smoke")
    parents = [r for r in mruns if r.data.tags.get("mtsearch.kind") == "sweep"]
    children = [r for r in mruns if r.data.tags.get("mtsearch.kind") == "trial"]
    assert len(parents) == 1 and len(children) == 4
    pid = parents[0].info.run_id
    for c in children:
        tags = c.data.tags
        assert tags["mlflow.parentRunId"] == pid and c.info.status == "FINISHED"
        assert {"sweep", "space", "backend", "seed", "config_hash", "git_commit", "trial"} <= set(tags)
        assert c.data.params["sampler"] in ("round_robin", "temperature")
        assert "best_overall" in c.data.metrics

    res = compute("smoke")
    assert len(res.configurations) == 2 and set(res.configurations["seeds"]) == {2}
    text = format_results(res)
    assert "ablation: sampler" in text and "round_robin" in text and "95% CI" in text
    trials_csv, ablation_csv = write_tables(res)
    assert trials_csv.read_text().count("\n") == 3
    ab = res.ablation[(res.ablation.dimension == "sampler") & (res.ablation.metric == "overall")]
    assert set(ab.level) == {"round_robin", "temperature"} and set(ab.n) == {2}

    # Running the same sweep again resumes it: nothing is rerun.
    again = BACKENDS.get("optuna")().run(load_space("smoke"), progress=False)
    assert again.runs == 0 and again.stopped_because == "every grid configuration is done"


def test_a_failing_trial_does_not_stop_the_sweep(sweep_env, tmp_path):
    space = tmp_path / "fail.yaml"
    space.write_text(
        (ROOT / "search_spaces" / "smoke.yaml")
        .read_text()
        .replace("dimensions:\n", "dimensions:\n  freeze_layers:\n    values: [0, 9]\n")
        .replace("name: smoke", "name: failing")
        .replace("seeds: 2", "seeds: 1")
    )
    out = BACKENDS.get("optuna")().run(load_space(str(space)), progress=False, mlflow=False)
    study = study_of(sweep_env, "failing")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # freeze_layers 9 on a 2-layer model fails at train time; the other 2 configurations still ran.
    assert len(failed) == 2 and len(complete) == 2
    assert all("freeze_layers" in t.user_attrs["error"] for t in failed)
    assert out.counts["fail"] == 2


def _cli(*args, env):
    exe = Path(sys.executable).parent / "mtsearch"
    return subprocess.Popen(
        [str(exe), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_sigkill_mid_trial_then_resume(sweep_env, data_dir):
    runs = sweep_env
    env = {**os.environ, "MTSEARCH_RUNS": str(runs), "MTSEARCH_DATA": str(data_dir)}
    args = ["sweep", "smoke", "--quiet", "--set", "max_steps=30", "--set", "eval_every=10"]
    proc = _cli(*args, env=env)
    trials = runs / "sweeps" / "smoke" / "trials"
    # Kill once seed 0 of the first configuration is finished and seed 1 is training.
    deadline = time.time() + 240
    while time.time() < deadline:
        if (trials / "t0000-s0" / "result.json").exists() and (
            trials / "t0000-s1" / "metrics.jsonl"
        ).exists():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the sweep never reached the second seed: " + proc.communicate()[1][-2000:])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = (trials / "t0000-s0" / "result.json").stat().st_mtime

    done = subprocess.run([str(Path(sys.executable).parent / "mtsearch"), *args], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    study = study_of(runs, "smoke")
    states = [(t.number, t.state.name, t.params.get("sampler")) for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    # Every configuration done exactly once; the killed trial failed and was retried.
    assert sorted(t.params["sampler"] for t in complete) == ["round_robin", "temperature"], states
    assert len(failed) == 1 and "died" in failed[0].user_attrs["error"]
    retry = next(t for t in complete if t.user_attrs.get("retry_of") == failed[0].number)
    # The finished seed of the killed trial was kept, not rerun.
    assert retry.user_attrs["seed_0"]["run_dir"].endswith("t0000-s0")
    assert (trials / "t0000-s0" / "result.json").stat().st_mtime == finished_before
    assert json.loads((trials / "t0000-s1" / "result.json").read_text())["status"] == "killed"
    # The MLflow run the kill interrupted is marked failed; every other child finished.
    _, mruns = mlflow_runs(runs, "smoke")
    by_status = {}
    for r in mruns:
        if r.data.tags.get("mtsearch.kind") == "trial":
            by_status.setdefault(r.info.status, []).append(r.data.tags["trial"] + "-" + r.data.tags["seed"])
    assert by_status.get("FAILED") == ["0-1"] and len(by_status["FINISHED"]) == 4


def test_two_workers_never_run_a_configuration_twice(sweep_env, data_dir, tmp_path):
    runs = sweep_env
    space = tmp_path / "two.yaml"
    space.write_text(
        (ROOT / "search_spaces" / "smoke.yaml").read_text()
        .replace("name: smoke", "name: two")
        .replace("seeds: 2", "seeds: 1")
        .replace("  sampler:\n    choices: [round_robin, temperature]",
                 "  sampler:\n    choices: [round_robin, temperature, proportional, rr_under, sequential, annealed]")
        .replace("max_steps: 4", "max_steps: 12")
    )  # fmt: skip
    env = {**os.environ, "MTSEARCH_RUNS": str(runs), "MTSEARCH_DATA": str(data_dir)}
    first = _cli("sweep", str(space), "--quiet", "--no-mlflow", env=env)
    db = runs / "sweeps" / "two" / "study.db"
    deadline = time.time() + 120
    while time.time() < deadline and not (runs / "sweeps" / "two" / "trials").exists():
        time.sleep(0.2)
    second = _cli("sweep", str(space), "--quiet", "--no-mlflow", "--worker", env=env)
    for p in (first, second):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    assert db.exists()
    study = study_of(runs, "two")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    keys = [t.user_attrs["params_key"] for t in complete]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) == 2, "both workers took trials"
    # One run directory per configuration: nothing trained twice.
    assert len(list((runs / "sweeps" / "two" / "trials").iterdir())) == 6
