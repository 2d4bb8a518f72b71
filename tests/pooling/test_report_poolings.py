"""The reports' poolings: BERT's pooler (000, 002, 004), 002's attention decoder, 001's CNN-BiLSTM."""

import math

import pytest
import torch

from mtsearch.config import make_config
from mtsearch.models.encoder import load_encoder, resolve_model
from mtsearch.models.multitask import MultitaskModel, needs_pooler
from mtsearch.pooling import POOLING

H = 8


def _create(name, args, hidden_size=H, **context):
    return POOLING.create(
        name, POOLING.parse_args(name, args, "pooling_args"), hidden_size=hidden_size, **context
    )


# ------------------------------------------------------------------------ the pooler
def test_pooler_pooling_is_the_encoders_own_pooler_shared_by_every_task():
    cfg = make_config({"model": "tiny", "pooling": "pooler"})
    assert needs_pooler(cfg) and not needs_pooler(make_config({"model": "tiny"}))
    encoder = load_encoder(resolve_model("tiny"), seed=0, pooler=needs_pooler(cfg))
    model = MultitaskModel(encoder, cfg).eval()
    ids = torch.randint(1000, 3000, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    out = encoder(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    pooled = model.pooling["sst"](out.last_hidden_state, mask)
    assert torch.allclose(pooled, out.pooler_output)  # tanh(W h_[CLS] + b), the encoder's layer
    # one copy, the encoder's: no pooling parameter of its own, the checkpoint key under encoder.
    assert not list(model.pooling.parameters())
    assert "encoder.pooler.dense.weight" in model.state_dict()
    assert not any(k.startswith("pooling.") for k in model.state_dict())
    ids_shared = {id(p) for p in model.shared_parameters()}
    assert all(id(p) in ids_shared for p in encoder.pooler.parameters())


def test_minilm_keeps_its_checkpoints_pooler_weights():
    from safetensors import safe_open

    source = resolve_model("minilm")
    encoder = load_encoder(source, pooler=True)
    with safe_open(f"{source.location}/model.safetensors", "pt") as f:
        stored = f.get_tensor("pooler.dense.weight")
    assert torch.equal(encoder.pooler.dense.weight.detach(), stored)
    assert getattr(load_encoder(source), "pooler", None) is None  # left out unless asked for


def test_a_pooling_that_reads_the_pooler_refuses_an_encoder_without_one():
    from mtsearch.errors import ConfigError

    cfg = make_config({"model": "tiny", "pooling": "pooler"})
    with pytest.raises(ConfigError, match="reads the encoder's pooled output"):
        MultitaskModel(load_encoder(resolve_model("tiny"), seed=0), cfg)


# ------------------------------------------------------------------- attention decoder
def test_attention_decoder_by_hand():
    # H = 2, one head, every projection the identity, query = the [CLS] state.
    dec = _create("attention_decoder", {"query": "cls", "heads": 1, "projection": False}, hidden_size=2)
    with torch.no_grad():
        for lin in (dec.q, dec.k, dec.v, dec.out):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]], [[0.0, 2.0], [1.0, 0.0], [5.0, 5.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    # row 0: q = (1, 0); scores (1, 0) / sqrt(2); row 1: q = (0, 2); scores (4, 0) / sqrt(2)
    w0 = torch.softmax(torch.tensor([1.0, 0.0]) / math.sqrt(2), 0)
    w1 = torch.softmax(torch.tensor([4.0, 0.0]) / math.sqrt(2), 0)
    weights = dec.weights(hidden, mask)
    assert torch.allclose(weights[0, 0, :2], w0) and torch.allclose(weights[1, 0, :2], w1)
    assert float(weights[:, :, 2].abs().max()) == 0.0  # padding
    expected = torch.stack(
        [w0[0] * hidden[0, 0] + w0[1] * hidden[0, 1], w1[0] * hidden[1, 0] + w1[1] * hidden[1, 1]]
    )
    assert torch.allclose(dec(hidden, mask), expected)


def test_the_decoders_query_depends_on_the_input_unlike_the_learned_query():
    torch.manual_seed(0)
    dec = _create("attention_decoder", {"query": "pooler", "heads": 2}).eval()
    learned = _create("attention", {})
    with torch.no_grad():
        learned.query.normal_()
    hidden = torch.randn(1, 5, H).repeat(2, 1, 1)
    hidden[1, 0] += 3.0  # only the [CLS] state differs: same tokens to attend over at 1..4
    mask = torch.ones(2, 5, dtype=torch.long)
    q = dec.queries(hidden, mask)
    assert not torch.allclose(q[0], q[1])
    w = dec.weights(hidden, mask)
    assert w.shape == (2, 2, 5) and torch.allclose(w.sum(-1), torch.ones(2, 2))

    def relative(weights):  # the weights of tokens 1..4 (the same in both rows), renormalised
        return weights[..., 1:] / weights[..., 1:].sum(-1, keepdim=True)

    assert not torch.allclose(relative(w[0]), relative(w[1]), atol=1e-4)
    # the learned query scores tokens 1..4 the same way for both rows
    lw = learned.weights(hidden, mask)
    assert torch.allclose(relative(lw[0]), relative(lw[1]), atol=1e-6)


def test_decoder_heads_default_to_the_encoders_and_must_divide_the_width():
    encoder = load_encoder(resolve_model("tiny"), seed=0, pooler=True)
    dec = _create("attention_decoder", {}, hidden_size=64, encoder=encoder)
    assert dec.heads == encoder.config.num_attention_heads == 2
    with pytest.raises(ValueError, match="3 heads do not divide the hidden size 8"):
        _create("attention_decoder", {"heads": 3})
    cfg = make_config({"model": "tiny", "pooling": "attention_decoder"})
    model = MultitaskModel(load_encoder(resolve_model("tiny"), seed=0, pooler=needs_pooler(cfg)), cfg)
    # decoders share no weights (the pooler they read is the encoder's)
    assert model.pooling["sst"].q.weight is not model.pooling["para"].q.weight


# ---------------------------------------------------------------------- CNN-BiLSTM
def test_cnn_bilstm_of_001_unigrams_dropout_and_ngrams_into_the_bilstms():
    torch.manual_seed(0)
    args = {
        "kernel_sizes": [1, 2, 3, 4],
        "filters": 3,
        "lstm_hidden": 2,
        "dropout": 0.5,
        "lstm_input": "ngrams",
    }
    pool = _create("cnn_bilstm", args)
    assert [c.kernel_size[0] for c in pool.convs] == [1, 2, 3, 4]
    assert pool.out_dim == H + 4 * 3 + 4 * 2 * 2 and all(lstm.input_size == 3 for lstm in pool.lstms)
    hidden = torch.randn(1, 6, H)
    mask = torch.ones(1, 6, dtype=torch.long)
    pool.eval()
    out = pool(hidden, mask)
    # by hand (one unpadded input): mean; per width the max of ReLU(conv) over the windows
    # starting on a token (zeros past the end); per width a BiLSTM over those windows' features
    x = torch.nn.functional.pad(hidden.transpose(1, 2), (0, 3))
    parts, feats = [hidden.mean(1)], []
    for conv in pool.convs:
        k = conv.kernel_size[0]
        f = torch.relu(conv(x[:, :, : 6 + k - 1]))[:, :, :6]
        feats.append(f)
        parts.append(f.max(-1).values)
    for lstm, f in zip(pool.lstms, feats, strict=True):
        _, (h_n, _) = lstm(f.transpose(1, 2))
        parts.append(torch.cat([h_n[0], h_n[1]], -1))
    assert torch.allclose(out, torch.cat(parts, -1), atol=1e-6)
    # dropout on the n-grams in training only
    pool.train()
    torch.manual_seed(1)
    assert not torch.allclose(pool(hidden, mask), out)


def test_cnn_bilstm_defaults_are_the_pooling_of_before():
    pool = _create("cnn_bilstm", {})
    assert [c.kernel_size[0] for c in pool.convs] == [2, 3, 4] and pool.drop.p == 0.0
    assert pool.lstm.input_size == H  # one BiLSTM over the token states
