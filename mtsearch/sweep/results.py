"""Sweep results with honest statistics: configurations over seeds, ablations per dimension.

Results are read from the run directories a sweep wrote (its runs table,
:func:`mtsearch.sweep.runner.load_runs`), so they are the same whichever backend ran the sweep and survive a
crash of the sweep itself. A run's score is its best checkpoint's (the best periodic
evaluation, or the full dev sets when it was measured), never its last evaluation.

Ablation: for each dimension, every run (all seeds of all configurations) with a given
level is one sample of that level; the table gives the mean with a 95% t-interval, the
difference from the best level and Welch's t-test of that difference. Levels whose
difference is not significant at 5% are "not distinguishable from the best". Numeric
dimensions are cut into quantile bins. Conditional dimensions count only the runs where
they applied.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtsearch.errors import MtsearchError
from mtsearch.records import atomic_write_text
from mtsearch.sweep.runner import read_sweep_meta, sweeps_dir
from mtsearch.tasks import TASKS

ALPHA = 0.05
NA = "n/a"  # the level of a conditional dimension in a run where it does not apply


@dataclass
class SweepResults:
    name: str
    sweep_dir: Path
    meta: dict[str, Any]
    runs: Any  # pandas DataFrame, one row per finished run
    configurations: Any  # one row per configuration, ranked
    ablation: Any  # one row per (dimension, level)
    pareto: Any | None
    metrics: list[str]
    dims: list[str]
    incomplete: int  # runs without a result (running, killed, half-written)


def find_sweep(name: str) -> Path:
    p = Path(name)
    if (p / "sweep.json").exists():
        return p
    cand = sweeps_dir() / name
    if (cand / "sweep.json").exists():
        return cand
    known = (
        sorted(d.name for d in sweeps_dir().glob("*") if (d / "sweep.json").exists())
        if sweeps_dir().exists()
        else []
    )
    raise MtsearchError(f"no sweep '{name}' under {sweeps_dir()}; sweeps: {', '.join(known) or 'none yet'}")


def load_runs(sweep_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """Runs with a final status (rows of :func:`mtsearch.sweep.runner.load_runs`), and how many are not done."""
    from mtsearch.sweep.runner import load_runs as runs_table

    table = runs_table(sweep_dir)
    live = table["status"].isin(("running", "interrupted"))
    return table[~live].to_dict("records"), int(live.sum())


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """Half-width of the 95% t-interval of the mean, and the standard deviation."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    sd = float(np.std(values, ddof=1))
    return float(stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)), sd


def welch(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test; NaN when either side has fewer than 2 values."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.std(a) == 0 and np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def level_label(value: Any) -> str:
    """A dimension's value as its level in the tables: lists and dicts as JSON, anything else as str.

    The one spelling of a level: the ablation, the leaderboard, the curves and the dashboard's
    level orders all match levels by this text.
    """
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def shown_level(cell: Any) -> str:
    """A level cell of a table for display: :data:`NA` where the dimension does not apply (None, NaN)."""
    return NA if _missing(cell) else level_label(cell)


def compute(name: str) -> SweepResults:
    import pandas as pd

    sweep_dir = find_sweep(name)
    meta = read_sweep_meta(sweep_dir)
    space = meta.get("space", {})
    dims = [d["name"] for d in space.get("dimensions", [])]
    dim_defs = {d["name"]: d for d in space.get("dimensions", [])}
    tasks = list(space.get("base", {}).get("tasks") or ["sst", "para", "sts"])
    metrics = ["overall", *tasks]
    rows, incomplete = load_runs(sweep_dir)
    runs = pd.DataFrame(rows)
    empty = pd.DataFrame()
    if runs.empty or "overall" not in runs or runs["overall"].notna().sum() == 0:
        return SweepResults(
            sweep_dir.name, sweep_dir, meta, runs, empty, empty, None, metrics, dims, incomplete
        )
    for d in dims:
        runs[d] = runs["params"].map(lambda p, d=d: level_label(p[d]) if d in p else None)
    ok = runs[runs["overall"].notna()].copy()
    confs = _configurations(ok, dims, metrics)
    ablation = pd.DataFrame(
        [row for d in dims for row in _ablation_rows(ok, d, dim_defs.get(d, {}), metrics)]
    )
    pareto = pareto_front(confs, [f"{t}_mean" for t in tasks]) if len(tasks) > 1 else None
    return SweepResults(
        sweep_dir.name, sweep_dir, meta, runs, confs, ablation, pareto, metrics, dims, incomplete
    )


def _configurations(ok, dims: list[str], metrics: list[str]):
    """One row per configuration (its finished runs over seeds): mean, sd and 95% half-width, ranked."""
    import pandas as pd

    conf_rows = []
    for key, g in ok.groupby("params_key", sort=False):
        row: dict[str, Any] = {"params_key": key, "config_hash": g["config_hash"].iloc[0], "seeds": len(g),
                               "trials": ",".join(sorted({str(t) for t in g["trial"]}))}  # fmt: skip
        row.update({d: g[d].iloc[0] for d in dims})
        for m in metrics:
            vals = g[m].astype(float).to_numpy()
            half, sd = t_interval(vals)
            row[f"{m}_mean"] = float(vals.mean())
            row[f"{m}_sd"] = sd
            row[f"{m}_ci95"] = half
        row["params"] = json.dumps(g["params"].iloc[0], sort_keys=True)
        row["example_run"] = g["run"].iloc[0]
        conf_rows.append(row)
    confs = pd.DataFrame(conf_rows).sort_values("overall_mean", ascending=False).reset_index(drop=True)
    confs.insert(0, "rank", range(1, len(confs) + 1))
    return confs


def _ablation_rows(ok, d: str, spec: dict[str, Any], metrics: list[str]) -> list[dict[str, Any]]:
    """The ablation of one dimension: each level (numeric ones in quantile bins) against the best."""
    import pandas as pd

    sub = ok[ok[d].notna()].copy()
    if sub.empty:
        return []
    if spec.get("choices") is None and sub[d].nunique() > spec.get("bins", 3):
        numeric = sub[d].astype(float)
        bins = min(int(spec.get("bins", 3)), numeric.nunique())
        cut = pd.qcut(numeric, q=bins, duplicates="drop")
        # Label each bin by the values seen in it: qcut's own left edge lies below the minimum.
        seen = numeric.groupby(cut, observed=True).agg(["min", "max"])
        labels = {iv: f"[{row['min']:.3g}, {row['max']:.3g}]" for iv, row in seen.iterrows()}
        sub["level"] = cut.map(labels).astype(str)
    else:
        sub["level"] = sub[d]
    ab_rows = []
    for m in metrics:
        groups = {lvl: g[m].astype(float).to_numpy() for lvl, g in sub.groupby("level", sort=False)}
        best_lvl = max(groups, key=lambda lvl: groups[lvl].mean())
        for lvl, vals in groups.items():
            half, sd = t_interval(vals)
            p = float("nan") if lvl == best_lvl else welch(vals, groups[best_lvl])
            ab_rows.append({
                "dimension": d, "metric": m, "level": lvl, "n": len(vals),
                "configs": sub[sub["level"] == lvl]["params_key"].nunique(),
                "mean": float(vals.mean()), "sd": sd, "ci95_low": float(vals.mean()) - half,
                "ci95_high": float(vals.mean()) + half, "diff_from_best": float(vals.mean() - groups[best_lvl].mean()),
                "p_value": p, "is_best": lvl == best_lvl,
                "distinguishable": bool(p < ALPHA) if p == p else False,
            })  # fmt: skip
    return ab_rows


def pareto_front(confs, cols: list[str]):
    """Configurations no other configuration beats on every task at once."""
    vals = confs[cols].to_numpy(dtype=float)
    keep = []
    for i, v in enumerate(vals):
        dominated = any(np.all(w >= v) and np.any(w > v) for j, w in enumerate(vals) if j != i)
        keep.append(not dominated)
    return confs[np.array(keep, dtype=bool)].reset_index(drop=True)


def write_tables(res: SweepResults) -> tuple[Path, Path]:
    trials_csv = res.sweep_dir / "trials.csv"
    ablation_csv = res.sweep_dir / "ablation.csv"
    atomic_write_text(trials_csv, res.configurations.to_csv(index=False))
    atomic_write_text(ablation_csv, res.ablation.to_csv(index=False))
    if res.pareto is not None:
        atomic_write_text(res.sweep_dir / "pareto.csv", res.pareto.to_csv(index=False))
    return trials_csv, ablation_csv


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(x: float, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def format_results(res: SweepResults, top: int = 10) -> str:
    out = [f"sweep {res.name}: {res.meta.get('space', {}).get('name', '?')} space, backend "
           f"{res.meta.get('backend', '?')}, {len(res.runs)} runs read"
           + (f", {res.incomplete} unfinished or half-written (left out)" if res.incomplete else "")]  # fmt: skip
    if res.configurations.empty:
        statuses = res.runs["status"].value_counts().to_dict() if not res.runs.empty else {}
        out.append("no finished run yet" + (f" (runs by status: {statuses})" if statuses else "") + ".")
        return "\n".join(out)
    metric_names = {m: ("overall" if m == "overall" else f"{m} {TASKS[m].metric[:3]}") for m in res.metrics}
    out.append("")
    out.append(f"configurations ranked by mean overall over seeds (top {min(top, len(res.configurations))} "
               f"of {len(res.configurations)}; mean ± sd):")  # fmt: skip
    header = ["rank", *res.dims, "seeds", *[metric_names[m] for m in res.metrics]]
    table = []
    for _, r in res.configurations.head(top).iterrows():
        table.append([str(r["rank"]), *["-" if _missing(r[d]) else str(r[d]) for d in res.dims], str(r["seeds"]),
                      *[f"{_fmt(r[f'{m}_mean'])} ± {_fmt(r[f'{m}_sd'], 3)}" for m in res.metrics]])  # fmt: skip
    out += _table(header, table)
    for d in res.dims:
        sub = res.ablation[(res.ablation["dimension"] == d) & (res.ablation["metric"] == "overall")]
        if sub.empty:
            continue
        out.append("")
        out.append(f"ablation: {d} (overall; mean and 95% CI over every run with that level; "
                   f"Welch t-test against the best level)")  # fmt: skip
        rows = []
        for _, r in sub.sort_values("mean", ascending=False).iterrows():
            verdict = (
                "best"
                if r["is_best"]
                else ("worse (p < 0.05)" if r["distinguishable"] else "not distinguishable")
            )
            rows.append([str(r["level"]), str(r["n"]), _fmt(r["mean"]), f"[{_fmt(r['ci95_low'])}, {_fmt(r['ci95_high'])}]",
                         _fmt(r["diff_from_best"]), _fmt(r["p_value"], 3), verdict])  # fmt: skip
        out += _table(["level", "runs", "mean", "95% CI", "diff", "p", "vs best"], rows)
    if res.pareto is not None and len(res.pareto):
        out.append("")
        out.append(
            f"Pareto front over the tasks: {len(res.pareto)} configuration(s) no other beats on every task"
        )
    return "\n".join(out)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return lines
