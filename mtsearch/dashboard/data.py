"""What the dashboard shows, computed without Streamlit (so it is testable and reusable).

Everything is read from the sweep folders under ``runs/sweeps/`` (``MTSEARCH_RUNS``):
``sweep.json`` (space, backend, sessions), the run directories under ``trials/``
(scores via :func:`mtsearch.sweep.results.compute`, learning curves from
``metrics.jsonl``), the Optuna study in ``study.db`` (trial states, parameter
importances) and the MLflow store (links to each trial's run).

Nothing here raises on a sweep that is empty, failed or half-written: such problems end
up as plain sentences in :attr:`SweepData.notices` / :attr:`SweepData.error`.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sqlite3
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtsearch.paths import runs_dir
from mtsearch.tasks import TASKS

#: trial states shown in the sweeps table, in this order
COUNT_KEYS = ("done", "pruned", "failed", "running")
NA = "n/a"  # level of a conditional dimension in a run where it does not apply


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
    trials = sweep_dir / "trials"
    if trials.is_dir():
        for rd in trials.iterdir():
            for f in ("trial.json", "result.json", "metrics.jsonl"):
                m = _mtime(rd / f)
                if m:
                    n += 1
                    latest = max(latest, m)
    return (str(sweep_dir), n, latest)


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
    """Configurations by state: done, pruned, failed, running (+ waiting, duplicate from a study)."""
    study_db = sweep_dir / "study.db"
    if study_db.exists() and meta.get("backend", "optuna") == "optuna":
        try:
            study = open_study(sweep_dir)
            from mtsearch.backends.optuna_study import trial_counts as study_counts

            c = study_counts(study)
            counts = {"done": c.get("complete", 0), "pruned": c.get("pruned", 0), "failed": c.get("fail", 0),
                      "running": c.get("running", 0), "waiting": c.get("waiting", 0),
                      "duplicate": c.get("duplicate", 0)}  # fmt: skip
            return counts, "study", None
        except Exception as err:
            note = f"study.db could not be read ({type(err).__name__}); trial counts come from the run directories."
            return _dir_counts(sweep_dir), "run directories", note
    return _dir_counts(sweep_dir), "run directories", None


def _dir_counts(sweep_dir: Path) -> dict[str, int]:
    """Per trial (all its seeds): running if a seed has no result, failed if one failed, ..."""
    per_trial: dict[str, list[str]] = {}
    trials = sweep_dir / "trials"
    for rd in sorted(trials.iterdir()) if trials.is_dir() else []:
        trial = rd.name.split("-s")[0]
        try:
            status = json.loads((rd / "result.json").read_text()).get("status", "failed")
        except (OSError, json.JSONDecodeError):
            status = "running"
        per_trial.setdefault(trial, []).append(status)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for statuses in per_trial.values():
        if "running" in statuses:
            counts["running"] += 1
        elif any(s in ("failed", "killed") for s in statuses):
            counts["failed"] += 1
        elif "pruned" in statuses:
            counts["pruned"] += 1
        else:
            counts["done"] += 1
    return counts


def open_study(sweep_dir: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{(Path(sweep_dir) / 'study.db').resolve()}"
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 10}})
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    name = Path(sweep_dir).name if Path(sweep_dir).name in names else (names[0] if names else None)
    if name is None:
        raise LookupError("no study in study.db")
    return optuna.load_study(study_name=name, storage=storage)


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


# --------------------------------------------------------------------------- leaderboard


def leaderboard(data: SweepData, sort_by: str = "overall"):
    """Configurations ranked by the mean of ``sort_by`` over seeds, with sd and 95% half-width."""
    confs = data.results.configurations.copy()
    metrics = data.results.metrics
    cols = ["rank", *data.results.dims, "seeds"]
    for m in metrics:
        cols += [f"{m}_mean", f"{m}_sd", f"{m}_ci95"]
    cols += ["trials", "example_run", "params_key"]
    out = confs[cols].sort_values(f"{sort_by}_mean", ascending=False, kind="stable").reset_index(drop=True)
    return out


def best_configuration(data: SweepData) -> dict[str, Any]:
    """The top configuration: its params, scores and the command that reproduces its best seed run."""
    res = data.results
    top = res.configurations.iloc[0]
    params = json.loads(top["params"])
    runs = res.runs[(res.runs["params_key"] == top["params_key"]) & res.runs["overall"].notna()]
    best_run = runs.sort_values("overall", ascending=False).iloc[0]
    seed = int(best_run["seed"])
    return {
        "params": params,
        "rank": int(top["rank"]),
        "seeds": int(top["seeds"]),
        "scores": {m: (float(top[f"{m}_mean"]), float(top[f"{m}_sd"])) for m in res.metrics},
        "run": best_run["run"],
        "seed": seed,
        "run_scores": {m: float(best_run[m]) for m in res.metrics},
        "command": reproduce_command(data.meta, params, seed),
    }


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
    parts = [program, "train"]
    for key, value in reproduce_values(meta, params, seed).items():
        parts += ["--set", shlex.quote(f"{key}={_yaml_value(value)}")]
    return " ".join(parts)


# --------------------------------------------------------------------------- MLflow links


def mlflow_base_url() -> str:
    return (
        os.environ.get("MTSEARCH_MLFLOW_URL")
        or f"http://127.0.0.1:{os.environ.get('MTSEARCH_MLFLOW_PORT', '5000')}"
    )


def _mlflow_db() -> Path | None:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    return runs_dir() / "mlflow.db"


def mlflow_experiments(run_ids: list[str]) -> dict[str, str]:
    """run id -> experiment id, read straight from the sqlite store (no MLflow import)."""
    db = _mlflow_db()
    ids = [r for r in run_ids if isinstance(r, str) and r]
    if not ids or db is None or not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            q = f"SELECT run_uuid, experiment_id FROM runs WHERE run_uuid IN ({','.join('?' * len(ids))})"
            return {r: str(e) for r, e in con.execute(q, ids)}
        finally:
            con.close()
    except sqlite3.Error:
        return {}


def mlflow_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def runs_table(data: SweepData, base_url: str | None = None):
    """Every run read (all statuses) with its scores and a link to its MLflow run."""
    res = data.results
    runs = res.runs.copy()
    if runs.empty:
        return runs
    base_url = base_url or mlflow_base_url()
    exps = mlflow_experiments(list(runs.get("mlflow_run_id", [])))
    runs["mlflow"] = [
        mlflow_url(base_url, exps[r], r) if isinstance(r, str) and r in exps else None
        for r in runs.get("mlflow_run_id", [None] * len(runs))
    ]
    cols = ["run", "trial", "seed", "status", *[d for d in res.dims if d in runs],
            *[m for m in res.metrics if m in runs], "seconds", "best_step", "mlflow"]  # fmt: skip
    return runs[[c for c in cols if c in runs]].reset_index(drop=True)


# --------------------------------------------------------------------------- ablation


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
    spec = data.dim_spec(dim)
    choices = [str(c) if not isinstance(c, list | dict) else json.dumps(c) for c in spec.get("choices") or []]

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


# --------------------------------------------------------------------------- importance


@dataclass
class Importance:
    values: dict[str, dict[str, float]] | None  # metric -> dimension -> importance
    message: str | None
    evaluator: str
    left_out: list[str] = field(default_factory=list)
    trials: int = 0


EVALUATORS = ("fanova", "ped-anova")


def _evaluator(name: str):
    import optuna

    if name == "fanova":
        return optuna.importance.FanovaImportanceEvaluator(seed=0)
    if name == "ped-anova":
        return optuna.importance.PedAnovaImportanceEvaluator()
    raise ValueError(f"unknown evaluator '{name}'; valid: {', '.join(EVALUATORS)}")


def _study_from_results(data: SweepData):
    """An in-memory study of the finished configurations (sweeps without a study.db, e.g. Ray)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    study = optuna.create_study(direction="maximize", study_name=data.name)
    res = data.results
    for _, conf in res.configurations.iterrows():
        params = json.loads(conf["params"])
        dists = {}
        for k, v in params.items():
            spec = data.dim_spec(k)
            if spec.get("choices") is not None:
                dists[k] = CategoricalDistribution([c if not isinstance(c, list | dict) else json.dumps(c)
                                                    for c in spec["choices"]])  # fmt: skip
                params[k] = v if not isinstance(v, list | dict) else json.dumps(v)
            elif spec.get("kind") == "int":
                dists[k] = IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
            else:
                dists[k] = FloatDistribution(
                    float(spec["low"]), float(spec["high"]), log=bool(spec.get("log"))
                )
        runs = res.runs[(res.runs["params_key"] == conf["params_key"]) & res.runs["overall"].notna()]
        attrs = {f"seed_{int(r['seed'])}": {"overall": r["overall"], "scores": {t: r[t] for t in res.metrics[1:]}}
                 for _, r in runs.iterrows()}  # fmt: skip
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  value=float(conf["overall_mean"]), user_attrs=attrs))  # fmt: skip
    return study


def _target(metric: str):
    def target(trial) -> float:
        seeds = [v for k, v in trial.user_attrs.items() if k.startswith("seed_") and isinstance(v, dict)]
        vals = [
            s.get("overall") if metric == "overall" else (s.get("scores") or {}).get(metric) for s in seeds
        ]
        vals = [float(v) for v in vals if v is not None]
        if vals:
            return float(sum(vals) / len(vals))
        return float(trial.values[0]) if trial.values else float("nan")

    return target


def importance(data: SweepData, evaluator: str = "fanova", metrics: list[str] | None = None) -> Importance:
    """Parameter importances of the study for each metric (overall and per task)."""
    import optuna
    from optuna.search_space import intersection_search_space
    from optuna.trial import TrialState

    dims = [d.get("name") for d in data.space.get("dimensions", [])]
    if data.error:
        return Importance(None, data.error, evaluator)
    study = None
    if (data.sweep_dir / "study.db").exists():
        try:
            study = open_study(data.sweep_dir)
        except Exception:
            study = None
    if study is None:
        if not data.has_results:
            return Importance(None, data.status_message(), evaluator)
        study = _study_from_results(data)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return Importance(None, f"Importance needs at least 2 completed trials; this sweep has {len(complete)}.",
                          evaluator, trials=len(complete))  # fmt: skip
    common = list(intersection_search_space(complete))
    left_out = [d for d in dims if d not in common]
    if len(common) < 2:
        which = f"'{common[0]}'" if common else "none"
        why = f" ({', '.join(left_out)} apply only to some trials)" if left_out else ""
        return Importance(
            None,
            f"Only one dimension applies to every completed trial ({which}){why}: importance ranks two or "
            "more dimensions. The Ablation view shows how much each level of a dimension helps.",
            evaluator, left_out, len(complete),
        )  # fmt: skip
    metrics = metrics or ["overall", *data.tasks]
    out: dict[str, dict[str, float]] = {}
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for m in metrics:
        target = _target(m)
        if evaluator == "ped-anova":  # PED-ANOVA explains low target values; the scores are maximised
            target = lambda t, _f=target: -_f(t)  # noqa: E731
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vals = optuna.importance.get_param_importances(
                    study, evaluator=_evaluator(evaluator), target=target, normalize=True
                )
        except Exception as err:
            return Importance(None, f"The {evaluator} evaluator could not rank the dimensions ({type(err).__name__}: "
                              f"{err}).", evaluator, left_out, len(complete))  # fmt: skip
        out[m] = {k: float(v) for k, v in vals.items()}
    ranked = {k for v in out.values() for k in v}
    return Importance(out, None, evaluator, [d for d in dims if d not in ranked], len(complete))


def importance_frame(imp: Importance):
    import pandas as pd

    rows = [{"metric": m, "dimension": d, "importance": v} for m, dv in (imp.values or {}).items() for d, v in dv.items()]  # fmt: skip
    return pd.DataFrame(rows, columns=["metric", "dimension", "importance"])


# --------------------------------------------------------------------------- parallel coordinates


def log_dims(data: SweepData) -> set[str]:
    return {d.get("name") for d in data.space.get("dimensions", []) if d.get("log")}


def parallel_frame(data: SweepData):
    """One row per configuration: each dimension's level (n/a where it does not apply) and the means."""
    confs = data.results.configurations
    df = confs[["rank", *data.results.dims, *[f"{m}_mean" for m in data.results.metrics]]].copy()
    for d in data.results.dims:
        df[d] = df[d].map(lambda v: NA if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return df


# --------------------------------------------------------------------------- curves


def _level_of(params: dict[str, Any], dim: str) -> str:
    if dim not in params:
        return NA
    v = params[dim]
    return json.dumps(v) if isinstance(v, list | dict) else str(v)


def curves(data: SweepData):
    """Long table: one row per (run, evaluation, metric): examples seen, value, and every dimension's level.

    Reads every run directory with a metrics.jsonl (running runs included: curves grow live).
    """
    import pandas as pd

    from mtsearch.records import read_metrics

    dims = [d.get("name") for d in data.space.get("dimensions", [])]
    rows, cos_rows = [], []
    trials = data.sweep_dir / "trials"
    for rd in sorted(trials.iterdir()) if trials.is_dir() else []:
        try:
            info = json.loads((rd / "trial.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        params = info.get("params") or {}
        levels = {d: _level_of(params, d) for d in dims}
        base = {"run": rd.name, "trial": info.get("trial"), "seed": info.get("seed"), **levels}
        for r in read_metrics(rd / "metrics.jsonl"):
            if r.get("kind", "eval") != "eval":
                continue
            at = {"step": r.get("step"), "examples": r.get("examples")}
            if r.get("overall") is not None:
                rows.append({**base, **at, "metric": "overall", "value": float(r["overall"])})
            for t, v in (r.get("scores") or {}).items():
                rows.append({**base, **at, "metric": t, "value": float(v)})
            for pair, v in (r.get("grad_cosine") or {}).items():
                if v is not None:
                    cos_rows.append({**base, **at, "pair": pair, "cosine": float(v)})
    cols = ["run", "trial", "seed", *dims, "step", "examples"]
    return (pd.DataFrame(rows, columns=[*cols, "metric", "value"]),
            pd.DataFrame(cos_rows, columns=[*cols, "pair", "cosine"]))  # fmt: skip


# --------------------------------------------------------------------------- errors


def runs_with_checkpoint(data: SweepData) -> list[str]:
    from mtsearch.dashboard.predictions import has_checkpoint

    trials = data.sweep_dir / "trials"
    names = sorted(rd.name for rd in trials.iterdir() if has_checkpoint(rd)) if trials.is_dir() else []
    if data.has_results:  # best runs first
        order = data.results.runs.sort_values("overall", ascending=False)["run"].tolist()
        names.sort(key=lambda n: order.index(n) if n in order else len(order))
    return names


def metric_label(m: str) -> str:
    return "overall" if m == "overall" else f"{m} ({TASKS[m].metric})" if m in TASKS else m
