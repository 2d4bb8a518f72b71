"""Empty runs/, a sweep with only failed trials, half-written files: plain messages, no traceback."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from mtsearch.cli import main
from mtsearch.dashboard.sweeps import load_sweep
from tests.dashboard.helpers import APP
from tests.dashboard.synthetic import run_path, write_sweep

pytestmark = pytest.mark.filterwarnings("ignore")


def app(view: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    if view:
        at.query_params["view"] = view
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def views(at: AppTest) -> list[str]:
    """The app's views, in the sidebar's order (the first is the sweeps overview)."""
    return list(at.sidebar.radio(key="view").options)


def messages(at: AppTest) -> str:
    return " | ".join(e.value for e in [*at.main.info, *at.main.warning, *at.main.error])


def test_empty_runs_folder(tmp_path, dash_env, capsys):
    dash_env(tmp_path / "runs")
    at = app()
    assert "No sweeps under" in at.info[0].value and "make sweep" in at.info[0].value
    assert not at.dataframe and not at.get("plotly_chart")
    assert main(["report", "anything", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtsearch: error: no sweep 'anything'") and "none yet" in err
    assert not (tmp_path / "r.html").exists()


def test_sweep_with_only_failed_trials(tmp_path, dash_env, capsys):
    root = dash_env(tmp_path / "runs")
    write_sweep(root, "failing", failed=True)
    at = app()
    row = at.dataframe[0].value.iloc[0]
    assert (row["done"], row["failed"], row["running"]) == (0, 15, 0) and pd.isna(row["best overall"])
    assert "only failed runs (30 failed)" in messages(at)
    for view in views(at)[1:]:
        at.sidebar.radio(key="view").set_value(view).run()
        assert not at.exception, (view, [e.value for e in at.exception])
        assert not at.get("plotly_chart"), view
        text = messages(at)
        if view == "Importance":
            assert "at least 2 completed trials; this sweep has 0" in text
        elif view == "Curves":
            assert "no evaluation logged yet" in text
        elif view == "Errors":
            assert "No run of 'failing' kept a checkpoint" in text
        else:
            assert "only failed runs" in text, view
    out = tmp_path / "failed.html"
    assert main(["report", "failing", "--out", str(out)]) == 0
    assert "only failed runs" in capsys.readouterr().out
    assert "only failed runs (30 failed)" in out.read_text() and "Leaderboard" not in out.read_text()


def test_half_written_trials_table_and_result(tmp_path, dash_env, capsys):
    root = dash_env(tmp_path / "runs")
    sd = write_sweep(root, "half")
    res = load_sweep(sd)
    from mtsearch.sweep.results import write_tables

    write_tables(res.results)
    text = (sd / "trials.csv").read_text()
    (sd / "trials.csv").write_text(text[: len(text) // 2])  # a writer died mid-file
    result = run_path(sd, 3, 1) / "result.json"
    result.write_text(result.read_text()[:40])
    with (run_path(sd, 4, 0) / "metrics.jsonl").open("a") as fh:
        fh.write('{"kind": "eval", "step": 6, "sco')  # a line cut mid-write

    at = app("Leaderboard")
    text = messages(at)
    assert "trials.csv looks half-written" in text
    assert "1 run(s) are still running or have a half-written result.json" in text
    board = at.dataframe[0].value
    assert len(board) == 15 and sorted(board["seeds"].tolist()) == [1] + [2] * 14
    for view in views(at)[2:7]:  # Ablation .. Curves: each plots
        at.sidebar.radio(key="view").set_value(view).run()
        assert not at.exception and not at.main.error, view
        assert at.get("plotly_chart"), view
    out = tmp_path / "half.html"
    assert main(["report", "half", "--out", str(out)]) == 0
    assert "trials.csv looks half-written" in out.read_text()


def test_unreadable_sweep_json_and_study(tmp_path, dash_env):
    root = dash_env(tmp_path / "runs")
    sd = write_sweep(root, "broken")
    (sd / "study.db").write_bytes(b"SQLite format 3\x00 but cut short")
    d = load_sweep(sd)
    assert d.counts_from == "run directories" and d.counts["done"] == 15
    assert any("study.db could not be read" in n for n in d.notices)
    meta = sd / "sweep.json"
    meta.write_text(meta.read_text()[:100])
    at = app("Leaderboard")
    assert "sweep.json is unreadable or half-written" in messages(at)
    assert json.loads((run_path(sd, 0, 0) / "run.json").read_text())["trial"] == 0
