"""Links from the dashboard's run tables to each run's page in the MLflow UI.

The store is the one :func:`mtsearch.tracking.tracking_uri` names, read through MLflow's
client; the UI's address is ``MTSEARCH_MLFLOW_URL`` (or ``MTSEARCH_MLFLOW_PORT`` on
127.0.0.1, where ``make mlflow`` serves it).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("mtsearch.dashboard")

#: run ids per search: the filter string lists them all
_CHUNK = 100


def mlflow_base_url() -> str:
    return (
        os.environ.get("MTSEARCH_MLFLOW_URL")
        or f"http://127.0.0.1:{os.environ.get('MTSEARCH_MLFLOW_PORT', '5000')}"
    )


def mlflow_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_experiments(run_ids: list[str]) -> dict[str, str]:
    """run id -> experiment id of the runs the store holds; {} without a local store to read.

    Only a sqlite store that already exists is read: opening a missing one would create it,
    and a server that is down would keep the page waiting on MLflow's retries.
    """
    from mtsearch.tracking import sqlite_file, tracking_uri

    ids = sorted({r for r in run_ids if isinstance(r, str) and r})
    db = sqlite_file(tracking_uri())
    if not ids or db is None or not db.exists():
        return {}
    try:
        from mlflow.entities import ViewType

        from mtsearch.tracking import mlflow_client

        client = mlflow_client()
        experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
        out = {}
        for i in range(0, len(ids), _CHUNK):
            listed = ", ".join(f"'{r}'" for r in ids[i : i + _CHUNK])
            runs = client.search_runs(experiments, filter_string=f"attributes.run_id IN ({listed})",
                                      run_view_type=ViewType.ALL, max_results=_CHUNK)  # fmt: skip
            out.update({r.info.run_id: str(r.info.experiment_id) for r in runs})
        return out
    except Exception as err:  # a link is never worth failing the page over
        log.warning("could not read the MLflow store: %s: %s", type(err).__name__, err)
        return {}
