"""Parameter importances (Optuna's fANOVA or PED-ANOVA) of a sweep, per metric.

Read from the sweep's study; a sweep without one (the Ray backend) gets an in-memory study
built from its finished configurations.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field

from mtsearch.dashboard.sweeps import SweepData


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
                # Optuna's categorical choices are scalars: a list or mapping choice goes in as its JSON.
                dists[k] = CategoricalDistribution([c if not isinstance(c, list | dict) else json.dumps(c)
                                                    for c in spec["choices"]])  # fmt: skip
                params[k] = v if not isinstance(v, list | dict) else json.dumps(v)
            elif spec.get("kind") == "int":
                dists[k] = IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
            else:
                dists[k] = FloatDistribution(
                    float(spec["low"]), float(spec["high"]), log=bool(spec.get("log"))
                )
        # One trial per configuration here, its mean over seeds as flat attributes (as a run's trial has).
        attrs = {m: float(conf[f"{m}_mean"]) for m in res.metrics}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  value=float(conf["overall_mean"]), user_attrs=attrs))  # fmt: skip
    return study


def _target(metric: str):
    def target(trial) -> float:
        # A trial is one run; its scores are flat user attributes (overall, sst, para, sts).
        value = trial.user_attrs.get(metric)
        if isinstance(value, int | float):
            return float(value)
        return float(trial.values[0]) if trial.values else float("nan")

    return target


def _study(data: SweepData):
    """The sweep's study, else one built from its results; None when there is nothing to build from."""
    if (data.sweep_dir / "study.db").exists():
        from mtsearch.dashboard.study import sweep_study

        try:
            return sweep_study(data.sweep_dir)
        except Exception:
            pass
    return _study_from_results(data) if data.has_results else None


def importance(data: SweepData, evaluator: str = "fanova", metrics: list[str] | None = None) -> Importance:
    """Parameter importances of the study for each metric (overall and per task)."""
    import optuna
    from optuna.search_space import intersection_search_space
    from optuna.trial import TrialState

    dims = data.dim_names
    if data.error:
        return Importance(None, data.error, evaluator)
    study = _study(data)
    if study is None:
        return Importance(None, data.status_message(), evaluator)
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
