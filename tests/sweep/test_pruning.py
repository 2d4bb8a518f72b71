"""Pruning that does not bias: seed k is compared with seed k, never at the first evaluation,
and a pruned run closes its configuration."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from mtsearch.backends.optuna_study import curve_reporter, seed_aligned_pruner

ROOT = Path(__file__).resolve().parents[2]


def _finished(study, seed_index: int, curve: list[float]) -> None:
    trial = study.ask()
    trial.set_user_attr("seed_index", seed_index)
    for step, value in enumerate(curve, start=1):
        trial.report(value, step)
    study.tell(trial, curve[-1])


def _running(study, seed_index: int, curve: list[float]):
    trial = study.ask()
    trial.set_user_attr("seed_index", seed_index)
    for step, value in enumerate(curve, start=1):
        trial.report(value, step)
    return trial


def test_the_pruner_compares_same_seed_index_values_only():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    inner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", pruner=seed_aligned_pruner(inner))
    # Seed 0 is a lucky seed for every configuration (high curves), seed 1 an unlucky one.
    for _ in range(3):
        _finished(study, 0, [0.8, 0.9])
        _finished(study, 1, [0.2, 0.3])
    # A seed-1 run at 0.5: below every seed-0 curve, above every seed-1 curve. Compared with
    # its own seed index it is good; an unaligned pruner (all trials) would prune it.
    good = _running(study, 1, [0.4, 0.5])
    assert not good.should_prune()
    unaligned = optuna.create_study(direction="maximize", pruner=inner, storage=study._storage,
                                    study_name=study.study_name, load_if_exists=True)  # fmt: skip
    assert inner.prune(unaligned, unaligned._storage.get_trial(good._trial_id))
    # A seed-0 run at the same values is the worst of its seed index: pruned.
    bad = _running(study, 0, [0.4, 0.5])
    assert bad.should_prune()


def _halves(study, seed_index: int, half_a: list[float], half_b: list[float]):
    """A running trial that reported evaluations as a held-out run does (half A chooses, half B scores)."""
    trial = study.ask()
    trial.set_user_attr("seed_index", seed_index)
    report = curve_reporter(trial, "overall")
    for step, (a, b) in enumerate(zip(half_a, half_b, strict=True), start=1):
        report(step, {"overall": (a + b) / 2, "half_a_overall": a, "half_b_overall": b})
    return trial


def test_the_curve_shows_half_b_and_the_pruner_compares_half_a():
    """Issue 20 item 9: the shown curve is on the value's rows (half B); pruning, a choice, stays on half A."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    inner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", pruner=seed_aligned_pruner(inner))
    for _ in range(3):  # good on half A, poor on half B
        done = _halves(study, 0, [0.8, 0.9], [0.2, 0.3])
        study.tell(done, 0.3)
    # Worse than all of them on half A, better on half B: pruned, as half A says.
    low_a = _halves(study, 0, [0.4, 0.5], [0.9, 0.95])
    assert study._storage.get_trial(low_a._trial_id).intermediate_values == {1: 0.9, 2: 0.95}
    assert "half B" in study._storage.get_trial(low_a._trial_id).user_attrs["curve"]
    assert low_a.should_prune()
    # Better on half A, worse on half B: kept.
    high_a = _halves(study, 0, [0.85, 0.95], [0.1, 0.1])
    assert not high_a.should_prune()


def test_the_pruner_never_prunes_at_the_first_evaluation():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A pruner that would prune anything it is asked about.
    always = optuna.pruners.ThresholdPruner(lower=10.0)
    study = optuna.create_study(direction="maximize", pruner=seed_aligned_pruner(always))
    trial = _running(study, 0, [0.1])
    assert not trial.should_prune()
    trial.report(0.2, 2)
    assert trial.should_prune()


def test_a_pruned_run_closes_its_configuration(sweep_env, tmp_path, monkeypatch):
    """The second evaluation of one configuration's seed 0 is pruned: it gets no seed 1, the rest run."""
    from mtsearch.backends import BACKENDS
    from mtsearch.sweep import algorithms
    from mtsearch.sweep.runner import load_runs
    from mtsearch.sweep.space import load_space

    class PruneTemperature(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.params.get("sampler") == "temperature"

    monkeypatch.setattr(algorithms.Median, "optuna_pruner", lambda self: PruneTemperature())
    text = (ROOT / "search_spaces" / "smoke.yaml").read_text().replace("name: smoke", "name: pruned")
    path = tmp_path / "pruned.yaml"
    path.write_text(text.replace("pruner: none", "pruner: median"))
    out = BACKENDS.get("optuna")().run(load_space(str(path)), progress=False, mlflow=False)
    table = load_runs(sweep_env / "sweeps" / "pruned")
    temperature = table[table.sampler == "temperature"]
    assert list(temperature["status"]) == ["pruned"] and list(temperature["seed_index"]) == [0]
    assert (
        temperature["pruned_config"].all()
        and not table[table.sampler == "round_robin"]["pruned_config"].any()
    )
    assert sorted(table[table.sampler == "round_robin"]["status"]) == ["finished", "finished"]
    assert out.counts == {"finished": 2, "pruned": 1, "configurations": 2}
    study = optuna.load_study(
        study_name="pruned", storage=f"sqlite:///{sweep_env / 'sweeps' / 'pruned' / 'study.db'}"
    )
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    # Pruned at its second evaluation (step 4), not its first (step 2).
    assert len(pruned) == 1 and sorted(pruned[0].intermediate_values) == [2, 4]


def test_ablation_spaces_do_not_prune():
    from mtsearch.sweep.space import load_space

    for name in ("sampling", "surgery", "inputs", "freeze", "simcse"):
        assert load_space(name).pruner == "none", name
