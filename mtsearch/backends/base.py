from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from mtsearch.registry import Registry
from mtsearch.sweep.space import Space


@dataclass
class SweepOutcome:
    name: str
    sweep_dir: str
    backend: str
    wall_seconds: float
    runs: int  # train() calls made in this invocation
    run_seconds: float  # wall time inside train() over those runs
    train_eval_seconds: float  # training + evaluation time inside them
    counts: dict[str, int] = field(default_factory=dict)  # runs by status (and configurations) afterwards
    stopped_because: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. seeds added to a resumed sweep
    nodes: list[str] = field(default_factory=list)  # Ray: the nodes that trained runs
    slots: int = 1  # runs trained at once (--jobs; Ray: concurrent trials)

    def record(self) -> dict[str, Any]:
        """What sweep.json keeps of the session."""
        return {k: v for k, v in self.__dict__.items() if k not in ("name", "sweep_dir")}

    @property
    def overhead(self) -> float:
        """Share of the slots' wall time spent outside training and evaluation.

        With several runs at once their training times add up beyond the wall time, so the
        capacity is the wall time times the slots (an idle slot counts as overhead)."""
        capacity = self.wall_seconds * max(1, self.slots)
        return 1.0 - self.train_eval_seconds / capacity if capacity else float("nan")


class Backend(ABC):
    """Runs a sweep of ``space``; ``run`` returns when the budget is spent or the space exhausted."""

    name: str

    def __init__(self, args=None):
        self.args = args

    @abstractmethod
    def run(self, space: Space, name: str | None = None, **options: Any) -> SweepOutcome:
        """Run (or resume) the sweep and say why it stopped."""


BACKENDS: Registry[Backend] = Registry("backends", "backend")
