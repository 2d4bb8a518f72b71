"""The activation cache: exact, reused across runs, keyed by what the states depend on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtsearch.data import collate, load_split
from mtsearch.models.encoder import load_encoder, load_tokenizer, resolve_model
from mtsearch.models.layers import encoder_parts, hidden_after
from mtsearch.models.multitask import MultitaskModel, encode_for_model, task_loss
from mtsearch.records import read_metrics
from mtsearch.train import activation_cache as ac
from mtsearch.train import train
from mtsearch.train.optim import Freezer
from tests.helpers import tiny_config

CPU = torch.device("cpu")
#: cached vs uncached: the same float32 operations on differently padded batches
TOL = 1e-5


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model("tiny"))


def _model(config, seed: int = 0):
    model = MultitaskModel(load_encoder(resolve_model("tiny"), seed=seed), config)
    Freezer(model.encoder, config)
    return model


def _counting_builds(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = ac._build

    def counted(encoder, layers, segment, lines, path, *rest):
        calls.append(path.name)
        return real(encoder, layers, segment, lines, path, *rest)

    monkeypatch.setattr(ac, "_build", counted)
    return calls


@pytest.mark.parametrize(
    "pair_mode, freeze",
    [("concat", {"freeze_layers": 1}), ("separate", {"freeze_layers": 1}), ("ensemble", {"freeze_layers": 1}),
     ("concat", {"frozen_encoder": True})],
)  # fmt: skip
def test_cached_forward_equals_the_full_forward(small_data_dir, runs, tokenizer, pair_mode, freeze):
    config = tiny_config(small_data_dir, pair_mode=pair_mode, **freeze)
    model = _model(config)
    depth = 1 if "freeze_layers" in freeze else 2
    # train subsets (40 of the file's rows): the cache covers the file, the split maps into it
    splits = {t: load_split(t, "train", small_data_dir, limit=40, seed=3) for t in config.tasks}
    plain = {t: encode_for_model(s, tokenizer, config) for t, s in splits.items()}
    cached = {t: encode_for_model(s, tokenizer, config) for t, s in splits.items()}
    report = ac.prepare(config, model.encoder, depth, resolve_model("tiny"), tokenizer,
                        [(splits[t], cached[t]) for t in config.tasks], CPU)  # fmt: skip
    assert report.skipped == [] and len(report.built) + len(report.reused) == sum(
        len(e.segments) for e in cached.values()
    )
    idx = np.array([0, 5, 7, 39, 12, 21])
    for task in config.tasks:
        a, b = collate(plain[task], idx), collate(cached[task], idx)
        assert all("cached_hidden" not in seg for seg in a["inputs"])
        assert all(int(seg["cached_layer"]) == depth for seg in b["inputs"])
        model.eval()
        with torch.no_grad():
            diff = (model(task, a["inputs"]) - model(task, b["inputs"])).abs().max()
        assert diff <= TOL, (task, float(diff))
        # Training mode: the frozen layers draw no dropout, so with the same seed the layers
        # above draw the same masks on both paths; outputs and gradients agree.
        model.train()
        grads = []
        for batch in (a, b):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(11)
            loss = task_loss(task, model(task, batch["inputs"]), batch["labels"], model.loss_options)
            loss.backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys() and grads[0]
        for name, g in grads[0].items():
            assert torch.allclose(g, grads[1][name], atol=TOL, rtol=1e-4), (task, name)


def test_stored_states_are_the_lower_layers_output(small_data_dir, runs, tokenizer, tmp_path):
    config = tiny_config(small_data_dir, freeze_layers=1)
    model = _model(config)
    split = load_split("sst", "dev", small_data_dir)
    enc = encode_for_model(split, tokenizer, config)
    ac.attach(model.encoder, 1, "id", "tok", 64, [(split, enc)], lambda s: None, device=CPU, progress=False,
              root=tmp_path)  # fmt: skip
    states = enc.hidden["a"]
    assert isinstance(states.flat, np.memmap) and states.flat.dtype == np.float32  # read memory-mapped
    seg = enc.segments["a"]
    for i in (0, 17, len(enc) - 1):
        ids = torch.from_numpy(seg.input_ids[seg.offsets[i] : seg.offsets[i + 1]].astype(np.int64))[None]
        x = {
            "input_ids": ids,
            "token_type_ids": torch.zeros_like(ids),
            "attention_mask": torch.ones_like(ids),
        }
        with torch.no_grad():
            want = hidden_after(model.encoder, x, 1)[0].numpy()
        got = np.asarray(states.flat[seg.offsets[i] : seg.offsets[i + 1]])
        assert np.allclose(got, want, atol=TOL)


def test_second_run_reuses_the_cache_and_trains_the_same(small_data_dir, runs, monkeypatch, tmp_path):
    monkeypatch.setenv("MTSEARCH_CACHE", str(tmp_path / "cache"))  # this test's own, empty cache
    calls = _counting_builds(monkeypatch)
    common = dict(freeze_layers=1, max_steps=4, eval_every=2, train_limit=64)
    first = train(tiny_config(small_data_dir, name="first", **common))
    assert len(calls) == 6  # 3 tasks x (train, dev), one segment each with pair_mode concat
    second = train(tiny_config(small_data_dir, name="second", **common))
    assert len(calls) == 6  # nothing recomputed
    # another subset of the same files (train_limit, seed) still reads the same entries
    train(tiny_config(small_data_dir, name="third", **{**common, "train_limit": 32, "seed": 0}))
    assert len(calls) == 6
    envs = [
        json.loads((r.run_dir / "env.json").read_text())["model"]["activation_cache"] for r in (first, second)
    ]
    assert len(envs[0]["built"]) == 6 and envs[0]["reused"] == [] and envs[0]["build_seconds"] > 0
    assert envs[1]["built"] == [] and sorted(envs[1]["reused"]) == sorted(envs[0]["built"])
    assert sorted(
        p.name for p in (tmp_path / "cache" / "activations").iterdir() if not p.name.startswith(".")
    ) == sorted(envs[0]["built"])

    uncached = train(tiny_config(small_data_dir, name="uncached", activation_cache=False, **common))
    rows = [
        [r for r in read_metrics(x.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
        for x in (first, second, uncached)
    ]
    assert [r["train_loss"] for r in rows[0]] == [r["train_loss"] for r in rows[1]]
    for cached_row, plain_row in zip(rows[0], rows[2], strict=True):
        for part in ("train_loss", "dev_loss"):
            assert cached_row[part] == pytest.approx(plain_row[part], rel=1e-4), part


def test_key_follows_depth_max_length_and_the_tiny_seed(
    small_data_dir, runs, tokenizer, tmp_path, monkeypatch
):
    calls = _counting_builds(monkeypatch)
    source = resolve_model("tiny")

    def entry(k: int = 1, max_length: int = 64, seed: int = 0) -> tuple[str, int]:
        config = tiny_config(small_data_dir, freeze_layers=k, max_length=max_length, seed=seed, tasks=["sst"])
        split = load_split("sst", "dev", small_data_dir)
        enc = encode_for_model(split, tokenizer, config)
        model = _model(config, seed=seed)
        before = len(calls)
        ident = ac.model_identity(model.encoder, k, source.kind, seed)
        report = ac.attach(model.encoder, k, ident, "tok", max_length, [(split, enc)], lambda s: None,
                           device=CPU, progress=False, root=tmp_path)  # fmt: skip
        return (report.built + report.reused)[0], len(calls) - before

    base, built = entry()
    assert built == 1
    assert entry() == (base, 0)  # same key: reused, not rebuilt
    others = [entry(k=2), entry(max_length=32), entry(seed=1)]
    assert all(n == 1 for _, n in others)
    assert len({base, *(name for name, _ in others)}) == 4


def test_identity_hashes_only_the_frozen_weights():
    enc = load_encoder(resolve_model("tiny"), seed=0)
    parts = encoder_parts(enc)
    base = ac.model_identity(enc, 1, "folder", 0)
    assert ac.model_identity(enc, 1, "folder", 5) == base  # a pretrained model: the seed is no part of it
    assert ac.model_identity(enc, 1, "tiny", 5) != ac.model_identity(enc, 1, "tiny", 0)
    with torch.no_grad():
        parts.layers[1].output.dense.weight.add_(1.0)  # above k = 1: the states do not depend on it
    assert ac.model_identity(enc, 1, "folder", 0) == base
    with torch.no_grad():
        parts.layers[0].output.dense.weight.add_(1.0)
    assert ac.model_identity(enc, 1, "folder", 0) != base


def test_an_unreadable_entry_is_rebuilt(small_data_dir, runs, tokenizer, tmp_path, monkeypatch):
    calls = _counting_builds(monkeypatch)
    config = tiny_config(small_data_dir, freeze_layers=1, tasks=["sst"])
    model = _model(config)
    split = load_split("sst", "dev", small_data_dir)

    def attach():
        enc = encode_for_model(split, tokenizer, config)
        ac.attach(model.encoder, 1, "id", "tok", 64, [(split, enc)], lambda s: None, device=CPU, progress=False,
                  root=tmp_path)  # fmt: skip
        return enc

    attach()
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    (entry / "meta.json").write_text("{broken")
    enc = attach()
    assert len(calls) == 2 and enc.hidden is not None
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]  # no temp dirs left


def test_rows_joined_from_several_files_stay_uncached(small_data_dir, runs, tokenizer, tmp_path, monkeypatch):
    from mtsearch.data import concat_encoded

    calls = _counting_builds(monkeypatch)
    config = tiny_config(small_data_dir, freeze_layers=1, tasks=["sst"])
    model = _model(config)
    split = load_split("sst", "dev", small_data_dir)
    one = encode_for_model(split, tokenizer, config)
    joined = concat_encoded(one, encode_for_model(split, tokenizer, config))  # as extra_data joins files
    report = ac.attach(model.encoder, 1, "id", "tok", 64, [(split, joined)], lambda s: None, device=CPU,
                       progress=False, root=tmp_path)  # fmt: skip
    assert report.skipped == ["sst-dev"] and joined.hidden is None and calls == []
