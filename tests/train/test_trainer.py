"""The core loop on the tiny model and a few hundred real rows per task."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mtsearch.errors import ConfigError, DataError, ModelError
from mtsearch.records import read_metrics
from mtsearch.train import NonFiniteLoss, Pruned, train
from tests.helpers import tiny_config


def _evals(result):
    return [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"]


def test_same_seed_same_metrics_other_seed_differs(data_dir, runs):
    a = train(tiny_config(data_dir, seed=7, name="a"))
    b = train(tiny_config(data_dir, seed=7, name="b"))
    c = train(tiny_config(data_dir, seed=8, name="c"))
    ea, eb, ec = _evals(a), _evals(b), _evals(c)
    assert [r["scores"] for r in ea] == [r["scores"] for r in eb]
    assert [r["train_loss"] for r in ea] == [r["train_loss"] for r in eb]
    assert [r["train_loss"] for r in ea] != [r["train_loss"] for r in ec]


def test_run_directory_describes_itself(data_dir, runs):
    seen = []
    result = train(tiny_config(data_dir, name="rec"), report=lambda step, m: seen.append((step, m)))
    d = runs / "rec"
    assert result.run_dir == d and result.status == "finished" and result.steps == 6
    for f in ("config.yaml", "env.json", "metrics.jsonl", "result.json", "best.safetensors"):
        assert (d / f).exists(), f
    env = json.loads((d / "env.json").read_text())
    assert env["device"] == "cpu" and env["packages"]["torch"].startswith("2.13")
    files = {row["file"] for row in env["data"]}
    assert {"ids-sst-train.csv", "quora-dev.csv", "sts-dev.csv"} <= files
    assert all(len(row["md5"]) == 32 for row in env["data"])
    evals = _evals(result)
    assert [r["step"] for r in evals] == [3, 6]
    assert [s for s, _ in seen] == [3, 6]  # report sees every evaluation
    assert set(seen[-1][1]) >= {"overall", "sst", "para", "sts", "examples"}
    assert evals[-1]["examples"] == 6 * 3 * 16
    assert 0 < evals[-1]["padding_efficiency"] <= 1
    # The checkpoint is the best evaluation's weights and loads into a state dict.
    state = load_file(str(d / "best.safetensors"))
    assert any(k.startswith("encoder.") for k in state) and "heads.sst.proj.weight" in state
    saved = json.loads((d / "result.json").read_text())
    # Held-out score: the checkpoint is the evaluation best on half A, scored on half B.
    chosen = max(evals, key=lambda r: r["half_a"]["overall"])
    assert saved["status"] == "finished" and saved["best"]["step"] == chosen["step"]
    assert saved["best"]["overall"] == chosen["half_b"]["overall"] and saved["best"]["chosen_on"] == "half_a"
    running = [max(r["half_a"]["overall"] for r in evals[: i + 1]) for i in range(len(evals))]
    flags = [i == 0 or r["half_a"]["overall"] > running[i - 1] for i, r in enumerate(evals)]
    assert [r["best"] for r in evals] == flags  # each row says whether half A improved on it


def test_the_score_comes_from_rows_that_did_not_choose_the_checkpoint(data_dir, runs):
    from mtsearch.records import read_eval_examples
    from mtsearch.tasks import overall_score, task_score

    result = train(tiny_config(data_dir, name="held", max_steps=9, eval_every=3))
    evals = _evals(result)
    # the halves split the 100 evaluation rows per task into 50 + 50, the same rows at every evaluation
    which, examples = read_eval_examples(result.run_dir)
    assert which == "half_b" and {t: len(e[0]) for t, e in examples.items()} == {
        "sst": 50,
        "para": 50,
        "sts": 50,
    }
    best = json.loads((result.run_dir / "result.json").read_text())["best"]
    chosen = max(evals, key=lambda r: r["half_a"]["overall"])  # the first of equals: a strict '>' keeps it
    assert best["step"] == chosen["step"] and best["scores"] == chosen["half_b"]["scores"]
    # the stored examples are the scored ones: recomputing the score from them gives the run's score
    again = {t: task_score(t, pred, gold) for t, (_, pred, gold) in examples.items()}
    assert again == pytest.approx(best["scores"]) and overall_score(again) == pytest.approx(best["overall"])
    # half A and half B are disjoint, and half B is what was stored
    other = train(tiny_config(data_dir, name="same-rows", held_out_score=False, max_steps=9, eval_every=3))
    which_all, all_rows = read_eval_examples(other.run_dir)
    assert which_all == "eval_rows" and all(len(e[0]) == 100 for e in all_rows.values())
    for t, (rows, _, _) in examples.items():
        assert set(rows) < set(all_rows[t][0])
    # without held-out halves the score is the best evaluation's own (optimistic, as before)
    plain = _evals(other)
    assert other.best["overall"] == max(r["overall"] for r in plain) and "half_a" not in plain[0]


def test_final_eval_scores_the_best_checkpoint_on_full_dev(data_dir, runs, monkeypatch):
    # Shrink dev to keep this fast: a 150-row dev subset per task plays "full dev".
    import mtsearch.data as data

    real = data.load_split

    def small_dev(task, split, ddir, strict=False, limit=None, seed=0, **kw):
        return real(task, split, ddir, strict=strict, limit=limit if split != "dev" else 150, seed=seed, **kw)

    monkeypatch.setattr(data, "load_split", small_dev)
    result = train(tiny_config(data_dir, name="fin", eval_limit=50, final_eval=True))
    rows = read_metrics(result.run_dir / "metrics.jsonl")
    assert rows[-1]["kind"] == "final" and rows[-1]["dev_sizes"] == {"sst": 150, "para": 150, "sts": 150}
    assert result.final == rows[-1]["scores"] and result.scores == result.final
    # the full dev sets score the checkpoint, so the periodic rows are not split in halves
    assert "half_a" not in rows[0] and result.best["chosen_on"] == "eval_rows"
    from mtsearch.records import read_eval_examples

    which, examples = read_eval_examples(result.run_dir)
    assert which == "full_dev" and {t: len(e[0]) for t, e in examples.items()} == rows[-1]["dev_sizes"]


def test_early_stopping_and_pruning(data_dir, runs):
    stopped = train(
        tiny_config(data_dir, name="es", max_steps=40, eval_every=1, patience=1, lr=1e-9, head_lr=1e-9)
    )
    assert stopped.status == "stopped_early" and stopped.steps < 40

    def prune(step, metrics):
        raise Pruned()

    with pytest.raises(Pruned):
        train(tiny_config(data_dir, name="pr"), report=prune)
    assert json.loads((runs / "pr" / "result.json").read_text())["status"] == "pruned"


def test_nan_loss_fails_the_run_with_a_clear_error(data_dir, runs, monkeypatch):
    import mtsearch.models.multitask as mt

    monkeypatch.setattr(mt, "task_loss", lambda task, out, labels, *opts: out.float().sum() * float("nan"))
    with pytest.raises(NonFiniteLoss, match="loss became nan at step 1"):
        train(tiny_config(data_dir, name="nan"))
    saved = json.loads((runs / "nan" / "result.json").read_text())
    assert saved["status"] == "failed" and "NonFiniteLoss" in saved["error"]


def test_nan_loss_on_a_check_cadence_names_the_window_and_stops_before_evaluating(
    data_dir, runs, monkeypatch
):
    # On a GPU the loss flags are read every LOSS_CHECK_EVERY steps (no sync per step), and
    # always before an evaluation: here every 5 steps, an evaluation after step 3.
    import mtsearch.models.multitask as mt
    import mtsearch.train.trainer as trainer

    monkeypatch.setattr(trainer, "loss_check_every", lambda device: 5)
    monkeypatch.setattr(mt, "task_loss", lambda task, out, labels, *opts: out.float().sum() * float("nan"))
    with pytest.raises(NonFiniteLoss, match=r"loss became NaN or inf in steps 1-3 \(checked every 5 steps"):
        train(tiny_config(data_dir, name="nan5"))
    saved = json.loads((runs / "nan5" / "result.json").read_text())
    assert saved["status"] == "failed" and saved["steps"] == 3
    assert not [r for r in read_metrics(runs / "nan5" / "metrics.jsonl") if r["kind"] == "eval"]


def test_bad_inputs_stop_before_any_run_directory(tmp_path, runs, data_dir):
    with pytest.raises(DataError, match=str(tmp_path / "nowhere")):
        train(tiny_config(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="no such folder"):
        train(tiny_config(data_dir, model=str(tmp_path / "no-model")))
    with pytest.raises(ConfigError, match="cuda"):
        if torch.cuda.is_available():
            raise ConfigError("cuda present: nothing to check")
        train(tiny_config(data_dir, device="cuda"))
    assert not runs.exists() or not any(runs.iterdir())


def test_budget_in_examples(data_dir, runs):
    result = train(tiny_config(data_dir, name="ex", max_steps=None, max_examples=100, eval_every=50))
    # 3 tasks x 16 per step: 100 examples take 3 steps.
    assert result.steps == 3 and result.examples == 144
    assert np.isfinite(result.overall)


def test_a_finite_schedule_that_runs_out_is_still_evaluated(data_dir, runs, monkeypatch):
    from mtsearch.samplers import SAMPLERS, Sampler

    class ThreeSteps(Sampler):
        """Three round-robin steps, then the schedule ends."""

        def schedule(self):
            for _ in range(3):
                yield list(self.tasks)

    ThreeSteps.name = "three_steps"
    monkeypatch.setitem(SAMPLERS._items, "three_steps", ThreeSteps)
    result = train(tiny_config(data_dir, name="finite", sampler="three_steps", max_steps=10, eval_every=5))
    assert result.steps == 3
    assert [r["step"] for r in _evals(result)] == [3]


def test_train_fraction_keeps_the_tasks_relative_sizes(data_dir, runs):
    from mtsearch.data import load_split

    sizes = {
        t: len(load_split(t, "train", data_dir, fraction=0.01, warn=False).examples)
        for t in ("sst", "para", "sts")
    }
    # ceil(1% of 8,544 / 22,644 / 6,040 usable rows)
    assert sizes == {"sst": 86, "para": 227, "sts": 61}
    capped = load_split("para", "train", data_dir, fraction=0.01, limit=100, warn=False)
    assert len(capped.examples) == 100 and capped.usable == 22644
    result = train(
        tiny_config(data_dir, name="frac", train_limit=None, train_fraction=0.01, max_steps=3, eval_every=3)
    )
    assert result.status == "finished"
