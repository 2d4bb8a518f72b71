"""SimCSE pre-training: the loss by hand, positives from real-format files, the stage in a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import mtsearch.train.simcse as sc
from mtsearch.config import make_config
from mtsearch.data import load_split
from mtsearch.errors import ConfigError, DataError, NonFiniteLoss
from mtsearch.models.encoder import load_encoder, load_tokenizer, resolve_model
from mtsearch.records import read_metrics
from mtsearch.train import train
from tests.helpers import tiny_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
TOL = 1e-6  # float32 softmax of a 3x3 matrix: far below this


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model("tiny"))


# ------------------------------------------------------------------ the loss by hand
def test_loss_of_orthogonal_sentences_seen_twice_identically():
    # z1 = z2 = rows of the identity: cos = 1 on the diagonal, 0 elsewhere. Each row's
    # loss is -log(e^(1/t) / (e^(1/t) + 2)) = log(1 + 2 e^(-1/t)).
    z = torch.eye(3)
    for t in (1.0, 0.5, 0.05):
        expected = math.log1p(2 * math.exp(-1 / t))
        assert abs(float(sc.contrastive_loss(z, z.clone(), t)) - expected) < TOL
    # t = 1: log(1 + 2/e) = 0.5514...; t = 0.05 (paper): ~4e-9, the sentences are told apart
    assert abs(float(sc.contrastive_loss(z, z, 1.0)) - 0.551444) < 1e-5


def test_loss_of_indistinguishable_sentences_is_log_batch_size():
    # Every vector the same (and scaled: only the direction counts): all logits equal.
    z = torch.ones(4, 8)
    assert abs(float(sc.contrastive_loss(z, 3 * z, 0.05)) - math.log(4)) < TOL


def test_same_sentence_candidates_are_not_negatives():
    # anchors e0, e1, e2; positives e0, e0, e2 (rows 0 and 1 share their positive sentence).
    # t = 1, logits = anchors @ positives.T:
    #   row 0: [1, 1, 0], candidate 1 masked -> log(1 + e^-1)
    #   row 1: [0, 0, 0], candidate 0 masked -> log 2
    #   row 2: [0, 0, 1]                     -> log(1 + 2 e^-1)
    e = torch.eye(3)
    anchors, positives = e, e[[0, 0, 2]]
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    expected = (math.log1p(math.exp(-1)) + math.log(2) + math.log1p(2 * math.exp(-1))) / 3
    assert abs(float(sc.contrastive_loss(anchors, positives, 1.0, same)) - expected) < TOL
    # without the mask, row 0 would count its own positive's twin as a negative: higher loss
    assert float(sc.contrastive_loss(anchors, positives, 1.0)) > expected + 0.1


# ------------------------------------------------------------------ data
def test_sup_positives_are_qqp_duplicates_and_sts_pairs_of_at_least_the_threshold(tmp_path, tokenizer):
    # The fixture files are in the real format, defects included: QQP qt-03 (open quote)
    # and qt-05 (label 0.5) are skipped; STS st-04 (5.5), st-05 (-0.2), st-06 (nan) too.
    para = load_split("para", "train", FIXTURES, warn=False)
    sts = load_split("sts", "train", FIXTURES, warn=False)
    sst = load_split("sst", "train", FIXTURES, warn=False)
    ids = lambda split, idx: [split.examples[i].id for i in idx]  # noqa: E731
    assert ids(para, sc.positive_examples(para, 4.0)) == ["qt-01", "qt-04"]  # label 1.0 only
    assert ids(sts, sc.positive_examples(sts, 4.0)) == ["st-01", "st-08"]  # 4.8, 5.0
    assert ids(sts, sc.positive_examples(sts, 3.5)) == ["st-01", "st-03", "st-08"]  # + 3.8
    assert len(sc.positive_examples(sst, 4.0)) == 0  # not a pair task

    splits = [sst, para, sts]
    pool = sc.sentence_pool(splits, tokenizer, 32, cache_dir=tmp_path)
    pairs = sc.positive_pairs(splits, pool, 4.0)
    seg = pool.sentences.segments["a"]

    def text(row):
        return tokenizer.decode(
            seg.input_ids[seg.offsets[row] : seg.offsets[row + 1]], skip_special_tokens=True
        )

    assert [(text(a), text(b)) for a, b in pairs] == [
        ("how can i sleep better?", "what helps me fall asleep?"),
        ("how do plants grow?", "what do plants need to grow?"),
        ("a man is playing a guitar.", "a man plays the guitar."),
        ("a boy jumps.", "a boy is jumping over a fence."),
    ]


def test_unsup_sentences_are_every_text_once(tmp_path, tokenizer):
    # SST holds one QQP question again (other case and spacing: the same tokens) and one
    # sentence twice; pairs contribute both sides.
    (tmp_path / "ids-sst-train.csv").write_text(
        "\tid\tsentence\tsentiment\n"
        "0\ts1\tHOW can I  sleep better?\t3\n"
        "1\ts2\tA fine film .\t4\n"
        "2\ts3\tA fine film .\t2\n"
    )
    (tmp_path / "quora-train.csv").write_text(
        "\tid\tsentence1\tsentence2\tis_duplicate\n"
        "0\tq1\tHow can I sleep better?\tWhat helps me fall asleep?\t1.0\n"
        "1\tq2\tWhy is the sky blue?\tWhat helps me fall asleep?\t0.0\n"
    )
    splits = [load_split(t, "train", tmp_path, warn=False) for t in ("sst", "para")]
    pool = sc.sentence_pool(splits, tokenizer, 32, cache_dir=tmp_path / "cache")
    # first seen, split by split and segment by segment: 0 "how can i sleep better?",
    # 1 "a fine film .", 2 "why is the sky blue?" (para a), 3 "what helps me fall asleep?" (para b)
    assert len(pool) == 4
    assert pool.index[0]["a"].tolist() == [0, 1, 1]
    assert pool.index[1]["a"].tolist() == [0, 2] and pool.index[1]["b"].tolist() == [3, 3]


def test_batches_never_repeat_a_row_and_follow_the_seed():
    rng = np.random.default_rng(0)
    gen = sc._batches(10, 4, rng)
    first = [next(gen) for _ in range(4)]  # two passes of two batches (tail of 2 dropped)
    assert all(len(set(b.tolist())) == 4 for b in first)
    assert len(set(np.concatenate(first[:2]).tolist())) == 8
    again = sc._batches(10, 4, np.random.default_rng(0))
    assert all(np.array_equal(a, next(again)) for a in first)
    assert next(sc._batches(3, 64, rng)).shape == (3,)  # a small pool: one batch of all of it


# ------------------------------------------------------------------ config
def test_config_refuses_sup_without_pair_tasks_naming_both_fields():
    with pytest.raises(ConfigError, match=r"simcse 'sup'.*tasks \(sst, cfimdb\)"):
        make_config({"simcse": "sup", "tasks": ["sst", "cfimdb"]})
    assert make_config({"simcse": "sup", "tasks": ["sst", "sts"]}).simcse == "sup"
    assert make_config({"simcse": "unsup", "tasks": ["sst"]}).simcse_temperature == 0.05
    with pytest.raises(ConfigError, match="simcse_batch_size"):
        make_config({"simcse": "unsup", "simcse_batch_size": 1})  # no in-batch negative


# ------------------------------------------------------------------ the stage
def _stage(data_dir: Path, tokenizer, seed: int, **overrides):
    values = dict(seed=seed, simcse_steps=4, simcse_batch_size=8, train_limit=64)
    cfg = tiny_config(data_dir, **{**values, **overrides})
    encoder = load_encoder(resolve_model("tiny"), seed=0)
    splits = [load_split(t, "train", data_dir, limit=64, seed=seed, warn=False) for t in cfg.tasks]
    result = sc.run_simcse(cfg, encoder, splits, tokenizer, torch.device("cpu"))
    return encoder.state_dict(), result


def test_stage_is_repeatable_and_leaves_the_global_generator_alone(small_data_dir, tokenizer, runs):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, ra = _stage(small_data_dir, tokenizer, seed=1, simcse="unsup")
    assert torch.equal(torch.get_rng_state(), state)  # the multitask run's dropout stream is untouched
    b, rb = _stage(small_data_dir, tokenizer, seed=1, simcse="unsup")
    c, _ = _stage(small_data_dir, tokenizer, seed=2, simcse="unsup")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in ra.rows] == [r["loss"] for r in rb.rows]
    assert any(not torch.equal(a[k], c[k]) for k in a)  # another seed: other batches and masks


def test_metrics_rows_every_n_steps_and_at_the_end(small_data_dir, tokenizer, runs, monkeypatch):
    monkeypatch.setattr(sc, "LOG_EVERY", 2)
    _, result = _stage(small_data_dir, tokenizer, seed=0, simcse="sup", simcse_steps=5)
    assert [r["step"] for r in result.rows] == [2, 4, 5]
    assert all(r["kind"] == "simcse" and r["mode"] == "sup" and np.isfinite(r["loss"]) for r in result.rows)
    assert result.rows[-1]["final"] and result.rows[-1]["pairs"] == result.pairs > 0
    # warm-up of int(0.1 * 5) = 0 steps, then linear decay: (5 - s) / 5 at step s (0-based)
    assert [r["lr"] for r in result.rows] == pytest.approx([3e-5 * 4 / 5, 3e-5 * 2 / 5, 3e-5 * 1 / 5])

    written, logged = [], []

    class Rd:
        def append_metrics(self, row):
            written.append(row)

    class Mirror:
        def log_metrics(self, step, metrics):
            logged.append((step, metrics))

    result.record(Rd(), Mirror())
    assert written == result.rows
    assert logged == [(r["step"], {"simcse_loss": r["loss"]}) for r in result.rows]


def test_sup_without_positives_fails_clearly(small_data_dir, tokenizer, runs):
    # one STS row at most, and a threshold only a perfect 5.0 meets: fewer than 2 pairs
    with pytest.raises(DataError, match=r"simcse 'sup' found [01] positive pair"):
        _stage(
            small_data_dir,
            tokenizer,
            seed=0,
            simcse="sup",
            tasks=["sst", "sts"],
            simcse_sup_threshold=5.0,
            train_limit=1,
        )


def test_a_diverged_loss_stops_the_stage_before_any_step(small_data_dir, tokenizer, runs, monkeypatch):
    # the same check as the multitask loop's (optim.finite_loss), with the stage's own advice
    monkeypatch.setattr(sc, "contrastive_loss", lambda a, p, t, same=None: (a.sum() + p.sum()) * float("nan"))
    cfg = tiny_config(small_data_dir, simcse="unsup", simcse_steps=3, simcse_batch_size=8, train_limit=32)
    encoder = load_encoder(resolve_model("tiny"), seed=0).eval()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    splits = [load_split(t, "train", small_data_dir, limit=32, warn=False) for t in cfg.tasks]
    with pytest.raises(NonFiniteLoss, match=r"the simcse loss became nan at simcse step 1: lower simcse_lr"):
        sc.run_simcse(cfg, encoder, splits, tokenizer, torch.device("cpu"))
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())
    assert all(p.grad is None for p in encoder.parameters()) and not encoder.training  # as it was


# ------------------------------------------------------------------ in a run
@pytest.mark.parametrize("mode", ["unsup", "sup"])
def test_run_pretrains_the_encoder_then_trains(small_data_dir, runs, monkeypatch, mode):
    real = sc.run_simcse
    seen = {}

    def spy(config, encoder, splits, *args, **kwargs):
        before = {k: v.clone() for k, v in encoder.state_dict().items()}
        out = real(config, encoder, splits, *args, **kwargs)
        after = encoder.state_dict()
        seen["changed"] = {k for k in before if not torch.equal(before[k], after[k])}
        seen["all"] = set(before)
        seen["tasks"] = [s.task for s in splits]
        return out

    monkeypatch.setattr(sc, "run_simcse", spy)
    result = train(
        tiny_config(
            small_data_dir,
            name=mode,
            simcse=mode,
            simcse_steps=3,
            simcse_batch_size=8,
            simcse_lr=1e-3,
            max_steps=2,
            eval_every=2,
            train_limit=64,
        )
    )
    assert seen["tasks"] == ["sst", "para", "sts"]
    # every encoder weight moved: embeddings, attention, feed-forward, LayerNorm (no freezing)
    assert seen["changed"] == seen["all"]
    assert result.status == "finished" and result.steps == 2
    rows = read_metrics(result.run_dir / "metrics.jsonl")
    assert [r["kind"] for r in rows] == ["simcse", "eval"]  # the stage is recorded before training
    assert rows[0]["step"] == 3 and rows[0]["mode"] == mode and rows[0]["sentences"] > 100
    assert (rows[0]["pairs"] > 0) == (mode == "sup")


def test_activation_cache_is_keyed_on_the_pretrained_weights(small_data_dir, runs):
    # The cache key hashes the frozen layers' weights after SimCSE: a SimCSE run cannot
    # reuse entries of the unmodified model, and a repeat of it (same seed, same stage)
    # rightly reuses its own.
    def env(name, **kw):
        cfg = tiny_config(small_data_dir, name=name, freeze_layers=1, max_steps=1, train_limit=32, **kw)
        return json.loads((train(cfg).run_dir / "env.json").read_text())["model"]["activation_cache"]

    plain = env("plain")
    pre = env("pre", simcse="unsup", simcse_steps=2, simcse_batch_size=8)
    again = env("again", simcse="unsup", simcse_steps=2, simcse_batch_size=8)
    assert plain["built"] and pre["built"] and not pre["reused"]
    assert not set(pre["built"]) & set(plain["built"] + plain["reused"])
    assert set(again["reused"]) == set(pre["built"]) and not again["built"]


def test_000s_stage_as_written_constant_lr_raw_cls_and_no_temperature(
    small_data_dir, tokenizer, runs, monkeypatch
):
    # 000: "a learning rate of 1e-5", a [CLS] sentence vector and a loss without temperature:
    # every step at 1e-5 (no warm-up, no decay), the [CLS] state itself, logits = cosines.
    monkeypatch.setattr(sc, "LOG_EVERY", 2)
    _, result = _stage(
        small_data_dir, tokenizer, seed=0, simcse="unsup", simcse_steps=5, simcse_lr=1e-5,
        simcse_schedule="constant", simcse_pooling="cls_raw", simcse_temperature=1.0,
    )  # fmt: skip
    assert [r["lr"] for r in result.rows] == pytest.approx([1e-5, 1e-5, 1e-5])
    embed = sc._Embed(8, "cls_raw")
    states = torch.randn(2, 3, 8)
    assert not list(embed.parameters())  # no extra layer to train
    assert torch.equal(embed(states, torch.ones(2, 3)), states[:, 0])
