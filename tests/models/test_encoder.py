import pytest
import torch

from mtsearch.config import make_config
from mtsearch.errors import ModelError
from mtsearch.models.encoder import load_encoder, load_tokenizer, resolve_model
from mtsearch.models.multitask import MultitaskModel, predictions, task_loss


def test_resolve_model_kinds(tmp_path):
    assert resolve_model("minilm").kind == "minilm"
    assert resolve_model("tiny").kind == "tiny"
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2").kind == "hub"
    with pytest.raises(ModelError, match="no such folder"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_unloadable_folder_is_one_model_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    src = resolve_model(str(tmp_path))
    with pytest.raises(ModelError, match="could not load"):
        load_encoder(src)


def test_tiny_model_init_is_seeded():
    src = resolve_model("tiny")
    a, b = load_encoder(src, seed=1), load_encoder(src, seed=1)
    c = load_encoder(src, seed=2)
    wa, wb, wc = (m.embeddings.word_embeddings.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_a_half_precision_checkpoint_trains_fp32_weights(tmp_path):
    # transformers 5 loads a checkpoint in its saved dtype: fp16 weights would train in fp16
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).half().save_pretrained(tmp_path)  # fmt: skip
    enc = load_encoder(resolve_model(str(tmp_path)))
    assert {p.dtype for p in enc.parameters()} == {torch.float32}


def test_minilm_loads_offline():
    src = resolve_model("minilm")
    tok = load_tokenizer(src)
    enc = load_encoder(src)
    assert enc.config.hidden_size == 384 and enc.config.num_hidden_layers == 6
    assert tok("hello world")["input_ids"][0] == tok.cls_token_id


def test_multitask_forward_shapes_losses_and_predictions():
    cfg = make_config({"model": "tiny"})
    model = MultitaskModel(load_encoder(resolve_model("tiny")), cfg)
    ids = torch.tensor([[101, 7592, 102, 0], [101, 7592, 2088, 102]])
    inputs = [{"input_ids": ids, "attention_mask": (ids > 0).long(), "token_type_ids": torch.zeros_like(ids)}]
    out = {t: model(t, inputs) for t in cfg.tasks}
    assert out["sst"].shape == (2, 5) and out["para"].shape == (2,) and out["sts"].shape == (2,)
    assert task_loss("sst", out["sst"], torch.tensor([0.0, 4.0])) > 0
    assert predictions("para", torch.tensor([-1.0, 2.0])).tolist() == [0, 1]
    assert predictions("sst", out["sst"]).dtype == torch.long
