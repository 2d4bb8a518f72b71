"""The Optuna backend end to end on the smoke space (tiny model, real data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from mtsearch.backends import BACKENDS
from mtsearch.sweep.keys import RunKey, run_dir
from mtsearch.sweep.results import compute, format_results, write_tables
from mtsearch.sweep.runner import load_runs
from mtsearch.sweep.space import load_space

ROOT = Path(__file__).resolve().parents[2]


def study_of(runs: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'sweeps' / name / 'study.db'}")


def mlflow_runs(runs: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mtsearch")
    return client.search_runs([exp.experiment_id], max_results=1000)


def space_file(tmp_path: Path, name: str, *replacements: tuple[str, str]) -> Path:
    text = (ROOT / "search_spaces" / "smoke.yaml").read_text().replace("name: smoke", f"name: {name}")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_smoke_sweep_study_mlflow_and_results(sweep_env):
    runs = sweep_env
    out = BACKENDS.get("optuna")().run(load_space("smoke"), progress=False)
    assert out.runs == 4 and out.counts == {"finished": 4, "configurations": 2}
    # The runs table: each (configuration, seed index) once, scores and dimensions as columns.
    table = load_runs(runs / "sweeps" / "smoke")
    assert sorted(table["seed_index"]) == [0, 0, 1, 1] and table["config_hash"].nunique() == 2
    assert set(table["sampler"]) == {"round_robin", "temperature"} and table["score"].notna().all()
    assert (table["score"] == table["overall"]).all() and not table["pruned_config"].any()
    # One Optuna trial per run, flat attributes, the objective as the metric name.
    study = study_of(runs, "smoke")
    assert study.metric_names == ["overall"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4 == len(study.trials)
    for t in done:
        attrs = t.user_attrs
        assert not any(isinstance(v, dict | list) for v in attrs.values()), attrs
        row = table[(table.config_hash == attrs["config_hash"]) & (table.seed_index == attrs["seed_index"])]
        assert t.value == pytest.approx(float(row["score"].iloc[0])) == pytest.approx(attrs["overall"])
        assert attrs["run"] == f"{attrs['config_hash']}/s{attrs['seed_index']}"
        # One seed's curve on its own steps (an evaluation every 2 of 4 steps).
        assert sorted(t.intermediate_values) == [2, 4]

    mruns = mlflow_runs(runs)
    parents = [r for r in mruns if r.data.tags.get("mtsearch.kind") == "sweep"]
    children = [r for r in mruns if r.data.tags.get("mtsearch.kind") == "trial"]
    assert len(parents) == 1 and len(children) == 4 and parents[0].info.status == "FINISHED"
    pid = parents[0].info.run_id
    for c in children:
        tags = c.data.tags
        assert tags["mlflow.parentRunId"] == pid and c.info.status == "FINISHED"
        assert {"sweep", "space", "backend", "seed", "seed_index", "config_hash", "git_commit"} <= set(tags)
        assert c.data.params["sampler"] in ("round_robin", "temperature")
        assert "best_overall" in c.data.metrics

    res = compute("smoke")
    assert len(res.configurations) == 2 and set(res.configurations["seeds"]) == {2}
    text = format_results(res)
    assert "ablation: sampler" in text and "round_robin" in text and "95% interval" in text
    # Every run scored the same held-out rows and stored them: the evaluation-set noise is shown.
    noise = res.eval_noise[("sampler", "overall")]
    assert noise["which"] == "half_b" and noise["level_sd"] and "noise: evaluation set" in text
    trials_csv, ablation_csv = write_tables(res)
    assert trials_csv.read_text().count("\n") == 3

    # Running the same sweep again resumes it: nothing is rerun, the parent is the same and finished.
    again = BACKENDS.get("optuna")().run(load_space("smoke"), progress=False)
    assert again.runs == 0 and again.stopped_because == "every grid configuration is done"
    parents = [r for r in mlflow_runs(runs) if r.data.tags.get("mtsearch.kind") == "sweep"]
    assert [p.info.run_id for p in parents] == [pid] and parents[0].info.status == "FINISHED"


def test_failed_runs_are_recorded_with_their_error(sweep_env, tmp_path):
    space = space_file(tmp_path, "failing", ("dimensions:\n", "dimensions:\n  freeze_layers:\n    values: [0, 9]\n"),
                       ("seeds: 2", "seeds: 1"))  # fmt: skip
    out = BACKENDS.get("optuna")().run(load_space(str(space)), progress=False, mlflow=False)
    # freeze_layers 9 on a 2-layer model fails at train time; the other 2 configurations still ran.
    assert out.counts == {"finished": 2, "failed": 2, "configurations": 4}
    table = load_runs(sweep_env / "sweeps" / "failing")
    failed = table[table.status == "failed"]
    assert len(failed) == 2 and failed["error"].str.contains("freeze_layers").all()
    assert failed["score"].isna().all() and set(failed["freeze_layers"]) == {9}
    study = study_of(sweep_env, "failing")
    fails = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(fails) == 2 and all("freeze_layers" in t.user_attrs["error"] for t in fails)
    # Failed runs are done: a rerun does not train them again, and results never call them unfinished.
    again = BACKENDS.get("optuna")().run(load_space(str(space)), progress=False, mlflow=False)
    assert again.runs == 0
    text = format_results(compute("failing"))
    assert "unfinished" not in text and "half-written" not in text


def test_a_run_that_fails_before_training_is_recorded_as_failed(sweep_env, tmp_path, monkeypatch):
    space = space_file(tmp_path, "nodata", ("seeds: 2", "seeds: 1"))
    monkeypatch.setenv("MTSEARCH_DATA", str(tmp_path / "no-such-folder"))
    BACKENDS.get("optuna")().run(load_space(str(space)), progress=False, mlflow=False)
    table = load_runs(sweep_env / "sweeps" / "nodata")
    assert list(table["status"]) == ["failed", "failed"]
    assert table["error"].str.contains("no-such-folder").all()


def test_a_random_space_whose_budget_exceeds_its_configurations_ends(sweep_env, tmp_path):
    space = space_file(tmp_path, "small", ("algorithm: grid", "algorithm: random"), ("seeds: 2", "seeds: 1"),
                       ("budget:\n  minutes: 10", "budget:\n  trials: 12"))  # fmt: skip
    out = BACKENDS.get("optuna")().run(load_space(str(space)), progress=False, mlflow=False)
    assert out.stopped_because == "every one of the space's 2 distinct configurations is done"
    assert out.runs == 2 and out.counts == {"finished": 2, "configurations": 2}
    # Duplicate proposals are set aside and labelled, never trained.
    study = study_of(sweep_env, "small")
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained)


def test_changing_seeds_on_resume_adds_them_or_is_refused(sweep_env, tmp_path):
    from mtsearch.errors import ConfigError

    one = space_file(tmp_path, "seeds", ("seeds: 2", "seeds: 1"))
    BACKENDS.get("optuna")().run(load_space(str(one)), progress=False, mlflow=False)
    three = space_file(tmp_path, "seeds", ("seeds: 2", "seeds: 3"))
    out = BACKENDS.get("optuna")().run(load_space(str(three)), progress=False, mlflow=False)
    assert out.notes == ["seeds changed from 1 to 3: every configuration gets seed indices 1..2 "
                         "(the runs already done are kept)"]  # fmt: skip
    assert out.runs == 4
    table = load_runs(sweep_env / "sweeps" / "seeds")
    assert (
        sorted(table.groupby("config_hash")["seed_index"].apply(list).map(sorted).tolist()) == [[0, 1, 2]] * 2
    )
    two = space_file(tmp_path, "seeds", ("seeds: 2", "seeds: 2"))
    with pytest.raises(ConfigError, match=r"has runs up to seed index 2, and seeds 2 would leave them out"):
        BACKENDS.get("optuna")().run(load_space(str(two)), progress=False, mlflow=False)


def test_base_seed_and_vary_data_set_the_runs_seeds(sweep_env, tmp_path):
    from mtsearch.sweep.keys import derive_seed

    space = space_file(tmp_path, "based", ("seeds: 2", "seeds: 2\nbase_seed: 7\nvary_data: false"),
                       ("  sampler:\n    choices: [round_robin, temperature]\n  sampler_args.temperature:\n"
                        "    values: [2.0]\n    when: {sampler: temperature}", "  sampler:\n    choices: [round_robin]"))  # fmt: skip
    BACKENDS.get("optuna")().run(load_space(str(space)), progress=False, mlflow=False)
    table = load_runs(sweep_env / "sweeps" / "based")
    assert list(table["seed"]) == [derive_seed(7, 0), derive_seed(7, 1)]
    assert set(table["data_seed"]) == {derive_seed(7, 0)}
    from mtsearch.config import load_config

    configs = [load_config(Path(rd) / "config.yaml") for rd in table["run_dir"]]
    assert [c.seed for c in configs] == list(table["seed"]) and {c.data_seed for c in configs} == {
        derive_seed(7, 0)
    }


@pytest.mark.e2e
def test_two_workers_split_a_fresh_grid_and_never_run_a_run_twice(sweep_env, small_data_dir, tmp_path):
    runs = sweep_env
    space = space_file(tmp_path, "two", ("seeds: 2", "seeds: 1"),
                       ("  sampler:\n    choices: [round_robin, temperature]",
                        "  sampler:\n    choices: [round_robin, temperature, proportional, rr_under, sequential, annealed]"))  # fmt: skip
    # Each worker's first run waits at its start until both have started one: both train runs, however
    # far ahead the first to start would otherwise have been.
    env = {**os.environ, "MTSEARCH_RUNS": str(runs), "MTSEARCH_DATA": str(small_data_dir), "MTSEARCH_HOLD": "run_start:1:2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "mtsearch.cli", "sweep", str(space), "--quiet"]
    # Two workers on a sweep that does not exist yet, started together.
    procs = [subprocess.Popen([*cmd, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for extra in ([], ["--worker"])]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    sweep_dir = runs / "sweeps" / "two"
    table = load_runs(sweep_dir)
    assert len(table) == 6 and table["config_hash"].nunique() == 6 and set(table["status"]) == {"finished"}
    workers = {json.loads((Path(rd) / "run.json").read_text())["worker"] for rd in table["run_dir"]}
    assert len(workers) == 2, "both workers trained runs"
    study = study_of(runs, "two")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 6, "no run trained twice"
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert len(meta["sessions"]) == 2 and sum(s["runs"] for s in meta["sessions"]) == 6
    assert meta["sessions"][0]["runs"] > 0 and meta["sessions"][1]["runs"] > 0
    # One MLflow parent for both workers, finished; every run's child finished.
    mruns = mlflow_runs(runs)
    parents = [r for r in mruns if r.data.tags.get("mtsearch.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(r.info.status == "FINISHED" for r in mruns)


def test_each_session_samples_with_its_own_seed(sweep_env, tmp_path):
    from mtsearch.backends.optuna_study import session_seed
    from mtsearch.sweep.runner import prepare_sweep

    space = load_space(str(space_file(tmp_path, "seeded", ("algorithm: grid", "algorithm: random"),
                                      ("budget:\n  minutes: 10", "budget:\n  trials: 2"))))  # fmt: skip
    seeds = [session_seed(prepare_sweep(space, None, "optuna", mlflow=False)) for _ in range(3)]
    assert seeds[0] == 0 and len(set(seeds)) == 3


def test_a_run_folder_is_the_truth(sweep_env):
    """A result on disk is done even if the study never heard of it; a folder without one is trained."""
    from mtsearch.sweep.runner import prepare_sweep, register_configuration

    space = load_space("smoke")
    ctx = prepare_sweep(space, None, "optuna", mlflow=False)
    h = register_configuration(ctx, {"sampler": "round_robin"})
    done = run_dir(ctx.sweep_dir, RunKey(h, 0))
    done.mkdir(parents=True)
    (done / "result.json").write_text(json.dumps({"status": "finished", "best": {"scores": {"sst": 0.1, "para": 0.2,
                                                  "sts": 0.3}}, "seconds": 1.0}))  # fmt: skip
    half = run_dir(ctx.sweep_dir, RunKey(h, 1))
    half.mkdir(parents=True)
    (half / "metrics.jsonl").write_text('{"kind": "eval", "step": 2}\n{"kind": "ev')  # killed mid-line
    out = BACKENDS.get("optuna")().run(space, progress=False, mlflow=False)
    assert out.runs == 3  # seed 1 of round_robin again, and temperature's two seeds
    table = load_runs(ctx.sweep_dir)
    assert len(table) == 4 and set(table["status"]) == {"finished"}
    kept = table[(table.config_hash == h) & (table.seed_index == 0)]
    assert float(kept["sst"].iloc[0]) == 0.1
