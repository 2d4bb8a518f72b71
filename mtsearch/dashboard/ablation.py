"""What each dimension's levels do: the ablation rows in a natural level order, parallel coordinates."""

from __future__ import annotations

from mtsearch.dashboard.sweeps import SweepData
from mtsearch.sweep.results import level_label, shown_level


def ablation_for(data: SweepData, dim: str):
    """Ablation rows of one dimension, levels in a natural order (choices, then numbers)."""
    ab = data.results.ablation
    sub = ab[ab["dimension"] == dim].copy()
    if sub.empty:
        return sub
    order = level_order(data, dim, list(dict.fromkeys(sub["level"])))
    sub["_order"] = sub["level"].map({lvl: i for i, lvl in enumerate(order)})
    metrics = {m: i for i, m in enumerate(data.results.metrics)}
    sub["_metric"] = sub["metric"].map(lambda m: metrics.get(m, len(metrics)))
    return sub.sort_values(["_metric", "_order"]).drop(columns=["_order", "_metric"]).reset_index(drop=True)


def level_order(data: SweepData, dim: str, levels: list[str]) -> list[str]:
    """The space's choices in their order, then numeric levels (bins by their low end), then the rest."""
    choices = [level_label(c) for c in data.dim_spec(dim).get("choices") or []]

    def key(lvl: str):
        if lvl in choices:
            return (0, choices.index(lvl), 0.0, lvl)
        try:
            return (1, 0, float(lvl.strip("[]").split(",")[0]), lvl)
        except ValueError:
            return (2, 0, 0.0, lvl)

    return sorted(levels, key=key)


def condition_text(data: SweepData, dim: str) -> str | None:
    when = data.dim_spec(dim).get("when") or {}
    if not when:
        return None
    return " and ".join(f"{k} = {' or '.join(map(str, v))}" for k, v in when.items())


def verdict(row) -> str:
    if row["is_best"]:
        return "best"
    return "worse (p < 0.05)" if row["distinguishable"] else "not distinguishable from best"


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
