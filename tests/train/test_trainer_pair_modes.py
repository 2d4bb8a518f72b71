"""The trainer, evaluation and prediction over every pair_mode, pooling and STS head (tiny model)."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mtsearch.models.encoder import load_encoder, load_tokenizer, resolve_model
from mtsearch.models.multitask import MultitaskModel, encode_for_model
from mtsearch.records import read_metrics
from mtsearch.tasks import task_score
from mtsearch.train import train
from mtsearch.train.evaluate import predict
from mtsearch.train.optim import build_optimizer
from tests.helpers import tiny_config

DEV_ROWS = 150


def _check_run(result, config):
    assert result.status == "finished" and result.steps == config.max_steps
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    for row in evals:
        assert set(row["scores"]) == {"sst", "para", "sts"}
        assert all(math.isfinite(v) for v in row["scores"].values())
        assert all(math.isfinite(v) for v in row["train_loss"].values())
        assert all(math.isfinite(v) for v in row["dev_loss"].values())
    # The checkpoint is exactly this config's model: it loads strictly into a fresh one.
    state = load_file(str(result.run_dir / "best.safetensors"))
    fresh = MultitaskModel(load_encoder(resolve_model("tiny")), config)
    fresh.load_state_dict(state, strict=True)
    return state


@pytest.mark.parametrize("pooling", ["mean", "attention"])
@pytest.mark.parametrize("pair_mode", ["concat", "separate", "ensemble"])
def test_trains_end_to_end(pair_mode, pooling, data_dir, runs):
    config = tiny_config(
        data_dir,
        name=f"{pair_mode}-{pooling}",
        pair_mode=pair_mode,
        pooling=pooling,
        max_steps=4,
        eval_every=2,
    )
    state = _check_run(train(config), config)
    width = 64 * (3 if pair_mode == "separate" else 1)  # tiny: hidden 64
    assert state["heads.para.proj.weight"].shape == (1, width)
    assert ("separate_heads.para.proj.weight" in state) == (pair_mode == "ensemble")
    if pair_mode == "ensemble":
        assert state["separate_heads.sts.proj.weight"].shape == (1, 3 * 64)
    assert ("pooling.sts.query" in state) == (pooling == "attention")


def test_cosine_sts_with_everything_on(data_dir, runs):
    config = tiny_config(
        data_dir,
        name="cos",
        pair_mode="separate",
        pooling="cnn_bilstm",
        pooling_args={"kernel_sizes": [2, 3], "filters": 8, "lstm_hidden": 8},
        head="mlp",
        head_args={"hidden_size": 32, "layers": 2},
        sts_head="cosine",
        sts_loss="cosine_embedding",
        sts_margin=0.25,
        shared_pair_layer=True,
        task_dropout={"sts": 0.2},
        max_steps=4,
        eval_every=2,
    )
    state = _check_run(train(config), config)
    pooled = 64 + 2 * 8 + 2 * 8
    assert state["shared_pair.separate.net.1.weight"].shape == (3 * pooled, 3 * pooled)
    assert not any(k.startswith("heads.sts.") for k in state)  # the cosine head has no weights
    evals = [r for r in read_metrics(runs / "cos" / "metrics.jsonl") if r["kind"] == "eval"]
    # The cosine-embedding loss is bounded: s(1 - cos) + (1 - s) max(0, cos - m) <= 2.
    assert all(0 <= r["dev_loss"]["sts"] <= 2 for r in evals)


def test_extra_modules_get_the_head_learning_rate():
    config = tiny_config(".", pair_mode="ensemble", shared_pair_layer=True, lr=1e-5, head_lr=1e-3)
    model = MultitaskModel(load_encoder(resolve_model("tiny")), config)
    optimizer, _ = build_optimizer(model, config, total_steps=10)
    # initial_lr: the peak; "lr" is already scaled by the warm-up factor of step 0.
    lr_of = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters())  # every parameter, once
    assert all(lr_of[id(p)] == 1e-5 for p in model.encoder.parameters())
    for module in (model.shared_pair, model.separate_heads, model.heads, model.pooling):
        assert all(lr_of[id(p)] == 1e-3 for p in module.parameters())


def test_separate_run_predicts_with_its_own_encodings(data_dir, runs, monkeypatch):
    import mtsearch.data as data
    from mtsearch.predict import predict_run

    real = data.load_split

    def small_dev(task, split, ddir, strict=False, limit=None, seed=0, **kw):
        return real(
            task, split, ddir, strict=strict, limit=limit if split != "dev" else DEV_ROWS, seed=seed, **kw
        )

    # Training and prediction both read this 150-row dev set, so their scores must agree.
    monkeypatch.setattr(data, "load_split", small_dev)
    config = tiny_config(
        data_dir,
        name="sep",
        pair_mode="separate",
        eval_limit=50,
        final_eval=True,
        max_steps=4,
        eval_every=2,
    )
    result = train(config)
    files = predict_run(str(result.run_dir), splits=("dev",))
    assert sorted(f.name for f in files) == [
        "para-dev-output.csv",
        "sst-dev-output.csv",
        "sts-dev-output.csv",
    ]
    # The same checkpoint scored here, unrounded, on the encodings the config needs.
    model = MultitaskModel(load_encoder(resolve_model("tiny")), config)
    model.load_state_dict(load_file(str(result.run_dir / "best.safetensors")))
    tokenizer = load_tokenizer(resolve_model("tiny"))
    for f in files:
        task = f.name.split("-")[0]
        split = small_dev(task, "dev", data_dir)
        rows = [line.rsplit(" , ", 1) for line in f.read_text().splitlines()[1:]]
        assert [r[0] for r in rows] == [e.id for e in split.examples]
        written = np.array([float(r[1]) for r in rows])
        golds = np.array([e.label for e in split.examples])
        enc = encode_for_model(split, tokenizer, config)
        assert tuple(enc.segments) == (("a",) if task == "sst" else ("a", "b"))
        _, preds, _ = predict(model, task, enc, None, torch.device("cpu"), "fp32", config.eval_batch_size, 0)
        # Same checkpoint, batches and threads as the final evaluation; 1e-6 allows for
        # float32 kernels that are not bitwise reproducible across model instances.
        assert task_score(task, preds, golds) == pytest.approx(result.final[task], abs=1e-6)
        if task == "sts":
            assert np.abs(written - preds).max() <= 5e-5 + 1e-9  # written with 4 decimals
        else:
            assert np.array_equal(written, preds)
            assert task_score(task, written, golds) == result.final[task]
