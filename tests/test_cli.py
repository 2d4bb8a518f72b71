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


@pytest.fixture
def cli(capsys, monkeypatch):
    """``mtsearch(...)`` in this process: the same main() the script runs, without an interpreter
    start (~3 s each) per call. Used for refusals, which end before anything trains; an
    exception escaping main() fails the test just as a traceback would. The tests above the
    refusals run the real script."""
    from mtsearch.cli import main

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        with monkeypatch.context() as m:
            for k, v in (env or {}).items():
                m.setenv(k, v)
            capsys.readouterr()
            try:
                code = main(list(args))
            except SystemExit as stop:  # argparse's own refusals
                code = stop.code
            out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


SMALL = [
    "--set", "model=tiny", "--set", "train_limit=240", "--set", "eval_limit=120", "--set", "max_steps=8",
    "--set", "eval_every=4", "--set", "batch_size=16", "--set", "max_length=64", "--set", "final_eval=false",
    "--set", "progress=false",
]  # fmt: skip


@pytest.mark.e2e
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


def test_unknown_config_key(runs, data_dir, cli):
    one_clear_error(cli("train", "--data-dir", str(data_dir), "--set", "learning_rate=1e-4"),
                    "unknown config key 'learning_rate'")  # fmt: skip


def test_value_out_of_range(runs, data_dir, tmp_path, cli):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: tiny\nbatch_size: -4\n")
    one_clear_error(cli("train", "--config", str(cfg), "--data-dir", str(data_dir)), "batch_size")


def test_missing_data_folder(runs, tmp_path, cli):
    missing = tmp_path / "no-data"
    one_clear_error(cli("train", "--data-dir", str(missing), *SMALL), str(missing), "mtsearch data fetch")
    one_clear_error(cli("train", *SMALL, env={"MTSEARCH_DATA": str(missing)}), str(missing))


def test_missing_model(runs, data_dir, tmp_path, cli):
    one_clear_error(
        cli("train", "--data-dir", str(data_dir), "--set", f"model={tmp_path / 'my-bert'}"),
        "my-bert", "no such folder",
    )  # fmt: skip


def test_malformed_data_file_strict_and_lenient(runs, tmp_path, cli, caplog):
    data = tmp_path / "data"
    data.mkdir()
    for f in FIXTURES.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    proc = cli("train", "--data-dir", str(data), *SMALL, "--set", "strict_data=true", "--set", "mlflow=false")
    one_clear_error(proc, "ids-sst-train.csv:4", "not a whole number")
    # Lenient (default): the bad rows are skipped with a warning naming file and line. In this process
    # too (an interpreter start costs ~20 s here); the real script trains in the end-to-end test above.
    proc = cli("train", "--data-dir", str(data), *SMALL, "--set", "mlflow=false", "--name", "lenient")
    assert proc.returncode == 0, proc.stderr
    assert "malformed row" in caplog.text and "quora-dev.csv:" in caplog.text


def test_fetch_offline_without_mirror_says_what_to_set(tmp_path):
    proc = mtsearch("data", "fetch", "--from", "http://127.0.0.1:9/nothing/", "--dest", str(tmp_path / "d"))
    one_clear_error(proc, "--from")


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ""])
def test_a_run_name_that_leaves_runs_is_refused(runs, data_dir, name, cli):
    one_clear_error(cli("train", "--data-dir", str(data_dir), "--name", name, *SMALL), "--name")
    if name:  # `--set name=` is null: the default name
        one_clear_error(cli("train", "--data-dir", str(data_dir), "--set", f"name={name}", *SMALL), "name:")
    assert not runs.exists() or not any(runs.iterdir())


# ---------------------------------------------------------------- bad input: one line, exit 2 (issue 9)
def test_a_config_file_that_is_not_utf8(runs, data_dir, tmp_path, cli):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("model: tiny\n# réglages\n".encode("latin-1"))
    one_clear_error(cli("train", "--config", str(cfg), "--data-dir", str(data_dir)), str(cfg), "not UTF-8")


def test_a_space_file_that_is_not_utf8(runs, tmp_path, cli):
    space = tmp_path / "mine.yaml"
    space.write_bytes(b"name: mine\n\xff\xfe\x00\x01\n")
    one_clear_error(cli("sweep", str(space)), str(space), "not UTF-8")


@pytest.mark.parametrize("content", ["header only", "every row malformed"])
def test_a_training_file_without_usable_rows(runs, tmp_path, content, cli):
    data = tmp_path / "data"
    data.mkdir()
    for f in FIXTURES.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    header = (FIXTURES / "ids-sst-train.csv").read_text().splitlines()[0]
    rows = "" if content == "header only" else "0\tid1\ta sentence\tseven\n1\tid2\tanother\t\n"
    (data / "ids-sst-train.csv").write_text(header + "\n" + rows)
    proc = cli("train", "--data-dir", str(data), *SMALL, "--set", "mlflow=false")
    one_clear_error(proc, "ids-sst-train.csv", "no usable rows for task 'sst' (train")
    if content != "header only":
        assert "malformed row(s) skipped" in proc.stderr
    assert not (runs / "runs").exists() and not any(p.name != "cache" for p in runs.iterdir())


def _train_a_tiny_run(runs, data_dir) -> Path:
    from mtsearch.train import train
    from tests.helpers import tiny_config

    return train(tiny_config(data_dir, name="tiny", save_checkpoint=True, max_steps=2, eval_every=2)).run_dir


def test_predict_on_a_damaged_run(runs, tmp_path, capsys):
    import shutil

    from mtsearch.cli import main

    def mtsearch(*args: str) -> subprocess.CompletedProcess:
        # In-process: the same main() the script runs, without 11 interpreter starts (~3 s each);
        # an exception escaping main() would fail the test just as a traceback would.
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    run = _train_a_tiny_run(runs, FIXTURES)
    data = ["--data-dir", str(FIXTURES)]

    def variant(name: str) -> Path:
        copy = runs / name
        shutil.copytree(run, copy)
        return copy

    ckpt = variant("truncated") / "best.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    one_clear_error(mtsearch("predict", "truncated", *data), str(ckpt), "unreadable", "truncated or damaged")
    (variant("zero") / "best.safetensors").write_bytes(b"")
    one_clear_error(mtsearch("predict", "zero", *data), "best.safetensors is unreadable")

    (variant("garbage") / "config.yaml").write_bytes(b"\x00\x01garbage: [\n")
    one_clear_error(mtsearch("predict", "garbage", *data), "garbage/config.yaml", "not valid YAML")
    (variant("not-a-mapping") / "config.yaml").write_text("- just\n- a list\n")
    one_clear_error(mtsearch("predict", "not-a-mapping", *data), "must hold a mapping")

    cfg = variant("edited") / "config.yaml"
    cfg.write_text(cfg.read_text().replace("\npooling: cls\n", "\npooling: attention\n"))
    one_clear_error(mtsearch("predict", "edited", *data), "does not match the model its config.yaml describes",
                    "pooling.para.query")  # fmt: skip
    cfg = variant("resized") / "config.yaml"
    cfg.write_text(cfg.read_text().replace("\nhead: linear\n", "\nhead: mlp\n"))
    one_clear_error(mtsearch("predict", "resized", *data), "does not match the model")

    one_clear_error(mtsearch("predict", "tiny", "--detailed", "--limit", "-3", *data), "--limit", "-3")
    one_clear_error(mtsearch("predict", "tiny", "--detailed", "--limit", "0", *data), "--limit")
    one_clear_error(
        mtsearch("predict", "tiny", "--limit", "5", *data), "--limit only applies with --detailed"
    )
    proc = mtsearch(
        "predict", "tiny", "--detailed", "--limit", "3", *data
    )  # and the run itself still predicts
    assert proc.returncode == 0, proc.stderr


def test_runs_folder_that_is_a_file(runs, data_dir, tmp_path, cli):
    a_file = tmp_path / "runs-file"
    a_file.write_text("")
    env = {"MTSEARCH_RUNS": str(a_file)}
    one_clear_error(cli("train", "--data-dir", str(data_dir), *SMALL, env=env), str(a_file), "is a file")
    one_clear_error(cli("sweep", "smoke", env=env), "MTSEARCH_RUNS", "is a file")


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into, not even root (chattr +i), else by its mode bits."""
    import shutil
    import subprocess as sp

    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        if (
            not shutil.which("chattr")
            or sp.run(["chattr", "+i", str(folder)], capture_output=True).returncode
        ):
            pytest.skip("running as root without chattr +i: no folder is read-only to this process")
        yield folder
        sp.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_runs_folder_that_is_read_only(runs, data_dir, read_only_dir, cli):
    for runs_env in (read_only_dir, read_only_dir / "runs"):  # the folder itself, or one to create in it
        env = {"MTSEARCH_RUNS": str(runs_env), "MTSEARCH_CACHE": ""}
        proc = cli("train", "--data-dir", str(data_dir), *SMALL, env=env)
        one_clear_error(proc, str(runs_env), "MTSEARCH_RUNS", "not writable")
        one_clear_error(cli("sweep", "smoke", env=env), "not writable")


@pytest.mark.parametrize("weight", ["-1", ".nan", ".inf"])
def test_a_loss_weight_must_be_finite_and_not_negative(runs, data_dir, weight, cli):
    proc = cli(
        "train", "--data-dir", str(data_dir), *SMALL, "--set", f"update_args.weights={{sst: {weight}}}"
    )
    one_clear_error(
        proc, "update_args.weights.sst", "finite" if "n" in weight else "greater than or equal to 0"
    )


def test_tasks_given_as_a_number_names_the_key(runs, data_dir, cli):
    one_clear_error(cli("train", "--data-dir", str(data_dir), "--set", "tasks=5"), "tasks:", "list of task")
