"""Smoke tests through the real ``mtsearch`` command, as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"


def mtsearch(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "mtsearch"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mtsearch.cli"]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=full_env, timeout=timeout)


def one_clear_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mtsearch: error:")]
    assert len(errors) == 1, proc.stderr
    for frag in fragments:
        assert frag in errors[0], errors[0]


SMALL = [
    "--set", "model=tiny", "--set", "train_limit=240", "--set", "eval_limit=120", "--set", "max_steps=8",
    "--set", "eval_every=4", "--set", "batch_size=16", "--set", "max_length=64", "--set", "final_eval=false",
    "--set", "progress=false",
]  # fmt: skip


def test_train_predict_and_mlflow_end_to_end(data_dir, runs, tmp_path):
    proc = mtsearch("train", "--data-dir", str(data_dir), "--name", "smoke", *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "overall" in proc.stdout and "sst" in proc.stdout
    run = runs / "smoke"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"] == "tiny" and cfg["max_steps"] == 8 and cfg["data_dir"] == str(data_dir)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8]
    assert all(set(r["scores"]) == {"sst", "para", "sts"} for r in rows)
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "finished" and result["mlflow_run_id"]

    # The MLflow mirror: same params, every evaluation, the run's files as artifacts.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    mrun = client.get_run(result["mlflow_run_id"])
    assert mrun.info.status == "FINISHED"
    assert mrun.data.params["model"] == "tiny" and mrun.data.params["max_steps"] == "8"
    history = client.get_metric_history(mrun.info.run_id, "overall")
    assert [m.step for m in history] == [4, 8]
    assert [m.value for m in history] == pytest.approx([r["overall"] for r in rows])
    artifacts = {a.path for a in client.list_artifacts(mrun.info.run_id)}
    assert {"config.yaml", "env.json", "metrics.jsonl", "result.json"} <= artifacts

    # Predictions in the course format for every dev file and the test files present.
    proc = mtsearch("predict", "smoke", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    sst_dev = (run / "predictions" / "sst-dev-output.csv").read_text().splitlines()
    assert sst_dev[0] == "id \t Predicted_Sentiment " and len(sst_dev) == 1 + 1101
    ident, pred = sst_dev[1].split(" , ")
    assert len(ident) == 25 and pred.strip() in {"0", "1", "2", "3", "4"}
    sts_dev = (run / "predictions" / "sts-dev-output.csv").read_text().splitlines()
    assert len(sts_dev) == 1 + 863 and float(sts_dev[1].split(" , ")[1])
    para_dev = (run / "predictions" / "para-dev-output.csv").read_text().splitlines()
    assert len(para_dev) == 1 + 20212
    assert (run / "predictions" / "sst-test-output.csv").exists()


def test_data_check_reports_the_known_defects(data_dir):
    proc = mtsearch("data", "check", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    assert "20,212 usable pairs, 2 defect(s)" in proc.stdout
    assert "quora-dev.csv:2577" in proc.stdout


def test_dims_lists_config_and_strategies():
    proc = mtsearch("dims")
    assert proc.returncode == 0, proc.stderr
    assert "lr " in proc.stdout and "sampler=round_robin" in proc.stdout


def test_unknown_config_key(runs, data_dir):
    one_clear_error(mtsearch("train", "--data-dir", str(data_dir), "--set", "learning_rate=1e-4"),
                    "unknown config key 'learning_rate'")  # fmt: skip


def test_value_out_of_range(runs, data_dir, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: tiny\nbatch_size: -4\n")
    one_clear_error(mtsearch("train", "--config", str(cfg), "--data-dir", str(data_dir)), "batch_size")


def test_missing_data_folder(runs, tmp_path):
    missing = tmp_path / "no-data"
    one_clear_error(
        mtsearch("train", "--data-dir", str(missing), *SMALL), str(missing), "mtsearch data fetch"
    )
    one_clear_error(mtsearch("train", *SMALL, env={"MTSEARCH_DATA": str(missing)}), str(missing))


def test_missing_model(runs, data_dir, tmp_path):
    one_clear_error(
        mtsearch("train", "--data-dir", str(data_dir), "--set", f"model={tmp_path / 'my-bert'}"),
        "my-bert", "no such folder",
    )  # fmt: skip


def test_malformed_data_file_strict_and_lenient(runs, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in FIXTURES.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    proc = mtsearch(
        "train", "--data-dir", str(data), *SMALL, "--set", "strict_data=true", "--set", "mlflow=false"
    )
    one_clear_error(proc, "ids-sst-train.csv:4", "not a whole number")
    # Lenient (default): the bad rows are skipped with a warning naming file and line.
    proc = mtsearch("train", "--data-dir", str(data), *SMALL, "--set", "mlflow=false", "--name", "lenient")
    assert proc.returncode == 0, proc.stderr
    assert "malformed row" in proc.stderr and "quora-dev.csv:" in proc.stderr


def test_fetch_offline_without_mirror_says_what_to_set(tmp_path):
    proc = mtsearch("data", "fetch", "--from", "http://127.0.0.1:9/nothing/", "--dest", str(tmp_path / "d"))
    one_clear_error(proc, "--from")


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ""])
def test_a_run_name_that_leaves_runs_is_refused(runs, data_dir, name):
    one_clear_error(mtsearch("train", "--data-dir", str(data_dir), "--name", name, *SMALL), "--name")
    if name:  # `--set name=` is null: the default name
        one_clear_error(
            mtsearch("train", "--data-dir", str(data_dir), "--set", f"name={name}", *SMALL), "name:"
        )
    assert not runs.exists() or not any(runs.iterdir())
