"""Every view of the Streamlit app, driven by AppTest on a real smoke sweep (and a synthetic one).

Assertions are on what each view shows: the plotted data (the plotly spec sent to the
browser) and the rows of its tables, checked against the sweep's own files.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mtsearch.dashboard import figures as F
from mtsearch.dashboard.predictions import detailed_path
from mtsearch.records import read_metrics
from mtsearch.sweep.results import compute
from tests.dashboard.helpers import APP

pytestmark = pytest.mark.filterwarnings("ignore")


def run_app(**query) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _decode(value):
    """Plotly sends numeric arrays as typed base64 ({"dtype", "bdata"}); lists stay lists."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return arr.reshape(value["shape"]).tolist() if "shape" in value else arr.tolist()
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def charts(at: AppTest) -> list[dict]:
    return [_decode(json.loads(e.proto.spec)) for e in at.get("plotly_chart")]


def title(spec: dict) -> str:
    return spec["layout"]["title"]["text"]


def points(spec: dict, axis: str = "x") -> dict[str, float]:
    """x -> y of every trace drawn on one subplot (axis 'x', 'x2', ...)."""
    out = {}
    for tr in spec["data"]:
        if tr.get("xaxis", "x") == axis:
            out.update(dict(zip(map(str, tr["x"]), tr["y"], strict=True)))
    return out


@pytest.fixture
def results(smoke):
    return compute(str(smoke / "sweeps" / "smoke"))


def test_sweeps_view_lists_the_sweep_with_counts_best_and_wall_time(smoke, results):
    at = run_app()
    assert at.sidebar.radio(key="view").value == "Sweeps"
    table = at.dataframe[0].value
    row = table[table["sweep"] == "smoke"].iloc[0]
    assert (row["space"], row["backend"], row["algorithm"]) == ("smoke", "optuna", "grid")
    assert (row["done"], row["pruned"], row["failed"], row["running"], row["runs read"]) == (2, 0, 0, 0, 4)
    assert row["best overall"] == pytest.approx(results.configurations["overall_mean"].max())
    assert row["wall time (min)"] > 0
    dims = at.dataframe[1].value
    assert list(dims["dimension"]) == ["sampler", "sampler_args.temperature"]
    assert list(dims["applies when"]) == ["always", "sampler = temperature"]
    (history,) = charts(at)
    assert sorted(history["data"][0]["y"]) == pytest.approx(sorted(results.runs["overall"]))


def test_leaderboard_ranks_configurations_and_the_card_gives_the_command(smoke, results, monkeypatch):
    monkeypatch.setenv("MTSEARCH_MLFLOW_PORT", "5123")
    at = run_app(view="Leaderboard")
    board = at.dataframe[0].value
    assert len(board) == 2 and list(board["seeds"]) == [2, 2]
    assert list(board["overall_mean"]) == pytest.approx(
        sorted(results.configurations["overall_mean"], reverse=True)
    )
    assert set(board["sampler_args.temperature"]) == {
        "2.0",
        "n/a",
    }  # conditional: n/a where it does not apply
    best = results.configurations.iloc[0]
    assert board.iloc[0]["sampler"] == best["sampler"]
    # The card: the best configuration's scores and the command that trains it with all its seeds.
    labels = {m.proto.label: m.value for m in at.metric}
    assert labels["overall"] == f"{best['overall_mean']:.4f}"
    (code,) = at.code
    seeds = " ".join(map(str, best["seed_values"]))
    assert code.value.startswith(f"for seed in {seeds}; do mtsearch train --set ")
    assert f"--set sampler={best['sampler']}" in code.value and code.value.endswith(
        '--set "seed=$seed"; done'
    )
    # Runs with their MLflow links (port from MTSEARCH_MLFLOW_PORT).
    runs = at.dataframe[1].value
    assert len(runs) == 4 and set(runs["status"]) == {"finished"}
    for _, r in runs.iterrows():
        rid = json.loads((smoke / "sweeps" / "smoke" / "runs" / r["run"] / "result.json").read_text())[
            "mlflow_run_id"
        ]
        assert re.fullmatch(rf"http://127\.0\.0\.1:5123/#/experiments/\d+/runs/{rid}", r["mlflow"])
    # Sorting by another metric reorders the table.
    at.selectbox(key="lb-sort").set_value("sts").run()
    board = at.dataframe[0].value
    assert list(board["sts_mean"]) == sorted(board["sts_mean"], reverse=True)


def test_ablation_view_plots_the_difference_from_the_best_per_level(smoke, results):
    at = run_app(view="Ablation")
    specs = charts(at)
    # the conditional dimension has one level where it applies: one line, not a panel of plots
    assert [title(s).split(":")[0] for s in specs] == ["sampler"]
    assert any(
        m.value.startswith("sampler_args.temperature (where sampler = temperature): one level, 2.0")
        for m in at.markdown
    )
    ab = results.ablation
    sampler = ab[(ab.dimension == "sampler") & (ab.metric == "overall")].set_index("level")
    shown = {
        y: x
        for tr in specs[0]["data"]
        if tr.get("xaxis", "x") == "x"
        for x, y in zip(tr["x"], tr["y"], strict=True)
    }
    assert shown == pytest.approx(sampler["diff"].to_dict())  # the 'overall' panel: levels are rows
    # colours are the verdicts of the model (two configurations x two seeds: both tested)
    names = {tr["name"]: tr["marker"]["color"] for tr in specs[0]["data"]}
    assert (
        set(names) <= set(F.VERDICT_COLOURS)
        and names.get("in best set: observed best") == F.VERDICT_COLOURS["in best set: observed best"]
    )
    assert all(tr.get("error_x", {}).get("visible") for tr in specs[0]["data"])
    table = at.dataframe[0].value
    assert list(dict.fromkeys(table["metric"])) == ["overall", "sst", "para", "sts"]
    assert set(table["verdict"]) <= {"in best set", "worse"}
    assert set(table["decided"]) <= {"observed best", "equivalent", "undecided", "-"}
    assert table["interval low"].notna().all()


def test_importance_view_says_why_with_a_single_common_dimension(smoke):
    at = run_app(view="Importance")
    assert not charts(at)
    assert "Only one dimension applies to every completed trial ('sampler')" in at.info[0].value


def test_importance_view_ranks_the_dimension_that_drives_the_score(synthetic_root, dash_env):
    dash_env(synthetic_root)
    at = run_app(view="Importance")
    (spec,) = charts(at)
    bars = {tr["name"]: dict(zip(tr["y"], tr["x"], strict=True)) for tr in spec["data"]}
    assert max(bars["overall"], key=bars["overall"].get) == "lr"  # lr drives SST, STS and overall
    assert max(bars["para"], key=bars["para"].get) == "pooling"  # pooling alone moves QQP
    table = at.dataframe[0].value
    assert (
        list(table.columns) == ["dimension", "overall", "sst", "para", "sts"]
        and table.iloc[0]["dimension"] == "lr"
    )
    assert table["overall"].tolist() == pytest.approx(sorted(bars["overall"].values(), reverse=True))
    assert "sampler_args.temperature" in at.main.caption[-1].value  # left out: conditional
    at.selectbox(key="imp-evaluator").set_value("ped-anova").run()
    (spec,) = charts(at)
    overall = next(dict(zip(tr["y"], tr["x"], strict=True)) for tr in spec["data"] if tr["name"] == "overall")
    assert max(overall, key=overall.get) == "lr"


def test_parallel_coordinates_cover_the_dimensions_coloured_by_the_objective(smoke, results):
    at = run_app(view="Parallel coordinates")
    (spec,) = charts(at)
    pc = spec["data"][0]
    assert pc["type"] == "parcoords"
    labels = [d["label"] for d in pc["dimensions"]]
    assert labels[:2] == ["sampler", "sampler_args.temperature"] and "overall" in labels
    assert sorted(pc["line"]["color"]) == pytest.approx(sorted(results.configurations["overall_mean"]))
    assert set(pc["dimensions"][1]["ticktext"]) == {"2.0", "n/a"}


def test_tradeoff_view_plots_each_task_pair_with_the_pareto_front(smoke, results):
    at = run_app(view="Task trade-offs")
    (spec,) = charts(at)
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles == ["sst (accuracy) vs para (accuracy)", "sst (accuracy) vs sts (pearson)",
                      "para (accuracy) vs sts (pearson)"]  # fmt: skip
    front = [tr for tr in spec["data"] if tr["name"] == "Pareto front"]
    assert sum(len(tr["x"]) for tr in front) == 3 * len(results.pareto)
    xs = sorted(x for tr in spec["data"] if tr.get("xaxis", "x") == "x" for x in tr["x"])
    assert xs == pytest.approx(sorted(results.configurations["sst_mean"]))
    assert len(at.dataframe[0].value) == len(results.pareto)


def test_curves_view_overlays_learning_curves_and_gradient_cosines(smoke):
    at = run_app(view="Curves")
    curves, cosines = charts(at)
    trials = smoke / "sweeps" / "smoke" / "runs"
    evals = {str(rd): read_metrics(rd / "metrics.jsonl") for rd in trials.glob("*/s*")}
    # one line per run, coloured by the first dimension (sampler)
    assert {tr["name"] for tr in curves["data"]} == {"round_robin", "temperature"}
    plotted = sorted(y for tr in curves["data"] for y in tr["y"])
    assert plotted == pytest.approx(sorted(r["overall"] for rows in evals.values() for r in rows))
    assert sorted({x for tr in curves["data"] for x in tr["x"]}) == sorted(
        {r["examples"] for rows in evals.values() for r in rows}
    )
    # the cosines: one panel per task pair
    facets = {a["text"] for a in cosines["layout"]["annotations"]}
    assert facets == {"pair=sst|para", "pair=sst|sts", "pair=para|sts"}
    n = sum(len(r["grad_cosine"]) for rows in evals.values() for r in rows)
    assert sum(len(tr["y"]) for tr in cosines["data"]) == n
    # per-task curves, coloured by seed
    at.selectbox(key="curves-metric-smoke").set_value("sst").run()
    at.selectbox(key="curves-colour-smoke").set_value("seed").run()
    curves = charts(at)[0]
    assert {tr["name"] for tr in curves["data"]} == {"0", "1"}
    assert sorted(y for tr in curves["data"] for y in tr["y"]) == pytest.approx(
        sorted(r["scores"]["sst"] for rows in evals.values() for r in rows)
    )


def test_errors_view_computes_caches_and_shows_the_errors_of_a_run(smoke):
    at = run_app(view="Errors")
    run = at.selectbox(key="errors-run-smoke").value
    run_dir = smoke / "sweeps" / "smoke" / "runs" / run
    assert not detailed_path(run_dir).exists()
    assert "not computed yet" in at.info[0].value and not charts(at)
    at.number_input(key="errors-limit-smoke").set_value(60).run()
    at.button(key="errors-compute-smoke").click().run()
    assert not at.exception and not at.error
    cache = detailed_path(run_dir)
    assert cache.exists()
    rows = [json.loads(line) for line in cache.read_text().splitlines()[1:]]
    confusion, sts = charts(at)
    z = confusion["data"][0]["z"]
    assert len(z) == 5 and sum(map(sum, z)) == 60  # every SST example counted once
    sst = [r for r in rows if r["task"] == "sst"]
    for g in range(5):
        for p in range(5):
            assert z[g][p] == sum(1 for r in sst if r["gold"] == g and r["pred"] == p)
    assert sorted(sts["data"][0]["x"]) == sorted(r["gold"] for r in rows if r["task"] == "sts")
    fp, fn = at.dataframe[0].value, at.dataframe[1].value
    assert {"sentence1", "sentence2", "gold", "pred"} <= set(fp.columns)
    assert (fp["pred"] == 1).all() and (fp["gold"] == 0).all()
    assert (fn["pred"] == 0).all() and (fn["gold"] == 1).all()
    para = [r for r in rows if r["task"] == "para"]
    assert len(fp) == min(10, sum(1 for r in para if r["pred"] == 1 and r["gold"] == 0))
    # A new session reads the cache instead of recomputing.
    mtime = cache.stat().st_mtime
    again = run_app(view="Errors")
    assert len(charts(again)) == 2 and cache.stat().st_mtime == mtime
    assert not again.button


def test_two_sweeps_side_by_side(both_root, dash_env):
    dash_env(both_root)
    at = run_app(view="Leaderboard")
    at.multiselect(key="sweeps").set_value(["smoke", "synthetic"]).run()
    assert not at.exception
    assert [h.value for h in at.subheader] == ["smoke", "synthetic"]
    boards = [d.value for d in at.dataframe if "overall_mean" in d.value.columns]
    assert [len(b) for b in boards] == [2, 15]
    assert len(at.code) == 2
    at.sidebar.radio(key="view").set_value("Ablation").run()
    titles = [title(s).split(":")[0] for s in charts(at)]
    # smoke's temperature has one level (one line, no plot); synthetic's has several
    assert titles == ["sampler", "lr", "pooling", "sampler", "sampler_args.temperature"]


def test_a_running_sweep_shows_new_trials_at_the_next_refresh(synthetic_root, dash_env):
    """Cached reads are keyed by the sweep's files: a trial that starts or ends shows up on rerun."""
    from mtsearch.dashboard.study import sweep_study

    dash_env(synthetic_root)
    sd = synthetic_root / "sweeps" / "synthetic"
    at = run_app()

    def row():
        t = at.dataframe[0].value
        return tuple(t.iloc[0][["done", "running", "runs read", "status"]])

    assert row() == (15, 0, 30, "idle")
    study = sweep_study(sd)
    trial = study.ask()  # a worker starts a run of a new configuration
    params = {"lr": 1e-3, "pooling": "mean", "sampler": "round_robin"}
    rd = sd / "runs" / "0123456789" / "s0"
    rd.mkdir(parents=True)
    (rd.parent / "config.json").write_text(
        json.dumps({"params": params, "params_key": "new", "created": 99.0})
    )
    (rd / "run.json").write_text(json.dumps({"trial": trial.number, "seed": 0, "params": params}))
    row_ = {
        "kind": "eval",
        "step": 2,
        "examples": 96,
        "scores": {"sst": 0.95, "para": 0.95, "sts": 0.9},
        "overall": 0.95,  # above every synthetic configuration: the new best
    }
    (rd / "metrics.jsonl").write_text(json.dumps(row_) + "\n")
    at.run()
    assert row() == (15, 1, 30, "running")
    assert any("1 run(s) are still running" in w.value for w in at.main.warning)
    (rd / "result.json").write_text(
        json.dumps({"status": "finished", "overall": 0.95, "best": {"step": 2, "scores": row_["scores"]}})
    )
    study.tell(trial, 0.95)
    at.run()
    assert row() == (16, 0, 31, "idle")
    assert at.dataframe[0].value.iloc[0]["best overall"] == pytest.approx(0.95)
