"""The task registry: what each task reads, predicts and is scored by.

The overall score follows the CS224N leaderboard: the mean of SST accuracy, QQP
accuracy and STS Pearson r mapped from [-1, 1] to [0, 1]. ``cfimdb`` is an optional
auxiliary task: it is trained and reported when enabled but is not part of ``overall``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mtsearch.registry import suggest


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    inputs: Literal["single", "pair"]
    #: ``class``: softmax over ``num_labels``; ``binary``: one logit; ``regression``: one score.
    kind: Literal["class", "binary", "regression"]
    num_labels: int
    metric: Literal["accuracy", "pearson"]
    files: dict[str, str]
    #: column holding the label in the train/dev files
    label_column: str
    #: closed range of valid labels; class/binary labels must also be whole numbers
    label_range: tuple[float, float]
    #: header of the course's prediction files
    prediction_header: str
    in_overall: bool = True
    columns: tuple[str, ...] = field(default=())
    #: which of this task's pairs supervised SimCSE takes as positives, as users read it
    #: (None: the task gives none)
    simcse_positives: str | None = None

    @property
    def text_columns(self) -> tuple[str, ...]:
        return ("sentence",) if self.inputs == "single" else ("sentence1", "sentence2")


TASKS: dict[str, TaskSpec] = {
    "sst": TaskSpec(
        name="sst",
        title="SST-5 sentiment",
        inputs="single",
        kind="class",
        num_labels=5,
        metric="accuracy",
        files={"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv", "test": "ids-sst-test-student.csv"},
        label_column="sentiment",
        label_range=(0, 4),
        prediction_header="id \t Predicted_Sentiment ",
    ),
    "para": TaskSpec(
        name="para",
        title="Quora paraphrase",
        inputs="pair",
        kind="binary",
        num_labels=1,
        metric="accuracy",
        files={"train": "quora-train.csv", "dev": "quora-dev.csv", "test": "quora-test-student.csv"},
        label_column="is_duplicate",
        label_range=(0, 1),
        prediction_header="id \t Predicted_Is_Paraphrase ",
        simcse_positives="QQP duplicates",
    ),
    "sts": TaskSpec(
        name="sts",
        title="STS-B similarity",
        inputs="pair",
        kind="regression",
        num_labels=1,
        metric="pearson",
        files={"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test-student.csv"},
        label_column="similarity",
        label_range=(0.0, 5.0),
        prediction_header="id \t Predicted_Similiarity ",
        simcse_positives="pairs scored >= simcse_sup_threshold",
    ),
    "cfimdb": TaskSpec(
        name="cfimdb",
        title="CFIMDB sentiment",
        inputs="single",
        kind="binary",
        num_labels=1,
        metric="accuracy",
        files={
            "train": "ids-cfimdb-train.csv",
            "dev": "ids-cfimdb-dev.csv",
            "test": "ids-cfimdb-test-student.csv",
        },
        label_column="sentiment",
        label_range=(0, 1),
        prediction_header="id \t Predicted_Sentiment ",
        in_overall=False,
    ),
}

#: The QQP training file of the course is 141,505 pairs; mirrors may only carry the
#: 22,646-pair subset, which the loader accepts under this name.
QQP_TRAIN_FALLBACK = "quora-train-subset.csv"


def check_task_keys(field: str, names: Iterable[str], tasks: Iterable[str], why: str = "") -> None:
    """A per-task setting may only name known tasks that this run trains (ValueError naming ``field``).

    ``why`` ends the message when a task is known but not trained (e.g. what the setting does).
    """
    tasks = tuple(tasks)
    for task in names:
        if task not in TASKS:
            raise ValueError(
                f"{field}: unknown task '{task}'{suggest(task, list(TASKS))}; choose from {', '.join(TASKS)}"
            )
        if task not in tasks:
            because = f"; {why}" if why else ""
            raise ValueError(f"{field} names '{task}', which is not in tasks ({', '.join(tasks)}){because}")


def task_score(task: str, preds: np.ndarray, golds: np.ndarray) -> float:
    """The task's leaderboard metric on predictions (labels or scores) and golds."""
    spec = TASKS[task]
    preds = np.asarray(preds, dtype=np.float64)
    golds = np.asarray(golds, dtype=np.float64)
    if len(golds) == 0:
        return float("nan")
    if spec.metric == "accuracy":
        return float(np.mean(preds == golds))
    return pearson(preds, golds)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; 0.0 when either side is constant (a collapsed regressor scores nothing)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    if denom == 0 or not np.isfinite(denom):
        return 0.0
    return float((xc * yc).sum() / denom)


def overall_score(scores: dict[str, float]) -> float:
    """(SST acc + QQP acc + (STS r + 1) / 2) / 3, over the tasks that were evaluated."""
    parts = []
    for name, value in scores.items():
        if name not in TASKS or not TASKS[name].in_overall:
            continue
        parts.append((value + 1) / 2 if TASKS[name].metric == "pearson" else value)
    return float(np.mean(parts)) if parts else float("nan")
