"""Dev predictions for the Errors view, from the same loaded run as `mtsearch predict`."""

from __future__ import annotations

import shutil

import pytest

from mtsearch.dashboard import predictions as P
from mtsearch.dashboard.sweeps import load_sweep
from mtsearch.predict import load_run, predict_run

pytestmark = pytest.mark.filterwarnings("ignore")
ROWS = 40  # dev rows per file in the small data folder


@pytest.fixture
def smoke_run(smoke_root, tmp_path, dash_env):
    """A copy of one smoke run with a checkpoint (the app tests compute their own predictions)."""
    dash_env(smoke_root)
    d = load_sweep(smoke_root / "sweeps" / "smoke")
    src = d.sweep_dir / "runs" / P.runs_with_checkpoint(d)[-1]
    run = tmp_path / src.name
    shutil.copytree(src, run)
    return run


def test_predict_detailed_writes_the_cache_the_errors_view_reads(smoke_run, capsys):
    from mtsearch.cli import main

    run = smoke_run
    assert not P.is_current(run)
    assert main(["predict", str(run), "--detailed", "--limit", "30"]) == 0
    assert capsys.readouterr().out.strip() == str(P.detailed_path(run))
    assert P.is_current(run)
    meta, df = P.read_detailed(run)
    assert meta["limit"] == 30 and meta["tasks"] == ["sst", "para", "sts"]
    assert df.groupby("task").size().to_dict() == {"sst": 30, "para": 30, "sts": 30}
    assert set(df[df.task == "sst"]["pred"]) <= {0, 1, 2, 3, 4}
    assert set(df[df.task == "para"]["pred"]) <= {0, 1}
    assert df["sentence1"].str.len().min() > 0 and df[df.task == "sst"]["sentence2"].isna().all()
    assert P.sst_confusion(df).to_numpy().sum() == 30
    fp, fn = P.qqp_errors(df)
    para = df[df.task == "para"]
    assert len(fp) == min(10, int(((para.pred == 1) & (para.gold == 0)).sum()))
    assert len(fn) == min(10, int(((para.pred == 0) & (para.gold == 1)).sum()))
    assert set(fp["id"]) <= set(para["id"]) and (fp["gold"] == 0).all()


def test_the_errors_view_and_predict_give_the_same_predictions(smoke_run, data_dir, tmp_path):
    """Both load the run with load_run: every dev example gets the same prediction from each."""
    small = tmp_path / "data"
    small.mkdir()
    for src in data_dir.glob("*-dev.csv"):
        with open(src, "rb") as f:
            (small / src.name).write_bytes(
                b"".join(line for _, line in zip(range(ROWS + 1), f, strict=False))
            )
    loaded = load_run(smoke_run, str(small))
    assert loaded.data_dir == small and loaded.path == smoke_run and not loaded.model.training
    assert loaded.config.data_dir == str(small)

    P.compute_detailed(smoke_run, data_dir=str(small))
    _, detailed = P.read_detailed(smoke_run)
    files = predict_run(str(smoke_run), data_dir=str(small), splits=("dev",))
    assert sorted(f.name for f in files) == [
        "para-dev-output.csv",
        "sst-dev-output.csv",
        "sts-dev-output.csv",
    ]
    for f in files:
        task = f.name.split("-")[0]
        rows = [line.split(" , ") for line in f.read_text().splitlines()[1:]]
        written = {i.strip(): float(p) for i, p in rows}
        mine = detailed[detailed.task == task].set_index("id")["pred"].to_dict()
        assert len(written) == len(mine) > 0
        assert written == pytest.approx({i: round(p, 4) for i, p in mine.items()}, abs=1e-9)
