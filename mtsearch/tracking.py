"""MLflow mirror of a run directory.

The default store is a sqlite file inside ``runs/`` (``runs/mlflow.db``, artifacts in
``runs/mlartifacts``) so nothing needs a server; ``MLFLOW_TRACKING_URI`` points
elsewhere. MLflow is imported here only (:func:`mlflow_client`), and only when a run or
the dashboard asks for it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mtsearch.paths import runs_dir

EXPERIMENT = "mtsearch"
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
    mlflow.set_tracking_uri(uri)
    return MlflowClient()


def get_experiment_id(client, name: str = EXPERIMENT) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location())
    except Exception:
        # Another process created it between our look-up and create.
        return client.get_experiment_by_name(name).experiment_id


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        if not value:
            out[prefix] = "{}"
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


class MlflowMirror:
    """Mirrors params, per-evaluation metrics and the run directory's files."""

    def __init__(
        self, run_name: str, params: dict[str, Any], tags: dict[str, str], parent_run_id: str | None = None
    ):
        self.client = mlflow_client()
        exp_id = get_experiment_id(self.client)
        all_tags = {"mlflow.runName": run_name, **tags}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        self.run = self.client.create_run(exp_id, run_name=run_name, tags=all_tags)
        self.run_id = self.run.info.run_id
        flat: dict[str, str] = {}
        for k, v in params.items():
            _flatten(k, v, flat)
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, int | float) and v == v  # NaN is not storable
        ]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

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
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
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


def finish_parent(run_id: str, metrics: dict[str, float], status: str = "FINISHED") -> None:
    import time

    from mlflow.entities import Metric

    client = mlflow_client()
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v]
    if items:
        client.log_batch(run_id, metrics=items)
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
