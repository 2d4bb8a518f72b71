"""What each dimension's levels do: the verdict rows of the sweep's model, parallel coordinates.

The rows are :func:`mtsearch.sweep.results.compute`'s ablation (sweep/stats.py's verdicts),
so the Ablation view, the HTML report and ``mtsearch results`` show the same thing.
"""

from __future__ import annotations

from mtsearch.dashboard.sweeps import SweepData
from mtsearch.sweep import stats
from mtsearch.sweep.results import shown_level


def ablation_for(data: SweepData, dim: str):
    """Ablation rows of one dimension: metrics in the sweep's order, levels by mean (best first) within each."""
    ab = data.results.ablation
    if ab.empty or "dimension" not in ab:
        return ab
    sub = ab[ab["dimension"] == dim].copy()
    if sub.empty:
        return sub
    metrics = {m: i for i, m in enumerate(data.results.metrics)}
    sub["_metric"] = sub["metric"].map(lambda m: metrics.get(m, len(metrics)))
    sub = sub.sort_values(["_metric", "mean"], ascending=[True, False], kind="stable")
    return sub.drop(columns=["_metric"]).reset_index(drop=True)


def condition_text(data: SweepData, dim: str) -> str | None:
    when = data.dim_spec(dim).get("when") or {}
    if not when:
        return None
    return " and ".join(
        f"{k} = {' or '.join(map(str, v if isinstance(v, list) else [v]))}" for k, v in when.items()
    )


def verdict(row) -> str:
    """The level's verdict (one of sweep/stats.py's); untested levels say how many runs they have."""
    return str(row["verdict"])


#: the colour groups of the ablation plot: the verdict, and for a best-set member where it stands
BEST_SET_GROUPS = {stats.OBSERVED_BEST: "in best set: observed best", stats.EQUIVALENT: "in best set: equivalent",
                   stats.UNDECIDED: "in best set: undecided"}  # fmt: skip


def verdict_group(row) -> str:
    """The colour group of an ablation row: worse; untested ((n=0), (n=1) and (no df) are one group);
    or a best-set member by its ``decided`` (observed best, equivalent, undecided)."""
    v = str(row["verdict"])
    if stats.is_untested(v):
        return "untested"
    if v == stats.IN_SET:
        return BEST_SET_GROUPS.get(str(row.get("decided")), v)
    return v


def model(data: SweepData, dim: str, metric: str = "overall"):
    """The fitted analysis (sweep/stats.Analysis) of a dimension on a metric, or None."""
    return data.results.models.get((dim, metric))


def single_level_text(data: SweepData, dim: str) -> str | None:
    """One line for a dimension with a single level where it applies (nothing to compare), else None."""
    a = model(data, dim)
    if a is None or a.kind != "single level":
        return None
    row = a.table.iloc[0]
    cond = condition_text(data, dim)
    sd = f" ± {row['sd']:.4f} (sd)" if "sd" in row and row["sd"] == row["sd"] else ""
    return (f"{dim}" + (f" (where {cond})" if cond else "") + f": one level, {row['level']}: overall "
            f"{row['mean']:.4f}{sd} over {row['n']} run(s); nothing to compare.")  # fmt: skip


def model_text(data: SweepData, dim: str, metric: str = "overall") -> str:
    """The model and the best set of a dimension, in words."""
    a = model(data, dim, metric)
    if a is None:
        return ""
    if a.kind in ("none", "single level"):
        return a.notes[0] if a.notes else ""
    text = f"Model: {a.describe()}. {a.confidence} best set: {', '.join(a.best_set)}"
    text += f" (equivalence margin delta {data.results.delta:g})."
    if a.notes:
        text += " " + " ".join(a.notes) + "."
    return text


def noise_text(data: SweepData, dim: str, metric: str = "overall") -> str | None:
    """Evaluation-set noise beside the seed noise, when the runs stored their scored examples."""
    noise = data.results.eval_noise.get((dim, metric))
    a = model(data, dim, metric)
    if not noise or a is None or not (a.sigma == a.sigma):
        return None
    level_sd = sorted(noise["level_sd"].values())[len(noise["level_sd"]) // 2]
    return (f"Noise: the evaluation set (paired bootstrap over {sum(noise['examples'].values())} "
            f"{noise['which']} examples) moves a level's mean by sd {level_sd:.4f}; the seeds move one run by "
            f"sd {a.sigma:.4f}.")  # fmt: skip


#: the verdict table's columns, as the view and the report show them
TABLE_COLUMNS = {
    "level": "level", "mean": "mean", "diff": "diff from best", "low": "interval low", "high": "interval high",
    "p_mcb": "p (MCB, worse)", "p_best": "P(best)", "effect_sd": "diff / seed sd", "verdict": "verdict",
    "decided": "decided", "seeds": "seeds", "seeds_needed": "seeds needed", "failed": "failed", "pruned": "pruned",
    "spread": "spread",
}  # fmt: skip


def verdict_table(data: SweepData, dim: str, metric: str | None = None):
    """The verdict rows of a dimension (one metric, or all with a metric column), named for people."""
    ab = ablation_for(data, dim)
    if ab.empty:
        return ab
    cols = [c for c in TABLE_COLUMNS if c in ab]
    if metric is not None:
        return ab[ab["metric"] == metric][cols].rename(columns=TABLE_COLUMNS).reset_index(drop=True)
    return ab[["metric", *cols]].rename(columns=TABLE_COLUMNS).reset_index(drop=True)


# --------------------------------------------------------------------------- parallel coordinates


def log_dims(data: SweepData) -> set[str]:
    return {d.get("name") for d in data.space.get("dimensions", []) if d.get("log")}


def parallel_frame(data: SweepData):
    """One row per configuration: each dimension's level (n/a where it does not apply) and the means."""
    confs = data.results.configurations
    df = confs[["rank", *data.results.dims, *[f"{m}_mean" for m in data.results.metrics]]].copy()
    for d in data.results.dims:
        df[d] = df[d].map(shown_level)
    return df
