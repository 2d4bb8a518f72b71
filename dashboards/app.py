"""mtsearch dashboard: what helped, by how much, and is it more than noise.

Run with ``make dashboard`` (Streamlit on 127.0.0.1). Reads the sweeps under
``runs/sweeps/`` (or ``$MTSEARCH_RUNS/sweeps``); the logic lives in
:mod:`mtsearch.dashboard` so it is tested without Streamlit. Query parameters
``?view=Ablation&sweep=NAME`` open a view directly.
"""

from __future__ import annotations

import json

import streamlit as st

from mtsearch.dashboard import data as D
from mtsearch.dashboard import figures as F
from mtsearch.dashboard import predictions as P
from mtsearch.paths import runs_dir

VIEWS = ("Sweeps", "Leaderboard", "Ablation", "Importance", "Parallel coordinates", "Task trade-offs",
         "Curves", "Errors")  # fmt: skip

st.set_page_config(page_title="mtsearch dashboard", layout="wide")


# --------------------------------------------------------------------------- cached loading
# Keys include the sweep's signature (file count and newest mtime), so a running sweep's new
# results show up at the next rerun; the ttl only bounds memory.


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def load(path: str, sig: tuple) -> D.SweepData:
    return D.load_sweep(path)


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def load_curves(path: str, sig: tuple):
    return D.curves(D.load_sweep(path))


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def load_importance(path: str, sig: tuple, evaluator: str) -> D.Importance:
    return D.importance(D.load_sweep(path), evaluator)


def sweep_data(path) -> D.SweepData:
    return load(str(path), D.signature(path))


# --------------------------------------------------------------------------- helpers


def plot(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, width="stretch")


def need_results(d: D.SweepData) -> bool:
    if d.error:
        st.warning(d.error)
        return False
    if not d.has_results:
        st.info(d.status_message())
        return False
    return True


def fmt_level(v):
    return D.NA if v is None or (isinstance(v, float) and v != v) else str(v)


def number_columns(df) -> dict:
    cfg = {}
    for c in df.columns:
        if c.endswith(("_mean", "_sd", "_ci95")) or c in ("overall", "sst", "para", "sts", "cfimdb"):
            m, _, stat = c.rpartition("_") if "_" in c else (c, "", "")
            label = {"mean": f"{m} mean", "sd": f"{m} ±sd", "ci95": f"{m} ±95%"}.get(stat, c)
            cfg[c] = st.column_config.NumberColumn(label, format="%.4f")
    return cfg


def side_by_side(sweeps: list[D.SweepData], render) -> None:
    """Render one sweep, or two in columns."""
    if len(sweeps) == 1:
        render(sweeps[0])
        return
    for col, d in zip(st.columns(len(sweeps)), sweeps, strict=True):
        with col:
            st.subheader(d.name)
            render(d)


# --------------------------------------------------------------------------- views


def view_sweeps(all_sweeps: list[D.SweepData], chosen: list[D.SweepData]) -> None:
    st.header("Sweeps")
    table = D.sweeps_table(all_sweeps)
    st.dataframe(table, key="sweeps-table", hide_index=True, width="stretch",
                 column_config={"best overall": st.column_config.NumberColumn(format="%.4f")})  # fmt: skip
    st.caption("Trial counts are configurations (each run with every seed) from the Optuna study, or from the "
               "run directories for other backends. Wall time adds up the recorded sweep sessions.")  # fmt: skip

    def one(d: D.SweepData) -> None:
        sp = d.space
        st.markdown(f"**{d.name}**: space `{sp.get('name', '?')}` ({sp.get('algorithm', '?')}, "
                    f"{sp.get('seeds', '?')} seed(s), pruner {sp.get('pruner', '?')}), backend "
                    f"`{d.meta.get('backend', '?')}`")  # fmt: skip
        if sp.get("description"):
            st.caption(sp["description"])
        dims = [{"dimension": x.get("name"),
                 "levels": ", ".join(map(str, x["choices"])) if x.get("choices") is not None
                 else f"{x.get('low')} .. {x.get('high')}" + (" (log)" if x.get("log") else ""),
                 "applies when": D.condition_text(d, x.get("name")) or "always"}
                for x in sp.get("dimensions", [])]  # fmt: skip
        if dims:
            st.dataframe(dims, key=f"dims-{d.name}", hide_index=True)
        for n in d.notices:
            st.warning(n)
        if need_results(d):
            plot(F.history_figure(d), key=f"history-{d.name}")
        with st.expander("base config of the space"):
            st.json(sp.get("base") or {})

    side_by_side(chosen, one)


def view_leaderboard(chosen: list[D.SweepData], mlflow_url: str) -> None:
    st.header("Leaderboard")
    metrics = list(dict.fromkeys(m for d in chosen if d.has_results for m in d.results.metrics)) or [
        "overall"
    ]
    sort_by = st.selectbox("rank by the mean over seeds of", metrics, key="lb-sort")

    def one(d: D.SweepData) -> None:
        for n in d.notices:
            st.warning(n)
        if not need_results(d):
            return
        best = D.best_configuration(d)
        with st.container(border=True):
            st.markdown(f"#### Best configuration of {d.name}")
            st.markdown(", ".join(f"`{k}` = **{v}**" for k, v in best["params"].items()))
            cols = st.columns(len(best["scores"]))
            for c, (m, (mean, sd)) in zip(cols, best["scores"].items(), strict=True):
                c.metric(
                    D.metric_label(m), f"{mean:.4f}", help=f"mean over {best['seeds']} seed(s), sd {sd:.4f}"
                )
            st.caption(f"Reproduce its best seed (run {best['run']}, seed {best['seed']}, overall "
                       f"{best['run_scores']['overall']:.4f}); data from --data-dir / MTSEARCH_DATA as in the sweep:")  # fmt: skip
            st.code(best["command"], language="bash", wrap_lines=True)
        board = D.leaderboard(d, sort_by if sort_by in d.results.metrics else "overall")
        for dim in d.results.dims:
            board[dim] = board[dim].map(fmt_level)
        st.dataframe(board, key=f"leaderboard-{d.name}", hide_index=True, width="stretch",
                     column_config=number_columns(board))  # fmt: skip
        st.markdown("**Runs** (one per seed; MLflow links open `make mlflow`)")
        runs = D.runs_table(d, mlflow_url)
        cfg = number_columns(runs)
        cfg["mlflow"] = st.column_config.LinkColumn("MLflow run", display_text="open")
        for dim in d.results.dims:
            if dim in runs:
                runs[dim] = runs[dim].map(fmt_level)
        st.dataframe(runs, key=f"runs-{d.name}", hide_index=True, width="stretch", column_config=cfg)

    side_by_side(chosen, one)


def view_ablation(chosen: list[D.SweepData]) -> None:
    st.header("Ablation")
    st.caption("Every run (all seeds of all configurations) with a level is one sample of it: mean and 95% "
               "t-interval; green = best level, blue = not distinguishable from the best (Welch's t-test, "
               "p >= 0.05), grey = worse. Conditional dimensions count only the runs where they apply.")  # fmt: skip

    def one(d: D.SweepData) -> None:
        if not need_results(d):
            return
        for dim in d.results.dims:
            ab = D.ablation_for(d, dim)
            if ab.empty:
                st.info(f"{dim}: no finished run where it applies.")
                continue
            plot(F.ablation_figure(d, dim), key=f"ablation-{d.name}-{dim}")
            cond = D.condition_text(d, dim)
            if cond:
                st.caption(f"{dim} applies only where {cond}.")
            table = ab.assign(verdict=ab.apply(D.verdict, axis=1))[
                ["metric", "level", "n", "configs", "mean", "ci95_low", "ci95_high", "diff_from_best", "p_value", "verdict"]
            ]  # fmt: skip
            st.dataframe(table, key=f"ablation-table-{d.name}-{dim}", hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.4f")
                                        for c in ("mean", "ci95_low", "ci95_high", "diff_from_best", "p_value")})  # fmt: skip

    side_by_side(chosen, one)


def view_importance(chosen: list[D.SweepData]) -> None:
    st.header("Importance")
    evaluator = st.selectbox("evaluator", D.EVALUATORS, key="imp-evaluator",
                             help="Optuna's fANOVA (random forest) or PED-ANOVA over the study's completed trials")  # fmt: skip

    def one(d: D.SweepData) -> None:
        imp = load_importance(str(d.sweep_dir), D.signature(d.sweep_dir), evaluator)
        if imp.values is None:
            st.info(imp.message)
            return
        frame = D.importance_frame(imp)
        plot(F.importance_figure(frame, evaluator), key=f"importance-{d.name}")
        table = frame.pivot(index="dimension", columns="metric", values="importance")
        table = table[list(dict.fromkeys(frame["metric"]))].sort_values(table.columns[0], ascending=False)
        st.dataframe(table.reset_index(), key=f"importance-table-{d.name}", hide_index=True)
        note = f"{imp.trials} completed trials."
        if imp.left_out:
            note += f" Left out (apply to only some trials): {', '.join(imp.left_out)}."
        st.caption(note)

    side_by_side(chosen, one)


def view_parallel(chosen: list[D.SweepData]) -> None:
    st.header("Parallel coordinates")
    metrics = list(dict.fromkeys(m for d in chosen if d.has_results for m in d.results.metrics)) or [
        "overall"
    ]
    metric = st.selectbox("colour by the mean of", metrics, key="pc-metric")

    def one(d: D.SweepData) -> None:
        if not need_results(d):
            return
        m = metric if metric in d.results.metrics else "overall"
        plot(
            F.parallel_figure(D.parallel_frame(d), d.results.dims, m, D.log_dims(d)), key=f"parallel-{d.name}"
        )

    side_by_side(chosen, one)


def view_tradeoffs(chosen: list[D.SweepData]) -> None:
    st.header("Task trade-offs")

    def one(d: D.SweepData) -> None:
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
            table[dim] = table[dim].map(fmt_level)
        st.dataframe(table, key=f"pareto-{d.name}", hide_index=True, column_config=number_columns(table))

    side_by_side(chosen, one)


def view_curves(chosen: list[D.SweepData]) -> None:
    st.header("Curves")

    def one(d: D.SweepData) -> None:
        if d.error:
            st.warning(d.error)
            return
        frame, cos = load_curves(str(d.sweep_dir), D.signature(d.sweep_dir))
        if frame.empty:
            st.info(f"Sweep '{d.name}' has no evaluation logged yet (metrics.jsonl).")
            return
        dims = [x.get("name") for x in d.space.get("dimensions", [])]
        c1, c2 = st.columns(2)
        metric = c1.selectbox("metric", list(dict.fromkeys(frame["metric"])), key=f"curves-metric-{d.name}")
        colour = c2.selectbox("colour by", [*dims, "seed", "run"], key=f"curves-colour-{d.name}")
        plot(F.curves_figure(frame, metric, colour), key=f"curves-{d.name}")
        if cos.empty:
            st.info("No gradient-conflict cosines logged (log_grad_conflict off, or a single task).")
        else:
            plot(F.cosine_figure(cos, colour), key=f"cosine-{d.name}")

    side_by_side(chosen, one)


def view_errors(chosen: list[D.SweepData]) -> None:
    st.header("Errors")

    def one(d: D.SweepData) -> None:
        if d.error:
            st.warning(d.error)
            return
        names = D.runs_with_checkpoint(d)
        if not names:
            st.info(f"No run of '{d.name}' kept a checkpoint (save_checkpoint is off in its space): "
                    "rerun a configuration with `mtsearch train` (Leaderboard) to analyse its errors.")  # fmt: skip
            return
        run = st.selectbox("run (best first)", names, key=f"errors-run-{d.name}")
        run_dir = d.sweep_dir / "trials" / run
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
                   + " · " + ", ".join(f"{D.metric_label(t)} {v:.4f}" for t, v in scores.items()))  # fmt: skip
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

    side_by_side(chosen, one)


# --------------------------------------------------------------------------- page


def main() -> None:
    st.title("mtsearch: what helped, by how much, and is it more than noise")
    root = runs_dir()
    paths = D.list_sweeps(root)
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
        view = st.radio("view", VIEWS, index=VIEWS.index(view_q) if view_q in VIEWS else 0, key="view")
        live = st.toggle("live refresh", value=True, key="live",
                         help="Re-read the sweep files every few seconds; the page updates when a run finishes")  # fmt: skip
        every = st.number_input("every (seconds)", min_value=2, max_value=600, value=10, key="every")
        mlflow_url = st.text_input("MLflow UI", value=D.mlflow_base_url(), key="mlflow-url")
    if not picked:
        st.info("Pick a sweep in the sidebar.")
        return
    all_data = [sweep_data(p) for p in paths]
    by_name = {d.name: d for d in all_data}
    chosen = [by_name[n] for n in picked]
    watch_dirs = [str(d.sweep_dir) for d in chosen]

    @st.fragment(run_every=float(every) if live else None)
    def watch() -> None:
        sig = json.dumps([D.signature(p) for p in watch_dirs])
        if st.session_state.get("_sig") not in (None, sig):
            st.session_state["_sig"] = sig
            st.rerun()
        st.session_state["_sig"] = sig

    with st.sidebar:
        watch()

    if view == "Sweeps":
        view_sweeps(all_data, chosen)
    elif view == "Leaderboard":
        view_leaderboard(chosen, mlflow_url)
    elif view == "Ablation":
        view_ablation(chosen)
    elif view == "Importance":
        view_importance(chosen)
    elif view == "Parallel coordinates":
        view_parallel(chosen)
    elif view == "Task trade-offs":
        view_tradeoffs(chosen)
    elif view == "Curves":
        view_curves(chosen)
    elif view == "Errors":
        view_errors(chosen)


main()
