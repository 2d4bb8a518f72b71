"""Sweep results: a verdict per level that holds up, from the run directories a sweep wrote.

Results are read from the run directories a sweep wrote (the runs table of
:func:`mtsearch.sweep.runner.load_runs`: one row per run directory, ``config_hash,
seed_index, seed, status, error, score``, every task score, ``params``, one column per
dimension, ``pruned_config``, ``run_dir``, ``seconds``), so they are the same whichever
backend ran the sweep and survive a crash of the sweep itself.

A run's score is the runner's (:func:`mtsearch.sweep.runner.run_scores`): its best
checkpoint's, on the full dev sets where ``final_eval`` ran, else (``held_out_score``) on
the half of the evaluation rows that did not choose the checkpoint.

Per dimension and metric, :func:`mtsearch.sweep.stats.analyse` fits the model of the sweep
(configuration + seed block; main effects and two-way interactions over a full grid;
configurations as units when a sampler chose them) and gives every level a verdict: in best
set (Hsu's), worse or untested; beside it, whether a best-set member is decided against the
best: equivalent (within the space's ``delta`` of the best) or undecided (with the seeds that
would decide it). Configurations that had a pruned run never enter
level means; failed runs are listed with their error; prune and failure counts show per
level. Numeric dimensions are cut into quantile bins; conditional dimensions count only the
runs where they apply. Where runs stored their scored evaluation's examples, a paired
bootstrap over those examples shows the evaluation-set noise next to the seed noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtsearch.errors import MtsearchError
from mtsearch.records import atomic_write_text, read_eval_examples
from mtsearch.sweep import racing, stats
from mtsearch.sweep.runner import read_sweep_meta, sweeps_dir
from mtsearch.tasks import TASKS

ALPHA = stats.ALPHA
NA = "n/a"  # the level of a conditional dimension in a run where it does not apply
USABLE = ("finished", "stopped_early")
BOOTSTRAP_DRAWS = 200
BOOTSTRAP_SEED = 20240  # the paired bootstrap's generator


@dataclass
class SweepResults:
    name: str
    sweep_dir: Path
    meta: dict[str, Any]
    runs: Any  # pandas DataFrame: the runs table, one row per run directory with a result
    configurations: Any  # one row per configuration (usable runs, never pruned), ranked
    ablation: Any  # one row per (dimension, metric, level)
    pareto: Any | None
    metrics: list[str]
    dims: list[str]
    incomplete: int  # runs without a result (running, killed, half-written)
    models: dict[tuple[str, str], Any] = field(default_factory=dict)  # (dimension, metric) -> stats.Analysis
    eval_noise: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    delta: float = stats.DELTA
    alpha: float = (
        stats.ALPHA
    )  # of the verdicts' simultaneous intervals (racing.verdict_alpha: 0.04 when raced)

    @property
    def confidence(self) -> str:
        """The verdicts' simultaneous level, as printed ("95%", "96%" for a raced sweep)."""
        return stats.confidence(self.alpha)

    @property
    def failed(self):
        """The failed runs with their error."""
        runs = self.runs
        return runs[runs["status"] == "failed"] if len(runs) else runs


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


def load_runs(sweep_dir: Path, meta: dict[str, Any] | None = None):
    """The runs with a final status (the runner's runs table) and how many are not done yet.

    A run still training (or interrupted, to be trained again by the next session) is left
    out until it has a result; ``meta`` is accepted for callers that read it already.
    """
    from mtsearch.sweep.runner import load_runs as runs_table

    table = runs_table(sweep_dir)
    if table.empty:
        return table, 0
    live = table["status"].isin(("running", "interrupted"))
    return table[~live].reset_index(drop=True), int(live.sum())


def level_label(value: Any) -> str:
    """A dimension's value as its level in the tables: lists and dicts as JSON, anything else as str.

    The one spelling of a level: the ablation, the leaderboard, the curves and the dashboard's
    level orders all match levels by this text.
    """
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def shown_level(cell: Any) -> str:
    """A level cell of a table for display: :data:`NA` where the dimension does not apply (None, NaN)."""
    return NA if _missing(cell) else level_label(cell)


def compute(name: str, below_seed_index: int | None = None) -> SweepResults:
    """The tables of a sweep from its run folders; ``below_seed_index``: only the runs of seed
    index below it (a racing round's view, as the race decided on it)."""
    import pandas as pd

    sweep_dir = find_sweep(name)
    meta = read_sweep_meta(sweep_dir)
    space = meta.get("space", {})
    dims = [d["name"] for d in space.get("dimensions", [])]
    dim_defs = {d["name"]: d for d in space.get("dimensions", [])}
    tasks = list(space.get("base", {}).get("tasks") or ["sst", "para", "sts"])
    metrics = ["overall", *tasks]
    delta = float(space.get("delta", stats.DELTA))
    alpha = racing.verdict_alpha(space)
    runs, incomplete = load_runs(sweep_dir, meta)
    if below_seed_index is not None and not runs.empty:
        runs = runs[runs["seed_index"] < below_seed_index].reset_index(drop=True)
    empty = pd.DataFrame()
    out = SweepResults(sweep_dir.name, sweep_dir, meta, runs, empty, empty, None, metrics, dims, incomplete,
                       delta=delta, alpha=alpha)  # fmt: skip
    if runs.empty or "overall" not in runs or runs["overall"].notna().sum() == 0:
        return out
    for d in dims:  # the level labels (numeric dimensions with many values: quantile bins)
        runs[f"level:{d}"] = _levels(runs, d, dim_defs.get(d, {}))
    usable = runs["status"].isin(USABLE) & runs["overall"].notna() & ~runs["pruned_config"]
    ok = runs[usable].copy()
    ok["config"] = ok["config_hash"]
    out.configurations = _configurations(ok, dims, metrics)
    grid = _is_grid(space)
    boot = _bootstrap(ok, metrics)
    rows = []
    for d in dims:
        for m in metrics:
            a = stats.analyse(ok, f"level:{d}", metric=m, factors=[f"level:{f}" for f in dims], grid=grid,
                              delta=delta, alpha=alpha, rng=np.random.default_rng(stats.STATS_SEED))  # fmt: skip
            if a.kind == "none" and not len(a.table):
                continue
            out.models[(d, m)] = a
            noise = _noise(boot, ok, d, m, a)
            if noise:
                out.eval_noise[(d, m)] = noise
            rows += _ablation_rows(runs, d, m, a, noise)
    out.ablation = pd.DataFrame(rows)
    out.pareto = pareto_front(out.configurations, [f"{t}_mean" for t in tasks]) if len(tasks) > 1 else None
    return out


def _is_grid(space: dict[str, Any]) -> bool:
    from mtsearch.sweep.algorithms import ALGORITHMS

    algorithm = ALGORITHMS.get(space.get("algorithm", "grid"))
    return bool(algorithm is not None and algorithm.grid)


def _levels(runs, d: str, spec: dict[str, Any]):
    """Each run's level of dimension ``d`` (None where it does not apply); numeric ones binned."""
    import pandas as pd

    col = runs[d] if d in runs else pd.Series([None] * len(runs), index=runs.index)
    active = col.map(lambda v: not _missing(v))
    labels = pd.Series([None] * len(runs), index=runs.index, dtype=object)
    labels[active] = col[active].map(level_label)
    if spec.get("choices") is None and active.any():
        numeric = pd.to_numeric(col[active], errors="coerce")
        bins = int(spec.get("bins", 3))
        if numeric.notna().all() and numeric.nunique() > bins:
            cut = pd.qcut(numeric, q=min(bins, numeric.nunique()), duplicates="drop")
            # Label each bin by the values seen in it: qcut's own left edge lies below the minimum.
            seen = numeric.groupby(cut, observed=True).agg(["min", "max"])
            names = {iv: f"[{row['min']:.3g}, {row['max']:.3g}]" for iv, row in seen.iterrows()}
            labels[active] = cut.map(names).astype(str)
    return labels


def _configurations(ok, dims: list[str], metrics: list[str]):
    """One row per configuration (its usable runs over seeds): mean, sd and 95% half-width, ranked."""
    import pandas as pd
    from scipy import stats as sps

    conf_rows = []
    for key, g in ok.groupby("config_hash", sort=False):
        row: dict[str, Any] = {"config_hash": key, "params_key": g["params_key"].iloc[0], "seeds": len(g),
                               "seed_indices": ",".join(str(int(s)) for s in sorted(g["seed_index"])),
                               "trials": ",".join(sorted({str(t) for t in g["trial"]}))}  # fmt: skip
        row.update({d: g[d].iloc[0] for d in dims})
        for m in metrics:
            vals = g[m].astype(float).to_numpy()
            n = len(vals)
            sd = float(np.std(vals, ddof=1)) if n > 1 else float("nan")
            row[f"{m}_mean"] = float(vals.mean())
            row[f"{m}_sd"] = sd
            row[f"{m}_ci95"] = (
                float(sps.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else float("nan")
            )
        row["params"] = json.dumps(g["params"].iloc[0], sort_keys=True)
        row["example_run"] = g["run"].iloc[0]
        row["runs"] = g.sort_values("seed_index")["run"].tolist()
        row["seed_values"] = g.sort_values("seed_index")["seed"].tolist()
        conf_rows.append(row)
    confs = pd.DataFrame(conf_rows).sort_values("overall_mean", ascending=False).reset_index(drop=True)
    confs.insert(0, "rank", range(1, len(confs) + 1))
    return confs


def _ablation_rows(runs, d: str, m: str, a, noise: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The analysis table as ablation rows, with each level's failed and pruned run counts."""
    col = f"level:{d}"
    rows = []
    tested = a.table[~a.table["verdict"].map(stats.is_untested)]  # sorted by mean: the first is the best
    observed_best = tested["level"].iloc[0] if len(tested) else None
    for rec in a.table.to_dict("records"):
        mine = runs[runs[col] == rec["level"]]
        rows.append({
            "dimension": d, "metric": m, **rec, "model": a.kind, "is_best": rec["level"] == observed_best,
            "failed": int((mine["status"] == "failed").sum()),
            "pruned": int(mine.loc[mine["pruned_config"], "config_hash"].nunique()),
            "eval_sd": (noise or {}).get("level_sd", {}).get(rec["level"], np.nan),
            "eval_diff_sd": (noise or {}).get("diff_sd", {}).get(rec["level"], np.nan),
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- evaluation-set noise


def _bootstrap(ok, metrics: list[str]) -> dict[str, Any] | None:
    """Every usable run's scores on the same resampled evaluation examples (one paired bootstrap).

    Only runs that stored their scored evaluation's examples, and only if every one of them
    scored the same examples (the same rows of the same evaluation); None otherwise.
    """
    records = {}
    for rd, run in zip(ok["run_dir"], ok["run"], strict=True):
        got = read_eval_examples(Path(rd))
        if got is None:
            return None
        records[run] = got
    first = next(iter(records.values()))
    which, examples = first
    for other_which, other in records.values():
        if other_which != which or set(other) != set(examples):
            return None
        if any(not np.array_equal(other[t][0], examples[t][0]) for t in examples):
            return None
    names = list(records)
    preds = {t: np.stack([records[r][1][t][1] for r in names]) for t in examples}
    golds = {t: examples[t][2] for t in examples}
    per_task = stats.bootstrap_scores(preds, golds, BOOTSTRAP_DRAWS, np.random.default_rng(BOOTSTRAP_SEED))
    scores = {t: v for t, v in per_task.items() if t in metrics}
    if any(t in TASKS and TASKS[t].in_overall for t in scores):
        scores["overall"] = stats.combine_overall(per_task)
    return {
        "runs": names,
        "scores": scores,
        "which": which,
        "examples": {t: len(g) for t, g in golds.items()},
    }


def _noise(boot, ok, d: str, m: str, a) -> dict[str, Any] | None:
    """Evaluation-set sd of each tested level's mean and of its difference from the best, beside the seed sd."""
    if boot is None or m not in boot["scores"] or a.kind in ("none",) or not len(a.table):
        return None
    tested = a.table[~a.table["verdict"].map(stats.is_untested)]
    if tested.empty:
        return None
    by_run = dict(zip(ok["run"], ok[f"level:{d}"], strict=True))
    level_of = np.array([by_run.get(r) for r in boot["runs"]], dtype=object)
    levels = [lvl for lvl in tested["level"] if (level_of == lvl).any()]
    if not levels:
        return None
    keep = np.isin(level_of, levels)
    out = stats.eval_noise(boot["scores"][m][:, keep], level_of[keep], levels, levels[0])
    out.update({"which": boot["which"], "examples": boot["examples"], "draws": BOOTSTRAP_DRAWS})
    return out


# --------------------------------------------------------------------------- tables


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
    atomic_write_text(
        trials_csv, res.configurations.drop(columns=["runs"], errors="ignore").to_csv(index=False)
    )
    atomic_write_text(ablation_csv, res.ablation.to_csv(index=False))
    if res.pareto is not None:
        atomic_write_text(
            res.sweep_dir / "pareto.csv",
            res.pareto.drop(columns=["runs"], errors="ignore").to_csv(index=False),
        )
    return trials_csv, ablation_csv


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(x: Any, digits: int = 4, sign: bool = False) -> str:
    if _missing(x):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _yaml_value(value: Any) -> str:
    import yaml

    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("...").strip()


def reproduce_values(meta: dict[str, Any], params: dict[str, Any], seed: int) -> dict[str, Any]:
    from mtsearch.config import apply_overrides

    base = (meta.get("space") or {}).get("base") or {}
    return apply_overrides(base, {**params, "seed": seed})


def reproduce_command(
    meta: dict[str, Any], params: dict[str, Any], seed: int, program: str = "mtsearch"
) -> str:
    """``mtsearch train --set key=value ...`` with the sweep's base, the params and the seed."""
    import shlex

    parts = [program, "train"]
    for key, value in reproduce_values(meta, params, seed).items():
        parts += ["--set", shlex.quote(f"{key}={_yaml_value(value)}")]
    return " ".join(parts)


def reproduce_all_command(
    meta: dict[str, Any], params: dict[str, Any], seeds: list[int], program: str = "mtsearch"
) -> str:
    """One shell command that trains a configuration with every one of its seeds (not its luckiest)."""
    if len(seeds) == 1:
        return reproduce_command(meta, params, seeds[0], program)
    one = reproduce_command(meta, params, seeds[0], program)
    marker = f"--set seed={_yaml_value(seeds[0])}"
    assert marker in one  # the seed is the config's own key: --set seed=N
    body = one.replace(marker, '--set "seed=$seed"')
    return f"for seed in {' '.join(str(int(s)) for s in seeds)}; do {body}; done"


def reproduce_text(res: SweepResults, program: str = "mtsearch") -> str:
    """The best configuration with every seed it ran: one command that trains them all."""
    top = res.configurations.iloc[0]
    return reproduce_all_command(
        res.meta, json.loads(top["params"]), [int(s) for s in top["seed_values"]], program
    )


def format_results(res: SweepResults, top: int = 10) -> str:
    out = [f"sweep {res.name}: {res.meta.get('space', {}).get('name', '?')} space, backend "
           f"{res.meta.get('backend', '?')}, {len(res.runs)} runs read"
           + (f", {res.incomplete} unfinished or half-written (left out)" if res.incomplete else "")]  # fmt: skip
    if res.configurations.empty:
        statuses = res.runs["status"].value_counts().to_dict() if not res.runs.empty else {}
        out.append("no finished run yet" + (f" (runs by status: {statuses})" if statuses else "") + ".")
        out += _failed_lines(res)
        return "\n".join(out)
    metric_names = {m: ("overall" if m == "overall" else f"{m} {TASKS[m].metric[:3]}") for m in res.metrics}
    pruned = int(res.runs.loc[res.runs["pruned_config"], "config_hash"].nunique())
    out.append("")
    out.append(f"configurations ranked by mean overall over seeds (top {min(top, len(res.configurations))} "
               f"of {len(res.configurations)}; mean ± sd)"
               + (f"; {pruned} pruned configuration(s) left out" if pruned else "") + ":")  # fmt: skip
    header = ["rank", *res.dims, "seeds", *[metric_names[m] for m in res.metrics]]
    table = []
    for _, r in res.configurations.head(top).iterrows():
        table.append([str(r["rank"]), *["-" if _missing(r[d]) else str(r[d]) for d in res.dims], str(r["seeds"]),
                      *[f"{_fmt(r[f'{m}_mean'])} ± {_fmt(r[f'{m}_sd'], 3)}" for m in res.metrics]])  # fmt: skip
    out += _table(header, table)
    out.append("")
    out.append(
        f"reproduce the best configuration with all its {res.configurations.iloc[0]['seeds']} seed(s):"
    )
    out.append(f"  {reproduce_text(res)}")
    conditions = {d["name"]: d.get("when") for d in res.meta.get("space", {}).get("dimensions", [])}
    for d in res.dims:
        a = res.models.get((d, "overall"))
        if a is None:
            continue
        out.append("")
        out += format_dimension(res, d, a, conditions.get(d))
    out += _failed_lines(res)
    if res.pareto is not None and len(res.pareto):
        out.append("")
        out.append(
            f"Pareto front over the tasks: {len(res.pareto)} configuration(s) no other beats on every task"
        )
    return "\n".join(out)


def format_dimension(res: SweepResults, d: str, a, when: dict | None = None) -> list[str]:
    """One dimension on overall: the model, the best set and the verdict table (one line for a single level)."""
    where = ""
    if when:
        parts = [f"{k} = {' or '.join(map(str, v if isinstance(v, list) else [v]))}" for k, v in when.items()]
        where = f" (where {' and '.join(parts)})"
    sub = res.ablation[(res.ablation["dimension"] == d) & (res.ablation["metric"] == "overall")]
    if a.kind == "single level":
        r = sub.iloc[0]
        sd = f" ± {r['sd']:.4f} (sd)" if "sd" in r and not _missing(r["sd"]) else ""
        return [f"ablation: {d}{where}: one level ({r['level']}), overall {r['mean']:.4f}{sd} over {r['n']} runs: "
                "nothing to compare"]  # fmt: skip
    lines = [f"ablation: {d}{where}, overall: {a.describe()}"]
    lines += [f"  note: {n}" for n in a.notes if a.kind != "none"]
    if a.kind == "none":
        lines.append(f"  {a.notes[0]}")
    else:
        lines.append(f"  best set ({a.confidence}, multiple comparison with the best): {', '.join(a.best_set)}"
                     f"; equivalence margin delta {res.delta:g}")  # fmt: skip
    rows = []
    for _, r in sub.iterrows():
        untested = stats.is_untested(r["verdict"])
        interval = "-" if untested else f"[{_fmt(r['low'], sign=True)}, {_fmt(r['high'], sign=True)}]"
        rows.append([str(r["level"]), _fmt(r["mean"]), "-" if untested else _fmt(r["diff"], sign=True), interval,
                     _fmt(r["p_mcb"], 3), _fmt(r["p_best"], 2), "-" if untested else _fmt(r["effect_sd"], 1, sign=True),
                     r["verdict"], decided_text(r), str(r["seeds"]), str(r["failed"]), str(r["pruned"])])  # fmt: skip
    lines += ["  " + x for x in _table(["level", "mean", "diff", f"{a.confidence} interval", "p MCB", "P(best)",
                                        "diff/sd", "verdict", "decided", "seeds", "failed", "pruned"], rows)]  # fmt: skip
    flagged = sub[sub["flagged"].fillna(False).astype(bool)]
    for _, r in flagged.iterrows():
        lines.append(f"  spread: {r['level']} has a seed spread far from the others': {r['spread']}")
    lines.append(f"  diff: from the observed best; interval: simultaneous {a.confidence} bounds on (level - best of"
                 " the others), in the best set while it reaches above 0; diff/sd: in residual seed sds; decided:"
                 " a member within delta of the best (equivalent) or not yet (undecided: needs = seeds per"
                 f" configuration that would decide it at {stats.POWER:.0%} power)")  # fmt: skip
    noise = res.eval_noise.get((d, "overall"))
    if noise and np.isfinite(a.sigma):
        tested = sub[~sub["verdict"].map(stats.is_untested)]
        per_level_seed = a.sigma / math.sqrt(max(1.0, float(np.median(tested["n"]))))
        lines.append(
            f"  noise: evaluation set (paired bootstrap over {sum(noise['examples'].values())} {noise['which']} "
            f"examples, {noise['draws']} resamples) sd {np.median(list(noise['level_sd'].values())):.4f} for a "
            f"level's mean, {np.median([v for v in noise['diff_sd'].values() if v > 0] or [0.0]):.4f} for a "
            f"difference; seeds: sd {a.sigma:.4f} for one run, about {per_level_seed:.4f} for a level's mean"
        )
    return lines


def decided_text(row) -> str:
    """A best-set member's standing against the best, with the seeds that would decide an undecided one."""
    decided = str(row.get("decided", stats.NOT_A_MEMBER))
    needed = row.get("seeds_needed")
    if decided != stats.UNDECIDED or _missing(needed):
        return decided
    if isinstance(needed, float) and needed.is_integer():  # a column with gaps (None) holds floats
        needed = int(needed)
    return f"{decided} (needs {needed} seeds)"


def _failed_lines(res: SweepResults) -> list[str]:
    failed = res.failed
    if failed is None or len(failed) == 0:
        return []
    lines = ["", f"failed runs: {len(failed)}"]
    rows = []
    for _, r in failed.iterrows():
        params = ", ".join(f"{k}={v}" for k, v in (r["params"] or {}).items())
        error = str(r.get("error") or "no error recorded").splitlines()[0][:120]
        rows.append([str(r["run"]), params, error])
    return lines + ["  " + x for x in _table(["run", "configuration", "error"], rows)]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return lines
