"""mtsearch dashboard: what helped, by how much, and is it more than noise.

Run with ``make dashboard`` (Streamlit on 127.0.0.1). Reads the sweeps under
``runs/sweeps/`` (or ``$MTSEARCH_RUNS/sweeps``); the logic lives in
:mod:`mtsearch.dashboard` so it is tested without Streamlit. Query parameters
``?view=Ablation&sweep=NAME`` open a view directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import streamlit as st

from mtsearch.dashboard import figures as F
from mtsearch.dashboard import predictions as P
from mtsearch.dashboard.ablation import (
    ablation_for,
    condition_text,
    log_dims,
    model_text,
    noise_text,
    parallel_frame,
    single_level_text,
    verdict_table,
)
from mtsearch.dashboard.curves import curves
from mtsearch.dashboard.importance import EVALUATORS, Importance, importance, importance_frame
from mtsearch.dashboard.leaderboard import best_configuration, leaderboard, runs_table
from mtsearch.dashboard.mlflow_links import mlflow_base_url
from mtsearch.dashboard.sweeps import (
    SweepData,
    list_sweeps,
    load_sweep,
    metric_label,
    signature,
    sweeps_table,
)
from mtsearch.paths import runs_dir
from mtsearch.sweep.results import shown_level
from mtsearch.tasks import TASKS

st.set_page_config(page_title="mtsearch dashboard", layout="wide")


# --------------------------------------------------------------------------- cached loading
# Keys include the sweep's signature (file count and newest mtime), so a running sweep's new
# results show up at the next rerun; the ttl only bounds memory.


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def load(path: str, sig: tuple) -> SweepData:
    return load_sweep(path)


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def load_curves(path: str, sig: tuple):
    return curves(load_sweep(path))


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def load_importance(path: str, sig: tuple, evaluator: str) -> Importance:
    return importance(load_sweep(path), evaluator)


def sweep_data(path) -> SweepData:
    return load(str(path), signature(path))


# --------------------------------------------------------------------------- helpers


def plot(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, width="stretch")


def need_results(d: SweepData) -> bool:
    if d.error:
        st.warning(d.error)
        return False
    if not d.has_results:
        st.info(d.status_message())
        return False
    return True


def number_columns(df) -> dict:
    cfg = {}
    for c in df.columns:
        if c.endswith(("_mean", "_sd", "_ci95")) or c in ("overall", *TASKS):
            m, _, stat = c.rpartition("_") if "_" in c else (c, "", "")
            label = {"mean": f"{m} mean", "sd": f"{m} ±sd", "ci95": f"{m} ±95%"}.get(stat, c)
            cfg[c] = st.column_config.NumberColumn(label, format="%.4f")
    return cfg


@dataclass(frozen=True)
class Page:
    """What a view renders: the sweeps picked in the sidebar, every sweep, the MLflow UI's address."""

    chosen: list[SweepData]
    all_sweeps: list[SweepData]
    mlflow_url: str

    def metrics(self) -> list[str]:
        """The metrics of the chosen sweeps with results (overall when none has any)."""
        return list(dict.fromkeys(m for d in self.chosen if d.has_results for m in d.results.metrics)) or [
            "overall"
        ]


def side_by_side(sweeps: list[SweepData], render) -> None:
    """Render one sweep, or two in columns."""
    if len(sweeps) == 1:
        render(sweeps[0])
        return
    for col, d in zip(st.columns(len(sweeps)), sweeps, strict=True):
        with col:
            st.subheader(d.name)
            render(d)


# --------------------------------------------------------------------------- views


def view_sweeps(page: Page) -> None:
    st.header("Sweeps")
    table = sweeps_table(page.all_sweeps)
    st.dataframe(table, key="sweeps-table", hide_index=True, width="stretch",
                 column_config={"best overall": st.column_config.NumberColumn(format="%.4f")})  # fmt: skip
    st.caption("Trial counts are configurations (each run with every seed) from the Optuna study, or from the "
               "run directories for other backends. Wall time adds up the recorded sweep sessions.")  # fmt: skip

    def one(d: SweepData) -> None:
        sp = d.space
        st.markdown(f"**{d.name}**: space `{sp.get('name', '?')}` ({sp.get('algorithm', '?')}, "
                    f"{sp.get('seeds', '?')} seed(s), pruner {sp.get('pruner', '?')}), backend "
                    f"`{d.meta.get('backend', '?')}`")  # fmt: skip
        if sp.get("description"):
            st.caption(sp["description"])
        dims = [{"dimension": x.get("name"),
                 "levels": ", ".join(map(str, x["choices"])) if x.get("choices") is not None
                 else f"{x.get('low')} .. {x.get('high')}" + (" (log)" if x.get("log") else ""),
                 "applies when": condition_text(d, x.get("name")) or "always"}
                for x in sp.get("dimensions", [])]  # fmt: skip
        if dims:
            st.dataframe(dims, key=f"dims-{d.name}", hide_index=True)
        for n in d.notices:
            st.warning(n)
        if need_results(d):
            plot(F.history_figure(d), key=f"history-{d.name}")
        with st.expander("base config of the space"):
            st.json(sp.get("base") or {})

    side_by_side(page.chosen, one)


def view_leaderboard(page: Page) -> None:
    st.header("Leaderboard")
    sort_by = st.selectbox("rank by the mean over seeds of", page.metrics(), key="lb-sort")

    def one(d: SweepData) -> None:
        for n in d.notices:
            st.warning(n)
        if not need_results(d):
            return
        best = best_configuration(d)
        with st.container(border=True):
            st.markdown(f"#### Best configuration of {d.name}")
            st.markdown(", ".join(f"`{k}` = **{v}**" for k, v in best["params"].items()))
            cols = st.columns(len(best["scores"]))
            for c, (m, (mean, sd)) in zip(cols, best["scores"].items(), strict=True):
                c.metric(
                    metric_label(m), f"{mean:.4f}", help=f"mean over {best['seeds']} seed(s), sd {sd:.4f}"
                )
            st.caption(f"Reproduce it with all its {best['seeds']} seed(s) ({', '.join(map(str, best['seed_values']))}), "
                       "not its luckiest one; data from --data-dir / MTSEARCH_DATA as in the sweep:")  # fmt: skip
            st.code(best["command"], language="bash", wrap_lines=True)
        board = leaderboard(d, sort_by if sort_by in d.results.metrics else "overall")
        for dim in d.results.dims:
            board[dim] = board[dim].map(shown_level)
        st.dataframe(board, key=f"leaderboard-{d.name}", hide_index=True, width="stretch",
                     column_config=number_columns(board))  # fmt: skip
        st.markdown("**Runs** (one per seed; MLflow links open `make mlflow`)")
        runs = runs_table(d, page.mlflow_url)
        cfg = number_columns(runs)
        cfg["mlflow"] = st.column_config.LinkColumn("MLflow run", display_text="open")
        for dim in d.results.dims:
            if dim in runs:
                runs[dim] = runs[dim].map(shown_level)
        st.dataframe(runs, key=f"runs-{d.name}", hide_index=True, width="stretch", column_config=cfg)

    side_by_side(page.chosen, one)


def view_ablation(page: Page) -> None:
    st.header("Ablation")
    st.caption("Each level against the best of the others: the model of the sweep (configuration + seed block) "
               "gives simultaneous intervals (multiple comparison with the best) at the sweep's level, which each "
               "plot's title and model line state (95%; 96% for a raced sweep). A level whose interval reaches "
               "above 0 is in the best set (bold). Its members: green, the observed best; teal, within delta of "
               "it (equivalent); blue, undecided (more seeds needed to tell). Grey: worse; open orange: untested "
               "(fewer than two finished runs, never compared). See the README's 'How verdicts are computed'.")  # fmt: skip

    def one(d: SweepData) -> None:
        if not need_results(d):
            return
        for dim in d.results.dims:
            ab = ablation_for(d, dim)
            if ab.empty:
                st.info(f"{dim}: no finished run where it applies.")
                continue
            line = single_level_text(d, dim)
            if line:  # nothing to compare: one line, not a panel of plots
                st.markdown(line)
                continue
            plot(F.ablation_figure(d, dim), key=f"ablation-{d.name}-{dim}")
            st.caption(model_text(d, dim))
            noise = noise_text(d, dim)
            if noise:
                st.caption(noise)
            table = verdict_table(d, dim)
            fmt = {c: st.column_config.NumberColumn(format="%.4f")
                   for c in ("mean", "diff from best", "interval low", "interval high", "p (MCB, worse)")}  # fmt: skip
            fmt["P(best)"] = st.column_config.NumberColumn(format="%.2f")
            fmt["diff / seed sd"] = st.column_config.NumberColumn(format="%.1f")
            fmt["seeds needed"] = st.column_config.TextColumn()
            table["seeds needed"] = table["seeds needed"].map(lambda v: "" if v is None or v != v else str(v))
            st.dataframe(table, key=f"ablation-table-{d.name}-{dim}", hide_index=True, width="stretch",
                         column_config=fmt)  # fmt: skip

    side_by_side(page.chosen, one)


def view_importance(page: Page) -> None:
    st.header("Importance")
    evaluator = st.selectbox("evaluator", EVALUATORS, key="imp-evaluator",
                             help="Optuna's fANOVA (random forest) or PED-ANOVA over the study's completed trials")  # fmt: skip

    def one(d: SweepData) -> None:
        imp = load_importance(str(d.sweep_dir), signature(d.sweep_dir), evaluator)
        if imp.values is None:
            st.info(imp.message)
            return
        frame = importance_frame(imp)
        plot(F.importance_figure(frame, evaluator), key=f"importance-{d.name}")
        table = frame.pivot(index="dimension", columns="metric", values="importance")
        table = table[list(dict.fromkeys(frame["metric"]))].sort_values(table.columns[0], ascending=False)
        st.dataframe(table.reset_index(), key=f"importance-table-{d.name}", hide_index=True)
        note = f"{imp.trials} completed trials."
        if imp.left_out:
            note += f" Left out (apply to only some trials): {', '.join(imp.left_out)}."
        st.caption(note)

    side_by_side(page.chosen, one)


def view_parallel(page: Page) -> None:
    st.header("Parallel coordinates")
    metric = st.selectbox("colour by the mean of", page.metrics(), key="pc-metric")

    def one(d: SweepData) -> None:
        if not need_results(d):
            return
        m = metric if metric in d.results.metrics else "overall"
        plot(F.parallel_figure(parallel_frame(d), d.results.dims, m, log_dims(d)), key=f"parallel-{d.name}")

    side_by_side(page.chosen, one)


def view_tradeoffs(page: Page) -> None:
    st.header("Task trade-offs")

    def one(d: SweepData) -> None:
        if not need_results(d):
            return
        if len(d.tasks) < 2:
            st.info("This sweep trains a single task: there is no trade-off to show.")
            return
        plot(F.tradeoff_figure(d), key=f"tradeoff-{d.name}")
        front = d.results.pareto
        st.markdown(
            f"**Pareto front**: {len(front)} configuration(s) that no other beats on every task at once"
        )
        cols = ["rank", *d.results.dims, *[f"{t}_mean" for t in d.tasks], "overall_mean"]
        table = front[cols].copy()
        for dim in d.results.dims:
            table[dim] = table[dim].map(shown_level)
        st.dataframe(table, key=f"pareto-{d.name}", hide_index=True, column_config=number_columns(table))

    side_by_side(page.chosen, one)


def view_curves(page: Page) -> None:
    st.header("Curves")

    def one(d: SweepData) -> None:
        if d.error:
            st.warning(d.error)
            return
        frame, cos = load_curves(str(d.sweep_dir), signature(d.sweep_dir))
        if frame.empty:
            st.info(f"Sweep '{d.name}' has no evaluation logged yet (metrics.jsonl).")
            return
        dims = d.dim_names
        c1, c2 = st.columns(2)
        metric = c1.selectbox("metric", list(dict.fromkeys(frame["metric"])), key=f"curves-metric-{d.name}")
        colour = c2.selectbox("colour by", [*dims, "seed", "run"], key=f"curves-colour-{d.name}")
        plot(F.curves_figure(frame, metric, colour), key=f"curves-{d.name}")
        if cos.empty:
            st.info("No gradient-conflict cosines logged (log_grad_conflict off, or a single task).")
        else:
            plot(F.cosine_figure(cos, colour), key=f"cosine-{d.name}")

    side_by_side(page.chosen, one)


def view_errors(page: Page) -> None:
    st.header("Errors")

    def one(d: SweepData) -> None:
        if d.error:
            st.warning(d.error)
            return
        names = P.runs_with_checkpoint(d)
        if not names:
            st.info(f"No run of '{d.name}' kept a checkpoint (save_checkpoint is off in its space): "
                    "rerun a configuration with `mtsearch train` (Leaderboard) to analyse its errors.")  # fmt: skip
            return
        run = st.selectbox("run (best first)", names, key=f"errors-run-{d.name}")
        run_dir = d.sweep_dir / "runs" / run  # run: <config_hash>/s<k>
        if not P.is_current(run_dir):
            st.info("The dev predictions of this run are not computed yet; they are cached in "
                    f"{run_dir.name}/{P.DETAILED} once computed.")  # fmt: skip
            limit = st.number_input("examples per task (0 = the whole dev sets)", min_value=0, value=0, step=100,
                                    key=f"errors-limit-{d.name}")  # fmt: skip
            if st.button("Compute dev predictions", key=f"errors-compute-{d.name}"):
                with st.spinner("predicting the dev sets with the run's best checkpoint ..."):
                    try:
                        P.compute_detailed(run_dir, limit=int(limit) or None)
                    except Exception as err:
                        st.error(f"Could not compute the predictions: {type(err).__name__}: {err}")
                        return
            else:
                return
        cached = P.read_detailed(run_dir)
        if cached is None:
            st.warning("The cached predictions file is empty or unreadable; delete it to recompute.")
            return
        meta, df = cached
        scores = P.task_summary(df)
        st.caption(f"{len(df)} dev examples" + (f" ({meta['limit']} per task)" if meta.get("limit") else "")
                   + " · " + ", ".join(f"{metric_label(t)} {v:.4f}" for t, v in scores.items()))  # fmt: skip
        tasks = set(df["task"])
        if "sst" in tasks:
            plot(F.confusion_figure(P.sst_confusion(df)), key=f"confusion-{d.name}")
        if "sts" in tasks:
            plot(F.sts_figure(P.sts_points(df)), key=f"sts-{d.name}")
        if "para" in tasks:
            fp, fn = P.qqp_errors(df, n=10)
            st.markdown(f"**QQP false positives** (predicted duplicate, gold not): sample of {len(fp)}")
            st.dataframe(fp, key=f"qqp-fp-{d.name}", hide_index=True, width="stretch")
            st.markdown(
                f"**QQP false negatives** (predicted not duplicate, gold duplicate): sample of {len(fn)}"
            )
            st.dataframe(fn, key=f"qqp-fn-{d.name}", hide_index=True, width="stretch")

    side_by_side(page.chosen, one)


#: the sidebar's views, in its order: name (also ?view=NAME) -> render function
VIEWS = {
    "Sweeps": view_sweeps,
    "Leaderboard": view_leaderboard,
    "Ablation": view_ablation,
    "Importance": view_importance,
    "Parallel coordinates": view_parallel,
    "Task trade-offs": view_tradeoffs,
    "Curves": view_curves,
    "Errors": view_errors,
}


# --------------------------------------------------------------------------- page


def main() -> None:
    st.title("mtsearch: what helped, by how much, and is it more than noise")
    root = runs_dir()
    paths = list_sweeps(root)
    if not paths:
        st.info(f"No sweeps under {root / 'sweeps'} yet. Start one with `make sweep SPACE=smoke` "
                "(or `mtsearch sweep smoke`); this page shows it as soon as its first trial starts.")  # fmt: skip
        return
    names = [p.name for p in paths]
    qp = st.query_params
    with st.sidebar:
        st.caption(f"runs: {root}")
        wanted = [s for s in qp.get_all("sweep") if s in names] or names[:1]
        picked = st.multiselect("sweeps (one, or two side by side)", names, default=wanted[:2], max_selections=2,
                                key="sweeps")  # fmt: skip
        view_q = qp.get("view")
        view = st.radio(
            "view", list(VIEWS), index=list(VIEWS).index(view_q) if view_q in VIEWS else 0, key="view"
        )
        live = st.toggle("live refresh", value=True, key="live",
                         help="Re-read the sweep files every few seconds; the page updates when a run finishes")  # fmt: skip
        every = st.number_input("every (seconds)", min_value=2, max_value=600, value=10, key="every")
        mlflow_url = st.text_input("MLflow UI", value=mlflow_base_url(), key="mlflow-url")
    if not picked:
        st.info("Pick a sweep in the sidebar.")
        return
    all_data = [sweep_data(p) for p in paths]
    by_name = {d.name: d for d in all_data}
    chosen = [by_name[n] for n in picked]
    watch_dirs = [str(d.sweep_dir) for d in chosen]

    @st.fragment(run_every=float(every) if live else None)
    def watch() -> None:
        sig = json.dumps([signature(p) for p in watch_dirs])
        if st.session_state.get("_sig") not in (None, sig):
            st.session_state["_sig"] = sig
            st.rerun()
        st.session_state["_sig"] = sig

    with st.sidebar:
        watch()

    VIEWS[view](Page(chosen, all_data, mlflow_url))


main()
