"""Plotly figures of a sweep, shared by the Streamlit app and ``mtsearch report``."""

from __future__ import annotations

import math
from typing import Any

from mtsearch.dashboard.ablation import ablation_for, condition_text, verdict_group
from mtsearch.dashboard.sweeps import SweepData, metric_label
from mtsearch.sweep.results import NA

#: colour of an ablation level by its group (ablation.verdict_group: the verdict of sweep/stats.py and, for
#: a best-set member, where it stands against the best); the best set is green, teal and blue
VERDICT_COLOURS = {
    "in best set: observed best": "#1a9850",
    "in best set: equivalent": "#35978f",
    "in best set: undecided": "#4575b4",
    "worse": "#a0a0a0",
    "untested": "#f46d43",
}
PALETTE = ["#4575b4", "#d73027", "#1a9850", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#666666",
           "#66c2a5", "#e6ab02"]  # fmt: skip


def _finite(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def ablation_figure(data: SweepData, dim: str):
    """Each level's difference from the best with its simultaneous interval, one panel per metric.

    The intervals' level is the sweep's (95%, 96% for a raced sweep) and the title says it.
    Levels are rows (names on the left, never cut), sorted by overall mean with the best on
    top; members of the best set are in bold and coloured by where they stand against the best
    (observed best, equivalent, undecided), worse levels grey; the band [-delta, 0]
    is the equivalence margin. An untested level is an open marker at its mean's difference,
    without an interval (it was never compared), and says so.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ab = ablation_for(data, dim)
    metrics = [m for m in data.results.metrics if m in set(ab["metric"])]
    overall = ab[ab["metric"] == metrics[0]]
    order = list(dict.fromkeys(overall["level"].astype(str)))  # best (highest mean) first
    members = set(overall.loc[overall["in_best_set"].astype(bool), "level"].astype(str))
    fig = make_subplots(rows=1, cols=len(metrics), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[metric_label(m) for m in metrics])  # fmt: skip
    delta = data.results.delta
    shown: set[str] = set()
    for i, m in enumerate(metrics, start=1):
        sub = ab[ab["metric"] == m]
        fig.add_vrect(x0=-delta, x1=0, fillcolor="#1a9850", opacity=0.08, line_width=0, row=1, col=i)
        fig.add_vline(x=0, line_color="#888", line_dash="dot", row=1, col=i)
        groups = sub.apply(verdict_group, axis=1)
        best_mean = sub.loc[groups != "untested", "mean"].max()
        for group, colour in VERDICT_COLOURS.items():
            part = sub[groups == group]
            if part.empty:
                continue
            untested = group == "untested"
            x = (part["mean"] - best_mean).tolist() if untested else part["diff"].tolist()
            trace = {
                "x": x, "y": part["level"].astype(str).tolist(), "mode": "markers+text" if untested else "markers",
                "marker": {"size": 11, "color": colour, "symbol": "circle-open" if untested else "circle",
                           "line": {"width": 2, "color": colour}},
                "name": group, "legendgroup": group, "showlegend": group not in shown, "orientation": "h",
                "customdata": [[r["mean"], _finite(r["low"]), _finite(r["high"]), _finite(r["p_best"]), group,
                                r["seeds"]] for _, r in part.iterrows()],
                "hovertemplate": "%{y}: mean %{customdata[0]:.4f}, diff %{x:+.4f} [%{customdata[1]:.4f}, "
                                 "%{customdata[2]:.4f}], P(best) %{customdata[3]:.2f}, %{customdata[4]}, "
                                 "seeds %{customdata[5]}<extra></extra>",
            }  # fmt: skip
            if untested:
                trace["text"] = part["verdict"].tolist()
                trace["textposition"] = "middle right"
            else:
                trace["error_x"] = {
                    "type": "data", "symmetric": False, "visible": True, "color": colour,
                    "array": [h - x0 for h, x0 in zip(part["high"], x, strict=True)],
                    "arrayminus": [x0 - lo for lo, x0 in zip(part["low"], x, strict=True)],
                }  # fmt: skip
            fig.add_trace(go.Scatter(**trace), row=1, col=i)
            shown.add(group)
        fig.update_xaxes(zeroline=False, row=1, col=i)
    ticks = [f"<b>{lvl}</b>" if lvl in members else lvl for lvl in order]
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=order[::-1], tickvals=order,
                     ticktext=ticks, automargin=True)  # fmt: skip
    cond = condition_text(data, dim)
    title = f"{dim}: difference from the best, simultaneous {data.results.confidence} intervals" + (
        f" (only where {cond})" if cond else ""
    )
    fig.update_layout(title=title, height=160 + 34 * len(order), margin={"t": 80, "b": 60, "l": 20, "r": 20},
                      legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom"})  # fmt: skip
    return fig


def importance_figure(frame, evaluator: str):
    import plotly.express as px

    order = frame[frame["metric"] == "overall"] if "overall" in set(frame["metric"]) else frame
    order = order.groupby("dimension")["importance"].mean().sort_values().index.tolist()
    fig = px.bar(frame, x="importance", y="dimension", color="metric", barmode="group", orientation="h",
                 category_orders={"dimension": order[::-1]}, color_discrete_sequence=PALETTE,
                 title=f"Which dimensions matter ({evaluator} importance, normalised per metric)")  # fmt: skip
    fig.update_layout(height=max(280, 90 + 70 * frame["dimension"].nunique()))
    return fig


def parallel_figure(frame, dims: list[str], metric: str = "overall", log_dims: set[str] | None = None):
    """Parallel coordinates over the dimensions, coloured by ``metric``'s mean.

    A dimension with more than 6 numeric levels (a sampled range) gets a numeric axis (log10
    for ``log_dims``); the others show their levels as ticks (n/a where they do not apply).
    """
    import plotly.graph_objects as go

    axes = []
    for d in dims:
        col = frame[d].astype(str)
        nums = [_finite(v) for v in col]
        if col.nunique() > 6 and all(v is not None for v in nums):
            log = d in (log_dims or set()) and min(nums) > 0
            vals = [math.log10(v) for v in nums] if log else nums
            axes.append({"label": f"{d} (log10)" if log else d, "values": vals})
            continue
        levels = sorted(set(col), key=lambda v: (v == NA, _finite(v) is None, _finite(v) or 0.0, v))
        codes = {lvl: i for i, lvl in enumerate(levels)}
        axes.append({"label": d, "values": col.map(codes).tolist(), "tickvals": list(range(len(levels))),
                     "ticktext": levels, "range": [-0.2, max(len(levels) - 1, 0) + 0.2]})  # fmt: skip
    target = f"{metric}_mean"
    for m in [c for c in frame.columns if c.endswith("_mean")]:
        axes.append({"label": metric_label(m.removesuffix("_mean")), "values": frame[m].tolist()})
    fig = go.Figure(go.Parcoords(
        line={"color": frame[target].tolist(), "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": metric_label(metric)}}},
        dimensions=axes,
    ))  # fmt: skip
    fig.update_layout(title=f"Configurations over the dimensions, coloured by mean {metric_label(metric)}",
                      height=420, margin={"l": 80, "r": 80, "t": 80})  # fmt: skip
    return fig


def tradeoff_figure(data: SweepData):
    """Each pair of tasks: per-configuration means (with sd), the Pareto front highlighted."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tasks = data.tasks
    pairs = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1 :]]
    confs = data.results.configurations
    front = set(data.results.pareto["params_key"]) if data.results.pareto is not None else set()
    on = confs["params_key"].isin(front)
    fig = make_subplots(rows=1, cols=len(pairs), horizontal_spacing=0.08,
                        subplot_titles=[f"{metric_label(a)} vs {metric_label(b)}" for a, b in pairs])  # fmt: skip
    for i, (a, b) in enumerate(pairs, start=1):
        for sel, name, colour, symbol in ((~on, "configuration", "#9a9a9a", "circle"),
                                          (on, "Pareto front", "#d73027", "star")):  # fmt: skip
            part = confs[sel]
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part[f"{a}_mean"].tolist(), y=part[f"{b}_mean"].tolist(), mode="markers",
                marker={"size": 12 if symbol == "star" else 9, "color": colour, "symbol": symbol},
                error_x={"type": "data", "array": part[f"{a}_sd"].fillna(0).tolist(), "visible": True, "thickness": 1},
                error_y={"type": "data", "array": part[f"{b}_sd"].fillna(0).tolist(), "visible": True, "thickness": 1},
                text=[f"rank {r}" for r in part["rank"]], name=name, legendgroup=name, showlegend=i == 1,
                hovertemplate="%{text}: %{x:.4f}, %{y:.4f}<extra></extra>",
            ), row=1, col=i)  # fmt: skip
        fig.update_xaxes(title_text=metric_label(a), row=1, col=i)
        fig.update_yaxes(title_text=metric_label(b), row=1, col=i)
    fig.update_layout(title="Task trade-offs per configuration (mean ± sd over seeds)", height=400)
    return fig


def curves_figure(frame, metric: str, colour_by: str):
    import plotly.express as px

    sub = frame[frame["metric"] == metric].sort_values(["run", "examples"])
    fig = px.line(sub, x="examples", y="value", color=colour_by, line_group="run", markers=True,
                  hover_data=["run", "seed", "step"], color_discrete_sequence=PALETTE,
                  title=f"Learning curves: {metric_label(metric)} against training examples seen")  # fmt: skip
    fig.update_layout(height=380, yaxis_title=metric_label(metric))
    return fig


def cosine_figure(frame, colour_by: str):
    import plotly.express as px

    sub = frame.sort_values(["run", "examples"])
    fig = px.line(sub, x="examples", y="cosine", color=colour_by, line_group="run", facet_col="pair",
                  markers=True, hover_data=["run", "seed", "step"], color_discrete_sequence=PALETTE,
                  title="Gradient conflict: cosine between the tasks' encoder gradients")  # fmt: skip
    fig.add_hline(y=0, line_dash="dot", line_color="#888")
    fig.update_layout(height=360)
    return fig


def history_figure(data: SweepData):
    """Overall per trial (every seed) and the best configuration mean so far."""
    import plotly.graph_objects as go

    runs = data.results.runs
    ok = runs[runs["overall"].notna()].sort_values("trial")
    confs = data.results.configurations
    by_trial = ok.groupby("trial")["overall"].mean()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ok["trial"].tolist(), y=ok["overall"].tolist(), mode="markers", name="run (one seed)",
                             marker={"color": "#9a9a9a", "size": 7}, text=ok["run"].tolist()))  # fmt: skip
    fig.add_trace(go.Scatter(x=by_trial.index.tolist(), y=by_trial.cummax().tolist(), mode="lines+markers",
                             name="best mean so far", line={"color": "#1a9850"}))  # fmt: skip
    fig.update_layout(title=f"{data.name}: overall per trial ({len(confs)} configurations)", height=300,
                      xaxis_title="trial", yaxis_title="overall")  # fmt: skip
    return fig


def confusion_figure(matrix):
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=matrix.to_numpy().tolist(), x=list(matrix.columns), y=list(matrix.index),
                               colorscale="Blues", text=matrix.to_numpy().tolist(), texttemplate="%{text}"))  # fmt: skip
    fig.update_layout(title="SST-5 confusion matrix (dev)", yaxis={"autorange": "reversed"}, height=380)
    return fig


def sts_figure(points):
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=points["gold"].tolist(), y=points["pred"].tolist(), mode="markers",
                               marker={"size": 5, "opacity": 0.6, "color": "#4575b4"}, name="pair",
                               text=points["id"].tolist()))  # fmt: skip
    fig.add_trace(
        go.Scatter(x=[0, 5], y=[0, 5], mode="lines", line={"dash": "dot", "color": "#888"}, name="y = x")
    )
    fig.update_layout(title="STS-B predicted vs gold similarity (dev)", xaxis_title="gold", yaxis_title="predicted",
                      height=380)  # fmt: skip
    return fig
