"""What optuna-dashboard shows of a sweep's study, read from a real server through its API.

The server is the one `make studies` starts (optuna-dashboard over the sweep's study.db on
127.0.0.1); the sweep is the smoke space (tiny model, 2 configurations x 2 seeds).
"""

from __future__ import annotations

import json

import pytest

from tests.servers import BIN, free_port, get_json, serve

# One worker sweeps and serves for the whole module (its fixtures are module-scoped; --dist loadgroup).
pytestmark = [
    pytest.mark.filterwarnings("ignore"),
    pytest.mark.xdist_group("test_optuna_dashboard"),
    pytest.mark.e2e,
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory, data_dir, token_cache):
    from mtsearch.backends import BACKENDS
    from mtsearch.sweep.runner import load_runs
    from mtsearch.sweep.space import load_space

    root = tmp_path_factory.mktemp("study-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTSEARCH_RUNS", str(root))
        mp.setenv("MTSEARCH_CACHE", str(token_cache))
        mp.setenv("MTSEARCH_DATA", str(data_dir))
        out = BACKENDS.get("optuna")().run(load_space("smoke"), progress=False, mlflow=False)
    assert out.runs == 4
    return root, load_runs(root / "sweeps" / "smoke")


@pytest.fixture(scope="module")
def dashboard(swept, tmp_path_factory):
    root, _ = swept
    port = free_port()
    argv = [str(BIN / "optuna-dashboard"), f"sqlite:///{root / 'sweeps' / 'smoke' / 'study.db'}",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with serve(argv, "/api/studies", port, tmp_path_factory.mktemp("dash-log") / "server.log") as base:
        yield base


def _study(base: str) -> dict:
    (study,) = get_json(base, "/api/studies")["study_summaries"]
    assert study["study_name"] == "smoke" and study["directions"] == ["maximize"]
    return get_json(base, f"/api/studies/{study['study_id']}")


def test_the_study_names_its_metric(dashboard, swept):
    assert _study(dashboard)["objective_names"] == ["overall"]  # not "Objective 0"


def test_one_trial_per_run_each_its_own_curve_on_the_step_axis(dashboard, swept):
    root, runs = swept
    trials = [t for t in _study(dashboard)["trials"] if t["state"] == "Complete"]
    by_run = {next(a["value"] for a in t["user_attrs"] if a["key"] == "run"): t for t in trials}
    assert sorted(by_run) == sorted(runs["run"])
    for _, run in runs.iterrows():
        trial = by_run[run["run"]]
        rows = [json.loads(line) for line in (root / "sweeps" / "smoke" / "runs" / run["run"] / "metrics.jsonl")
                .read_text().splitlines()]  # fmt: skip
        evals = [r for r in rows if r.get("kind") == "eval"]
        # the run's own evaluations, at its own steps (seed 1 does not continue seed 0's axis), on
        # the rows that score the run (half B): its value is the curve's point at the checkpoint
        # half A chose (issue 20 item 9: the value no longer sits below a curve of other rows)
        assert [(v["step"], v["value"]) for v in trial["intermediate_values"]] == [
            (r["step"], pytest.approx(r["half_b"]["overall"])) for r in evals
        ]
        chosen = max(evals, key=lambda r: r["half_a"]["overall"])  # the first best, as the trainer keeps it
        assert (
            trial["values"] == [pytest.approx(run["score"])] == [pytest.approx(chosen["half_b"]["overall"])]
        )
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert attrs["curve"].startswith("half B")  # the curve says which rows it shows


def test_user_attributes_are_flat_readable_scalars(dashboard, swept):
    _, runs = swept
    study = _study(dashboard)
    keys = {a["key"] for a in study["union_user_attrs"]}
    assert {"config_hash", "seed_index", "seed", "run", "status", "overall", "sst", "para", "sts"} <= keys
    for trial in study["trials"]:
        for attr in trial["user_attrs"]:
            # the dashboard json-dumps anything but str and numbers: a dict or list would show as such
            assert not attr["value"].startswith(("{", "[", "(")), attr
            assert "<" not in attr["value"] and "object at" not in attr["value"], attr  # no Python reprs
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        if trial["state"] == "Complete":
            row = runs[runs["run"] == attrs["run"]].iloc[0]
            assert (
                attrs["config_hash"] == row["config_hash"] and int(attrs["seed_index"]) == row["seed_index"]
            )
            assert int(attrs["seed"]) == row["seed"] and attrs["status"] == "finished"
