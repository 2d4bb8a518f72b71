"""MLflow mirror of a run directory.

The default store is a sqlite file inside ``runs/`` (``runs/mlflow.db``, artifacts in
``runs/mlartifacts``, both under ``MTSEARCH_RUNS`` when set) so nothing needs a server;
``MLFLOW_TRACKING_URI`` points elsewhere. MLflow is imported here only
(:func:`mlflow_client`), and only when a run or the dashboard asks for it.

What the MLflow UI shows of a sweep: one parent run per sweep (``sweep:<name>``) whose
metrics, one step per session of the sweep, are its current ``best_score``, its runs done,
finished, failed and pruned and its wall time; one child run per (configuration, seed)
with the config's knobs as flat params (``sampler_args.temperature``; an empty knob dict
logs nothing) plus every dimension of the space (``-`` where a dimension does not apply
to the run, so the compare view's columns line up), its evaluations as metrics
(``lr_now`` is the scheduled learning rate, ``lr`` the param is the peak), and ``score``:
the value the sweep ranks the run by (the ``mtsearch.score`` tag names it), logged at the
step of the best checkpoint, as are the ``best_*`` metrics.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mtsearch.paths import runs_dir

EXPERIMENT = "mtsearch"
#: The param value of a space dimension that does not apply to a run (a knob of another strategy).
NOT_APPLICABLE = "-"
#: The tag naming what a run's ``score`` metric is (``overall`` or a task).
SCORE_TAG = "mtsearch.score"
log = logging.getLogger("mtsearch.tracking")


def tracking_uri() -> str:
    """Where the MLflow store lives: ``MLFLOW_TRACKING_URI``, else ``runs/mlflow.db``.

    The one place that decides it: runs write there and the dashboard reads there.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(runs_dir() / 'mlflow.db').resolve()}"


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store, None for any other store (a server, a database)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def artifact_location() -> str:
    return (runs_dir() / "mlartifacts").resolve().as_uri()


def mlflow_client():
    """An ``MlflowClient`` on the store of :func:`tracking_uri` (MLflow is imported here, when used)."""
    # MLflow 3 reports usage to its maintainers over the internet unless told not to; runs
    # here stay off the network (a user may still opt in by setting it to false).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.tracking import MlflowClient

    # MLflow configures its own logger on import and reports alembic migrations and
    # store creation at INFO on first use: noise in a training log.
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)

    uri = tracking_uri()
    db = sqlite_file(uri)
    if db is not None:  # sqlite creates the file, not the folder it goes in
        db.parent.mkdir(parents=True, exist_ok=True)
        if not db.exists():
            _create_store(uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient()


def _create_store(uri: str) -> None:
    """Create a sqlite store whose Default experiment keeps its artifacts under the runs folder.

    MLflow's client would give it ``./mlruns`` of whatever directory the first run started
    in; the experiments mtsearch creates name their location themselves
    (:func:`artifact_location`), and this covers the one MLflow creates by itself.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    try:
        SqlAlchemyStore(uri, artifact_location())
    except Exception as err:  # another process creating it at the same moment: its store is as good
        log.debug("creating %s: %s", uri, err)


def get_experiment_id(client, name: str = EXPERIMENT) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location())
    except Exception:
        # Another process created it between our look-up and create.
        return client.get_experiment_by_name(name).experiment_id


def flat_params(params: dict[str, Any]) -> dict[str, str]:
    """``{"sampler_args": {"temperature": 2.0}}`` as ``{"sampler_args.temperature": "2.0"}``.

    Always flattened, and an empty dict logs nothing: a string ``"{}"`` in one run against
    flattened keys in another would put two unrelated columns in the compare view.
    """
    out: dict[str, str] = {}
    _flatten("", params, out)
    return out


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def dimension_params(dimensions: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """Every dimension of a space for one run: its value, or :data:`NOT_APPLICABLE` where inactive."""
    return {d: params[d] if d in params else NOT_APPLICABLE for d in dimensions}


class MlflowMirror:
    """Mirrors params, per-evaluation metrics, the result and the run directory's files.

    ``extra_params``: params the config does not hold (a sweep's inactive dimensions); a
    key the config already logs keeps the config's value.
    """

    def __init__(
        self,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        parent_run_id: str | None = None,
        extra_params: dict[str, Any] | None = None,
    ):
        self.client = mlflow_client()
        exp_id = get_experiment_id(self.client)
        self.score_of = tags.get(SCORE_TAG, "overall")
        all_tags = {"mlflow.runName": run_name, SCORE_TAG: self.score_of, **tags}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        self.run = self.client.create_run(exp_id, run_name=run_name, tags=all_tags)
        self.run_id = self.run.info.run_id
        flat = {**flat_params(extra_params or {}), **flat_params(params)}
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in sorted(flat.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        _log_metrics(self.client, self.run_id, step, metrics)

    def log_result(self, result: dict[str, Any]) -> None:
        """The run's outcome, at the step of its best checkpoint: ``best_*``, ``final_*`` and ``score``.

        ``score`` is what a sweep ranks the run by (:func:`mtsearch.records.run_scores`:
        the best checkpoint's scores on the full dev sets when measured, else its best
        evaluation), so the compare view sorts runs as the sweep does; only finished and
        stopped-early runs have one, as in the sweep's runs table.
        """
        from mtsearch.records import run_scores
        from mtsearch.tasks import overall_score

        best = result.get("best") or {}
        step = int(best.get("step", result.get("steps") or 0))
        metrics = {f"best_{k}": v for k, v in (best.get("scores") or {}).items()}
        metrics["best_overall"] = best.get("overall", float("nan"))
        if result.get("final"):
            metrics.update({f"final_{k}": v for k, v in result["final"].items()})
            metrics["final_overall"] = overall_score(result["final"])
        scores = run_scores(result) if result.get("status") in ("finished", "stopped_early") else {}
        if scores:
            metrics["score"] = (
                overall_score(scores) if self.score_of == "overall" else scores.get(self.score_of)
            )
        self.log_metrics(step, metrics)

    def finish(self, run_dir: Path | None, status: str) -> None:
        """status: FINISHED, FAILED or KILLED."""
        if run_dir is not None and run_dir.exists():
            for f in sorted(run_dir.iterdir()):
                # The checkpoint stays in the run directory: copying 90 MB per run into
                # the artifact store doubles disk use for nothing.
                if f.is_file() and not f.name.startswith(".") and f.suffix != ".safetensors":
                    try:
                        self.client.log_artifact(self.run_id, str(f))
                    except Exception as err:  # an artifact is never worth losing the run over
                        log.warning("could not copy %s to MLflow: %s", f.name, err)
        self.client.set_terminated(self.run_id, status=status)


def _log_metrics(client, run_id: str, step: int, metrics: dict[str, Any]) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v  # NaN is not storable
    ]
    if items:
        client.log_batch(run_id, metrics=items)


def filter_value(value: Any) -> str:
    """``value`` quoted for an MLflow filter string.

    MLflow's parser strips one pair of quotes and never unescapes, so a value is wrapped
    in the quote it does not contain; one holding both quotes cannot be expressed and is
    refused (callers filter by hexadecimal ids and tags instead of names).
    """
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ValueError(f"{text!r} holds both quote characters: it cannot appear in an MLflow filter")


def parent_run(name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
    """The sweep's parent run: one per sweep, its runs are its children."""
    from mlflow.entities import Param

    client = mlflow_client()
    exp_id = get_experiment_id(client)
    run = client.create_run(
        exp_id, run_name=f"sweep:{name}", tags={"mlflow.runName": f"sweep:{name}", **tags}
    )
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in flat_params(params).items()])
    return run.info.run_id


def find_parent(sweep_id: str) -> str | None:
    """The parent run a sweep created but did not get to record (its session was killed in between)."""
    client = mlflow_client()
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return None
    where = f"tags.`mtsearch.sweep_id` = {filter_value(sweep_id)} and tags.`mtsearch.kind` = 'sweep'"
    runs = client.search_runs(
        [exp.experiment_id], filter_string=where, max_results=1, order_by=["start_time ASC"]
    )
    return runs[0].info.run_id if runs else None


def set_status(run_id: str, status: str) -> None:
    """RUNNING (a resumed sweep), FINISHED, FAILED or KILLED."""
    client = mlflow_client()
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status=status)


def running_children(parent_id: str) -> list[tuple[str, dict[str, str]]]:
    """(run id, tags) of a sweep's child runs still RUNNING; found by the parent's id, never by a name."""
    client = mlflow_client()
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    where = f"tags.`mlflow.parentRunId` = {filter_value(parent_id)} and attributes.status = 'RUNNING'"
    runs = client.search_runs([exp.experiment_id], filter_string=where, max_results=10000)
    return [(r.info.run_id, dict(r.data.tags)) for r in runs]
