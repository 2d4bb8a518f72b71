"""What the MLflow UI shows of a sweep, read from a real `mlflow server` through its REST API.

The smoke sweep (tiny model, 2 configurations x 2 seeds) runs twice: the second session
finds it complete. The server is the one `make mlflow` starts, over the sweep's store, on
loopback; every check reads what the UI reads (runs/search, metrics/get-history,
get-artifact), never the sqlite file.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.servers import BIN, free_port, get, get_json, post_json, serve

# One worker sweeps and serves for the whole module (its fixtures are module-scoped; --dist loadgroup).
pytestmark = [
    pytest.mark.filterwarnings("ignore"),
    pytest.mark.xdist_group("test_tracking_server"),
    pytest.mark.e2e,
]

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def swept(tmp_path_factory, data_dir, token_cache):
    """runs/ holding the smoke sweep, swept and then resumed once (nothing left to train)."""
    from mtsearch.backends import BACKENDS
    from mtsearch.sweep.runner import load_runs
    from mtsearch.sweep.space import load_space

    root = tmp_path_factory.mktemp("mlflow-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTSEARCH_RUNS", str(root))
        mp.setenv("MTSEARCH_CACHE", str(token_cache))
        mp.setenv("MTSEARCH_DATA", str(data_dir))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(tmp_path_factory.mktemp("elsewhere"))  # the store must not follow the working directory
        first = BACKENDS.get("optuna")().run(load_space("smoke"), progress=False)
        again = BACKENDS.get("optuna")().run(load_space("smoke"), progress=False)
    assert (first.runs, again.runs) == (4, 0)
    return root, load_runs(root / "sweeps" / "smoke")


@pytest.fixture(scope="module")
def server(swept, tmp_path_factory):
    """`make mlflow`'s server over the sweep's store (its command, with a free port)."""
    root, _ = swept
    port = free_port()
    argv = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "mlartifacts")]  # fmt: skip
    with serve(argv, "/health", port, tmp_path_factory.mktemp("mlflow-log") / "server.log") as base:
        yield base


def _search(base: str, exp_id: str, where: str) -> list[dict]:
    return post_json(base, f"{API}/runs/search", {"experiment_ids": [exp_id], "filter": where,
                                                  "max_results": 1000}).get("runs", [])  # fmt: skip


def _experiment(base: str) -> dict:
    return get_json(base, f"{API}/experiments/get-by-name", experiment_name="mtsearch")["experiment"]


def _kv(items: list[dict] | None) -> dict:
    return {i["key"]: i["value"] for i in items or []}


def _history(base: str, run_id: str, key: str) -> list[dict]:
    return get_json(base, f"{API}/metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])


def test_one_parent_per_sweep_with_its_children(server, swept):
    _, runs = swept
    exp_id = _experiment(server)["experiment_id"]
    parents = _search(server, exp_id, "tags.`mtsearch.kind` = 'sweep'")
    assert [_kv(p["data"]["tags"])["mlflow.runName"] for p in parents] == [
        "sweep:smoke"
    ]  # resumed: not a second
    children = _search(server, exp_id, f"tags.`mlflow.parentRunId` = '{parents[0]['info']['run_id']}'")
    assert sorted(c["info"]["run_id"] for c in children) == sorted(runs["mlflow_run_id"])
    assert {c["info"]["status"] for c in children} == {"FINISHED"}
    assert parents[0]["info"]["status"] == "FINISHED"


def test_each_child_scores_as_the_sweep_ranks_it_at_its_best_step(server, swept):
    _, runs = swept
    for _, run in runs.iterrows():
        rid = run["mlflow_run_id"]
        data = get_json(server, f"{API}/runs/get", run_id=rid)["run"]["data"]
        assert _kv(data["tags"])["mtsearch.score"] == "overall"
        (score,) = _history(server, rid, "score")  # one value, not a curve
        assert score["value"] == pytest.approx(run["score"]) and not math.isnan(run["score"])
        assert score["step"] == run["best_step"]
        (best,) = _history(server, rid, "best_overall")
        assert best["step"] == run["best_step"] and best["value"] == pytest.approx(run["overall"])
        # the scheduled learning rate is a metric of its own; "lr" stays the (peak) param
        params = _kv(data["params"])
        assert "lr" in params and "lr" not in _kv(data["metrics"])
        assert [m["step"] for m in _history(server, rid, "lr_now")] == [2, 4]  # eval_every 2, max_steps 4


def test_children_share_one_set_of_flat_param_keys(server, swept):
    _, runs = swept
    keys, temps = [], {}
    for _, run in runs.iterrows():
        params = _kv(
            get_json(server, f"{API}/runs/get", run_id=run["mlflow_run_id"])["run"]["data"]["params"]
        )
        keys.append(set(params))
        assert "{}" not in params.values() and not any(v.startswith("{") for v in params.values())
        temps[(params["sampler"], run["seed_index"])] = params["sampler_args.temperature"]
    assert all(k == keys[0] for k in keys)  # parallel coordinates line up
    assert {"sampler", "sampler_args.temperature"} <= keys[0]  # every dimension of the space
    assert temps == {("round_robin", 0): "-", ("round_robin", 1): "-", ("temperature", 0): "2.0",
                     ("temperature", 1): "2.0"}  # fmt: skip


def test_the_parent_keeps_each_sessions_totals(server, swept):
    _, runs = swept
    exp_id = _experiment(server)["experiment_id"]
    (parent,) = _search(server, exp_id, "tags.`mtsearch.kind` = 'sweep'")
    rid = parent["info"]["run_id"]
    done = _history(server, rid, "runs_done")
    assert sorted((m["step"], m["value"]) for m in done) == [(0, 4), (1, 4)]  # resuming did not log 0 runs
    assert [m["value"] for m in _history(server, rid, "runs_failed")] == [0, 0]
    assert [m["value"] for m in _history(server, rid, "runs_pruned")] == [0, 0]
    walls = sorted(_history(server, rid, "wall_seconds"), key=lambda m: m["step"])
    assert 0 < walls[0]["value"] <= walls[1]["value"]  # the sweep's total wall time, not the session's
    means = runs.groupby("config_hash")["score"].mean()
    best = sorted(_history(server, rid, "best_score"), key=lambda m: m["step"])
    assert [m["value"] for m in best] == pytest.approx([means.max()] * 2)
    tags = _kv(parent["data"]["tags"])
    assert tags["mtsearch.best_config"] == means.idxmax()
    params = _kv(parent["data"]["params"])
    assert params["space"] == "smoke" and params["objective"] == "overall"


def test_artifacts_are_downloadable_and_stored_under_the_runs_folder(server, swept):
    root, runs = swept
    run = runs.iloc[0]
    listed = get_json(server, f"{API}/artifacts/list", run_id=run["mlflow_run_id"])
    names = {f["path"] for f in listed["files"]}
    assert {"result.json", "config.yaml", "metrics.jsonl", "env.json"} <= names
    # /get-artifact is what the UI's artifact view downloads
    body = get(server, "/get-artifact", path="result.json", run_uuid=run["mlflow_run_id"])
    local = json.loads((root / "sweeps" / "smoke" / "runs" / run["run"] / "result.json").read_text())
    assert json.loads(body)["best"] == local["best"]
    exp = _experiment(server)
    default = get_json(server, f"{API}/experiments/get", experiment_id="0")["experiment"]
    for location in (exp["artifact_location"], default["artifact_location"]):
        assert location.startswith((root / "mlartifacts").as_uri()), location
    (parent,) = _search(server, exp["experiment_id"], "tags.`mtsearch.kind` = 'sweep'")
    sweep_json = json.loads(
        get(server, "/get-artifact", path="sweep.json", run_uuid=parent["info"]["run_id"])
    )
    assert len(sweep_json["sessions"]) == 2
