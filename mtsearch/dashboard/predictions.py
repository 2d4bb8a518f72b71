"""Dev predictions of one run, example by example, for error analysis.

``compute_detailed(run)`` loads the run's config and best checkpoint the way
``mtsearch predict`` does (:func:`mtsearch.predict.load_run`), predicts every dev example of every
task with :func:`mtsearch.train.evaluate.predict` and writes
``<run>/predictions/dev-detailed.jsonl``: a first line ``{"meta": {...}}`` (checkpoint
time, data folder, limit) then one line per example with its task, id, sentences, gold
label and prediction. The dashboard reads that file (:func:`read_detailed`) and never
recomputes while the checkpoint is unchanged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtsearch.records import atomic_write_text

if TYPE_CHECKING:
    from mtsearch.dashboard.sweeps import SweepData

DETAILED = Path("predictions") / "dev-detailed.jsonl"


def detailed_path(run_dir: Path) -> Path:
    return Path(run_dir) / DETAILED


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / "best.safetensors").exists() and (Path(run_dir) / "config.yaml").exists()


def is_current(run_dir: Path) -> bool:
    """The cached predictions exist and are newer than the checkpoint they came from."""
    path, ckpt = detailed_path(run_dir), Path(run_dir) / "best.safetensors"
    return path.exists() and (not ckpt.exists() or path.stat().st_mtime >= ckpt.stat().st_mtime)


def compute_detailed(run_dir: Path | str, data_dir: str | None = None, limit: int | None = None) -> Path:
    """Predict the dev sets with the run's best checkpoint; ``limit``: a seeded subset per task."""
    import torch

    from mtsearch.data import load_split
    from mtsearch.predict import load_run

    run = load_run(run_dir, data_dir, splits=("dev",))
    config, path = run.config, run.path
    if config.num_threads:  # the dashboard's server shares the machine with running sweeps
        torch.set_num_threads(config.num_threads)
    meta = {"run": path.name, "checkpoint_mtime": (path / "best.safetensors").stat().st_mtime,
            "data_dir": str(run.data_dir), "limit": limit, "tasks": list(config.tasks), "created": time.time()}  # fmt: skip
    lines = [json.dumps({"meta": meta})]
    for task in config.tasks:
        data = load_split(task, "dev", run.data_dir, strict=config.strict_data, limit=limit, warn=False)
        enc = run.encode(data)
        if len(enc) != len(data.examples):
            raise RuntimeError(f"{task}: {len(enc)} encoded examples for {len(data.examples)} read")
        idx, preds = run.predict(task, enc)
        for i, p in zip(idx, preds, strict=True):
            ex = data.examples[int(i)]
            lines.append(json.dumps({"task": task, "id": ex.id, "sentence1": ex.text_a, "sentence2": ex.text_b,
                                     "gold": ex.label, "pred": float(p)}))  # fmt: skip
    target = detailed_path(path)
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


def runs_with_checkpoint(data: SweepData) -> list[str]:
    """The runs of a sweep that kept a checkpoint, best first."""
    from mtsearch.sweep.keys import all_run_keys, run_dir

    names = [k.rel for k in all_run_keys(data.sweep_dir) if has_checkpoint(run_dir(data.sweep_dir, k))]
    if data.has_results:  # best runs first
        order = data.results.runs.sort_values("overall", ascending=False)["run"].tolist()
        names.sort(key=lambda n: order.index(n) if n in order else len(order))
    return names


def read_detailed(run_dir: Path) -> tuple[dict[str, Any], Any] | None:
    """(meta, DataFrame of examples) from the cache, or None when there is none (or it is unreadable)."""
    import pandas as pd

    path = detailed_path(run_dir)
    if not path.exists():
        return None
    meta: dict[str, Any] = {}
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "meta" in row:
            meta = row["meta"]
        else:
            rows.append(row)
    if not rows:
        return None
    return meta, pd.DataFrame(rows)


def sst_confusion(df) -> Any:
    """5 x 5 counts, gold labels as rows, predictions as columns."""
    import pandas as pd

    sub = df[df["task"] == "sst"]
    labels = list(range(5))
    mat = np.zeros((5, 5), dtype=int)
    for g, p in zip(sub["gold"].astype(int), sub["pred"].astype(int), strict=True):
        mat[g, p] += 1
    return pd.DataFrame(mat, index=[f"gold {i}" for i in labels], columns=[f"pred {i}" for i in labels])


def sts_points(df) -> Any:
    return df[df["task"] == "sts"][["id", "gold", "pred", "sentence1", "sentence2"]].reset_index(drop=True)


def qqp_errors(df, n: int = 10, seed: int = 0) -> tuple[Any, Any]:
    """A seeded sample of up to ``n`` false positives and ``n`` false negatives of QQP."""
    sub = df[df["task"] == "para"]
    cols = ["id", "sentence1", "sentence2", "gold", "pred"]
    fp = sub[(sub["pred"] == 1) & (sub["gold"] == 0)][cols]
    fn = sub[(sub["pred"] == 0) & (sub["gold"] == 1)][cols]

    def sample(x):
        return x.sample(n=min(n, len(x)), random_state=seed).reset_index(drop=True) if len(x) else x

    return sample(fp), sample(fn)


def task_summary(df) -> dict[str, float]:
    """Each task's score recomputed from the cached predictions (a check against result.json)."""
    from mtsearch.tasks import task_score

    return {
        t: task_score(t, g["pred"].to_numpy(), g["gold"].to_numpy().astype(float))
        for t, g in df.groupby("task", sort=False)
    }
