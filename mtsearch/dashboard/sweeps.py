"""Finding and reading sweeps: what every dashboard view starts from, computed without Streamlit.

Everything is read from the sweep folders under ``runs/sweeps/`` (``MTSEARCH_RUNS``):
``sweep.json`` (space, backend, sessions), the run directories under ``runs/`` (scores via
:func:`mtsearch.sweep.results.compute`) and the Optuna study in ``study.db`` (trial states).

Nothing here raises on a sweep that is empty, failed or half-written: such problems end
up as plain sentences in :attr:`SweepData.notices` / :attr:`SweepData.error`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtsearch.paths import runs_dir
from mtsearch.tasks import TASKS

#: trial states shown in the sweeps table, in this order
COUNT_KEYS = ("done", "pruned", "failed", "running")


def sweeps_root(root: Path | None = None) -> Path:
    return (Path(root) if root else runs_dir()) / "sweeps"


def list_sweeps(root: Path | None = None) -> list[Path]:
    """Sweep folders (those with a sweep.json), newest first."""
    base = sweeps_root(root)
    if not base.is_dir():
        return []
    found = [d for d in base.iterdir() if d.is_dir() and (d / "sweep.json").exists()]
    return sorted(found, key=lambda d: (_mtime(d / "sweep.json"), d.name), reverse=True)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def signature(sweep_dir: Path) -> tuple:
    """Changes whenever a run starts, evaluates or finishes (a cheap cache key for live sweeps)."""
    sweep_dir = Path(sweep_dir)
    n, latest = 0, 0.0
    for p in (sweep_dir / "sweep.json", sweep_dir / "study.db", sweep_dir / "trials.csv"):
        latest = max(latest, _mtime(p))
    from mtsearch.sweep.keys import all_run_keys, run_dir

    for key in all_run_keys(sweep_dir):
        for f in ("run.json", "result.json", "metrics.jsonl"):
            m = _mtime(run_dir(sweep_dir, key) / f)
            if m:
                n += 1
                latest = max(latest, m)
    return (str(sweep_dir), n, latest)


def metric_label(m: str) -> str:
    return "overall" if m == "overall" else f"{m} ({TASKS[m].metric})" if m in TASKS else m


# --------------------------------------------------------------------------- one sweep


@dataclass
class SweepData:
    name: str
    sweep_dir: Path
    meta: dict[str, Any]
    results: Any | None  # mtsearch.sweep.results.SweepResults
    counts: dict[str, int]
    counts_from: str  # "study" or "run directories"
    wall_seconds: float | None
    notices: list[str] = field(default_factory=list)
    error: str | None = None  # the sweep could not be read at all

    @property
    def space(self) -> dict[str, Any]:
        return self.meta.get("space") or {}

    @property
    def has_results(self) -> bool:
        return self.results is not None and not self.results.configurations.empty

    @property
    def best(self) -> float | None:
        if not self.has_results:
            return None
        return float(self.results.configurations["overall_mean"].max())

    @property
    def tasks(self) -> list[str]:
        return list((self.space.get("base") or {}).get("tasks") or ["sst", "para", "sts"])

    @property
    def dim_names(self) -> list[str]:
        """The space's dimensions, in its order (also those no finished run has yet)."""
        return [d.get("name") for d in self.space.get("dimensions", [])]

    def dim_spec(self, name: str) -> dict[str, Any]:
        return next((d for d in self.space.get("dimensions", []) if d.get("name") == name), {})

    def status_message(self) -> str:
        """One plain sentence for a sweep that has nothing to rank yet."""
        if self.error:
            return self.error
        runs = self.results.runs if self.results is not None else None
        statuses = runs["status"].value_counts().to_dict() if runs is not None and not runs.empty else {}
        what = ", ".join(f"{v} {k}" for k, v in statuses.items())
        if statuses and set(statuses) <= {"failed", "killed"}:
            return f"Sweep '{self.name}' has only failed runs ({what}): nothing to rank. See each run's result.json for its error."
        if statuses:
            return f"Sweep '{self.name}' has no finished run yet ({what})."
        incomplete = self.results.incomplete if self.results is not None else 0
        if incomplete:
            return f"Sweep '{self.name}' has no finished run yet ({incomplete} running or half-written)."
        return f"Sweep '{self.name}' has no run yet."


def load_sweep(sweep_dir: Path | str) -> SweepData:
    from mtsearch.sweep.results import compute
    from mtsearch.sweep.runner import read_sweep_meta

    sweep_dir = Path(sweep_dir)
    name = sweep_dir.name
    try:
        meta = read_sweep_meta(sweep_dir)
    except (OSError, json.JSONDecodeError):
        return SweepData(name, sweep_dir, {}, None, {}, "-", None,
                         error=f"Sweep '{name}': sweep.json is unreadable or half-written; try again in a moment.")  # fmt: skip
    notices: list[str] = []
    try:
        res = compute(str(sweep_dir))
    except Exception as err:  # a sweep being written can be read mid-change
        return SweepData(name, sweep_dir, meta, None, {}, "-", _wall(meta),
                         error=f"Sweep '{name}' could not be read ({type(err).__name__}: {err}).")  # fmt: skip
    if res.incomplete:
        notices.append(
            f"{res.incomplete} run(s) are still running or have a half-written result.json: left out until they finish."
        )
    notices += _check_trials_csv(sweep_dir)
    counts, source, note = trial_counts(sweep_dir, meta, res)
    if note:
        notices.append(note)
    return SweepData(
        name, sweep_dir, meta, res, counts, source, _wall(meta, bool(counts.get("running"))), notices
    )


def _wall(meta: dict[str, Any], running: bool = False) -> float | None:
    """Wall time of the recorded sweep sessions, plus the session still running (since the last ended)."""
    sessions = meta.get("sessions") or []
    total = float(sum(s.get("wall_seconds") or 0.0 for s in sessions))
    if running:
        since = max([s.get("ended") or 0.0 for s in sessions] + [meta.get("created") or 0.0])
        if since:
            total += max(0.0, time.time() - since)
    return total if sessions or running else None


def _check_trials_csv(sweep_dir: Path) -> list[str]:
    """trials.csv is a by-product (written after each sweep session); say so when it is damaged."""
    import pandas as pd

    path = sweep_dir / "trials.csv"
    if not path.exists():
        return []
    try:
        table = pd.read_csv(path)
        text = path.read_text()
    except Exception:
        return ["trials.csv is unreadable (half-written?); every table here is computed from the run directories instead."]  # fmt: skip
    if not text.endswith("\n") or table.isna().all(axis=1).any() or "overall_mean" not in table:
        return ["trials.csv looks half-written; every table here is computed from the run directories instead."]  # fmt: skip
    return []


def trial_counts(sweep_dir: Path, meta: dict[str, Any], res=None) -> tuple[dict[str, int], str, str | None]:
    """Configurations by state: done, pruned, failed, running, from the run directories (the truth);
    a study adds the proposals it set aside as duplicates."""
    counts = dir_counts(sweep_dir)
    study_db = sweep_dir / "study.db"
    if study_db.exists():
        try:
            from mtsearch.backends.optuna_study import trial_counts as study_counts
            from mtsearch.dashboard.study import sweep_study

            counts["duplicate"] = study_counts(sweep_study(sweep_dir)).get("duplicate", 0)
        except Exception as err:
            return counts, "run directories", f"study.db could not be read ({type(err).__name__})."
    return counts, "run directories", None


def dir_counts(sweep_dir: Path) -> dict[str, int]:
    """Per configuration (all its seeds): running if a seed is not done, failed if one failed, ..."""
    from mtsearch.sweep.runner import load_runs

    runs = load_runs(sweep_dir)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for _, statuses in runs.groupby("config_hash")["status"] if not runs.empty else []:
        if statuses.isin(("running", "interrupted")).any():
            counts["running"] += 1
        elif (statuses == "failed").any():
            counts["failed"] += 1
        elif (statuses == "pruned").any():
            counts["pruned"] += 1
        else:
            counts["done"] += 1
    return counts


def sweeps_table(sweeps: list[SweepData]):
    """One row per sweep: space, backend, dimensions, counts, best overall, wall time."""
    import pandas as pd

    rows = []
    for s in sweeps:
        sp = s.space
        row = {
            "sweep": s.name,
            "space": sp.get("name", "?"),
            "backend": s.meta.get("backend", "?"),
            "algorithm": sp.get("algorithm", "?"),
            "dimensions": ", ".join(d.get("name", "?") for d in sp.get("dimensions", [])),
            "seeds": sp.get("seeds"),
        }
        row.update({k: s.counts.get(k, 0) for k in COUNT_KEYS})
        row["runs read"] = 0 if s.results is None else len(s.results.runs)
        row["best overall"] = s.best
        row["wall time (min)"] = None if s.wall_seconds is None else round(s.wall_seconds / 60, 2)
        row["last activity"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(signature(s.sweep_dir)[2]))
        row["status"] = "unreadable" if s.error else ("running" if s.counts.get("running") else "idle")
        rows.append(row)
    return pd.DataFrame(rows)
