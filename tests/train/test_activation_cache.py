"""The activation cache: exact, reused across runs, keyed by what the states depend on."""

from __future__ import annotations

import json
import os

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
    real = ac._build_chunk

    def counted(encoder, layers, segment, lines, path, *rest):
        calls.append(path.name)
        return real(encoder, layers, segment, lines, path, *rest)

    monkeypatch.setattr(ac, "_build_chunk", counted)
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
                        [(splits[t], cached[t], None) for t in config.tasks], CPU)  # fmt: skip
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
    ac.attach(
        model.encoder, 1, "id", "tok", 64, [(split, enc, None)], device=CPU, progress=False, root=tmp_path
    )
    states = enc.hidden["a"]
    (flat,) = states.flats
    assert isinstance(flat, np.memmap) and flat.dtype == np.float32  # read memory-mapped
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
        got = np.asarray(flat[states.start[i] : states.start[i] + states.length[i]])
        assert np.allclose(got, want, atol=TOL)


def _cached_lines(entry) -> list[int]:
    """The file lines an activation-cache entry holds, over all its chunks."""
    index = json.loads((entry / "index.json").read_text())["body"]
    return sorted(int(x) for c in index["chunks"] for x in np.load(entry / f"{c['name']}.rows.npy")[:, 0])


def test_a_run_caches_only_the_rows_it_reads_and_later_runs_extend(
    small_data_dir, runs, monkeypatch, tmp_path
):
    monkeypatch.setenv("MTSEARCH_CACHE", str(tmp_path / "cache"))  # this test's own, empty cache
    calls = _counting_builds(monkeypatch)
    common = dict(freeze_layers=1, max_steps=4, eval_every=2, train_limit=64, eval_limit=50)
    first = train(tiny_config(small_data_dir, name="first", **common))
    assert len(calls) == 6  # 3 tasks x (train, dev), one segment each with pair_mode concat
    root = tmp_path / "cache" / "activations"
    entries = {p.name.split("-k1-")[0]: p for p in root.iterdir() if not p.name.startswith(".")}
    # the training subset of the run's seed and the 50 dev rows periodic evaluation scores, no more
    for task in ("sst", "para", "sts"):
        subset = load_split(task, "train", small_data_dir, limit=64, seed=0)
        assert _cached_lines(entries[f"{task}-train-{'a' if task == 'sst' else 'ab'}"]) == [
            e.line for e in subset.examples
        ]
        assert len(_cached_lines(entries[f"{task}-dev-{'a' if task == 'sst' else 'ab'}"])) == 50
    second = train(tiny_config(small_data_dir, name="second", **common))
    assert len(calls) == 6  # nothing recomputed
    # another subset (a larger limit: the seed is part of the tiny model's identity) computes
    # only the rows the cache lacks
    third = train(tiny_config(small_data_dir, name="third", **{**common, "train_limit": 80}))
    assert len(calls) == 9  # one new chunk per training entry; the dev rows are the same
    fresh = sum(
        len({e.line for e in load_split(t, "train", small_data_dir, limit=80, seed=0).examples}
            - {e.line for e in load_split(t, "train", small_data_dir, limit=64, seed=0).examples})
        for t in ("sst", "para", "sts")
    )  # fmt: skip
    envs = [
        json.loads((r.run_dir / "env.json").read_text())["model"]["activation_cache"]
        for r in (first, second, third)
    ]
    assert len(envs[0]["built"]) == 6 and envs[0]["reused"] == [] and envs[0]["build_seconds"] > 0
    assert envs[0]["rows_built"] == 3 * 64 + 3 * 50
    assert envs[1]["built"] == [] and sorted(envs[1]["reused"]) == sorted(envs[0]["built"])
    assert envs[2]["rows_built"] == fresh and len(envs[2]["built"]) == 3
    assert envs[2]["disk_bytes"] > envs[0]["disk_bytes"] > 0
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == sorted(envs[0]["built"])

    uncached = train(tiny_config(small_data_dir, name="uncached", activation_cache=False, **common))
    rows = [
        [r for r in read_metrics(x.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
        for x in (first, second, uncached)
    ]
    assert [r["train_loss"] for r in rows[0]] == [r["train_loss"] for r in rows[1]]
    for cached_row, plain_row in zip(rows[0], rows[2], strict=True):
        for part in ("train_loss", "dev_loss"):
            assert cached_row[part] == pytest.approx(plain_row[part], rel=1e-4), part


def test_an_extended_entry_gives_the_full_forward(small_data_dir, runs, tokenizer, tmp_path, monkeypatch):
    calls = _counting_builds(monkeypatch)
    config = tiny_config(small_data_dir, freeze_layers=1, pair_mode="separate", tasks=["sts"])
    model = _model(config).eval()

    def cached(seed, rows=None):
        split = load_split("sts", "train", small_data_dir, limit=50, seed=seed)
        enc = encode_for_model(split, tokenizer, config)
        ac.attach(model.encoder, 1, "id", "tok", 64, [(split, enc, rows)], device=CPU, progress=False,
                  root=tmp_path)  # fmt: skip
        return enc

    cached(1)
    assert len(calls) == 2  # segments a and b
    enc = cached(2)  # overlaps seed 1's rows: the rest is computed into a second chunk per segment
    assert len(calls) == 4 and all(len(h.flats) == 2 for h in enc.hidden.values())
    assert all(set(np.unique(h.chunk)) == {0, 1} for h in enc.hidden.values())  # rows from both chunks
    plain = encode_for_model(load_split("sts", "train", small_data_dir, limit=50, seed=2), tokenizer, config)
    idx = np.arange(len(enc))
    for batch in (idx[:17], idx[17:], idx[::-3]):
        a, b = collate(plain, batch), collate(enc, batch)
        assert all("cached_hidden" in seg for seg in b["inputs"])
        with torch.no_grad():
            assert (model("sts", a["inputs"]) - model("sts", b["inputs"])).abs().max() <= TOL
    # only some rows asked for: the others are not cached, and batches holding them run the encoder
    part = cached(3, rows=np.arange(10))
    h = part.hidden["a"]
    assert h.covers(np.arange(10)) and not h.covers(np.arange(len(part)))
    plain = encode_for_model(load_split("sts", "train", small_data_dir, limit=50, seed=3), tokenizer, config)
    mixed = collate(part, np.arange(len(part)))
    assert all("cached_hidden" not in seg for seg in mixed["inputs"])
    with torch.no_grad():
        full = model("sts", collate(plain, np.arange(len(part)))["inputs"])
        assert (model("sts", mixed["inputs"]) - full).abs().max() <= TOL


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
        report = ac.attach(model.encoder, k, ident, "tok", max_length, [(split, enc, None)], device=CPU,
                           progress=False, root=tmp_path)  # fmt: skip
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
        ac.attach(model.encoder, 1, "id", "tok", 64, [(split, enc, None)], device=CPU, progress=False,
                  root=tmp_path)  # fmt: skip
        return enc

    attach()
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    (entry / "index.json").write_text("{broken")
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
    report = ac.attach(model.encoder, 1, "id", "tok", 64, [(split, joined, None)], device=CPU, progress=False,
                       root=tmp_path)  # fmt: skip
    assert report.skipped == ["sst-dev"] and joined.hidden is None and calls == []


def _damage(path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "zero bytes":  # what a power loss after an un-fsynced rename leaves
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # same size, bytes flipped in the middle (inside the stored floats)
        damaged = bytearray(data)
        mid = len(data) // 2
        damaged[mid : mid + 16] = bytes(b ^ 0xFF for b in damaged[mid : mid + 16])
        path.write_bytes(bytes(damaged))


def _entries(root):
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _chunk_files(entry, suffix: str):
    return sorted(entry.glob(f"*.{suffix}.npy"))


@pytest.mark.parametrize("kind", ["zero bytes", "truncated", "flipped bytes"])
@pytest.mark.parametrize("part", ["hidden", "rows", "index"])
def test_a_damaged_entry_is_rebuilt_with_one_warning(
    small_data_dir, runs, tokenizer, tmp_path, monkeypatch, caplog, kind, part
):
    config = tiny_config(small_data_dir, freeze_layers=1, tasks=["sst"])
    model = _model(config)
    split = load_split("sst", "dev", small_data_dir)

    def attach():
        enc = encode_for_model(split, tokenizer, config)
        ac.attach(model.encoder, 1, "id", "tok", 64, [(split, enc, None)], device=CPU, progress=False,
                  root=tmp_path)  # fmt: skip
        return enc

    clean = attach()
    h = clean.hidden["a"]
    want = [
        np.asarray(h.flats[h.chunk[i]][h.start[i] : h.start[i] + h.length[i]]).copy()
        for i in range(len(clean))
    ]
    (entry,) = _entries(tmp_path)
    target = entry / "index.json" if part == "index" else _chunk_files(entry, part)[0]
    _damage(target, kind)
    ac._verified.clear()  # as a new process: nothing verified yet
    calls = _counting_builds(monkeypatch)
    with caplog.at_level("WARNING", logger="mtsearch.train"):
        enc = attach()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and entry.name in warnings[0], warnings
    assert len(calls) == 1  # every row computed again, once
    h = enc.hidden["a"]
    for i in range(len(enc)):
        assert np.array_equal(h.flats[h.chunk[i]][h.start[i] : h.start[i] + h.length[i]], want[i])
    # only the new chunk and the index are left
    assert sorted(p.name.split(".", 1)[1] for p in entry.iterdir()) == ["hidden.npy", "json", "rows.npy"]
    caplog.clear()
    ac._verified.clear()
    with caplog.at_level("WARNING", logger="mtsearch.train"):
        attach()
    assert not caplog.records and len(calls) == 1  # repaired on disk


def test_leftovers_of_killed_builds_are_removed(small_data_dir, runs, tokenizer, tmp_path, monkeypatch):
    from mtsearch import cachefiles

    config = tiny_config(small_data_dir, freeze_layers=1, tasks=["sst"])
    model = _model(config)
    split = load_split("sst", "dev", small_data_dir)

    def attach(root, rows=None):
        enc = encode_for_model(split, tokenizer, config)
        ac.attach(
            model.encoder, 1, "id", "tok", 64, [(split, enc, rows)], device=CPU, progress=False, root=root
        )
        return enc

    attach(tmp_path / "a", rows=np.arange(10))
    (entry,) = _entries(tmp_path / "a")
    past = cachefiles.process_start_time() - 60
    # before this process: a killed old-layout build folder, a killed chunk build inside an entry,
    # and a chunk whose build was killed after its rename but before the index named it
    old_dir = tmp_path / "a" / f".{entry.name}.k1ll3d.part"
    old_dir.mkdir()
    (old_dir / "hidden.npy").write_bytes(b"\0" * 1000)
    chunk_part = entry / ".c1.hidden.npy.x.part"
    chunk_part.write_bytes(b"\0" * 1000)
    unnamed = entry / "c2.hidden.npy"
    unnamed.write_bytes(b"\0" * 1000)
    young = entry / ".c3.hidden.npy.y.part"  # a concurrent build's, newer than this process
    young.write_bytes(b"\0" * 10)
    for p in (old_dir, chunk_part, unnamed):
        os.utime(p, (past, past))
    cachefiles._swept.discard(tmp_path / "a")  # as at this cache's first use in a new process
    attach(tmp_path / "a", rows=np.arange(10))  # all cached: nothing built, stale parts removed at open
    assert not old_dir.exists() and not chunk_part.exists()
    assert unnamed.exists() and young.exists()  # not a part / too young: only a build of the entry tidies
    attach(tmp_path / "a", rows=np.arange(20))  # extends the entry: under its lock, leftovers go
    assert not unnamed.exists() and not young.exists()
    names = {p.name for p in entry.iterdir()}
    assert names == {"index.json"} | {f"{c}.{s}" for c in {n.split(".")[0] for n in names if n.startswith("c")}
                                      for s in ("hidden.npy", "rows.npy")}  # fmt: skip
    assert len(names) == 5  # the index and two chunks


def test_stale_parts_of_an_entry_being_built_are_left_alone(tmp_path):
    from mtsearch import cachefiles

    entry = tmp_path / "sst-dev-a-k1-0"
    entry.mkdir()
    part = entry / ".c1.hidden.npy.x.part"
    part.write_bytes(b"in progress")
    past = cachefiles.process_start_time() - 60
    os.utime(part, (past, past))
    with cachefiles.entry_lock(entry):  # a concurrent process is extending the entry
        import subprocess
        import sys

        code = (
            "import sys; from pathlib import Path; from mtsearch import cachefiles;"
            "from mtsearch.train.activation_cache import _owner;"
            "root = Path(sys.argv[1]); print(cachefiles.remove_stale_parts(root, _owner(root)))"
        )
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert part.exists() and out.stdout.strip() == "0"


def test_a_run_on_damaged_caches_scores_as_on_clean_ones(small_data_dir, runs, monkeypatch, tmp_path, caplog):
    """Both caches (token ids, activations), each kind of damage: one warning per damaged
    file, the damaged entries rebuilt, and the run's scores those of a clean cache."""
    from mtsearch import cachefiles

    cache = tmp_path / "cache"
    monkeypatch.setenv("MTSEARCH_CACHE", str(cache))
    common = dict(freeze_layers=1, max_steps=4, eval_every=2, train_limit=64, eval_limit=50)
    clean = train(tiny_config(small_data_dir, name="clean", **common))
    tokens = sorted((cache / "tokens").glob("*.npz"))
    hidden = [f for e in _entries(cache / "activations") for f in _chunk_files(e, "hidden")]
    assert len(tokens) == 6 and len(hidden) == 6
    for n, kind in enumerate(["zero bytes", "truncated", "flipped bytes", "stale part"]):
        if kind == "stale part":  # builds killed before this process: big leftovers, no damage
            past = cachefiles.process_start_time() - 60
            leftovers = [tokens[0].parent / f".{tokens[0].name}.k1ll3d.part"]
            leftovers += [hidden[0].parent / f".{hidden[0].name}.k1ll3d.part"]
            for p in leftovers:
                p.write_bytes(b"\0" * 100_000)
                os.utime(p, (past, past))
            for root in (cache / "tokens", cache / "activations"):
                cachefiles._swept.discard(root)  # as at the caches' first use in a new process
        else:
            for f in (*tokens, *hidden):
                _damage(f, kind)
        ac._verified.clear()
        caplog.clear()
        with caplog.at_level("WARNING"):
            result = train(tiny_config(small_data_dir, name=f"damaged-{n}", **common))
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        if kind == "stale part":
            assert warnings == [] and not any(p.exists() for p in leftovers)
        else:
            # one warning per damaged file, naming it (an activation chunk by its name)
            for name in [f.name for f in tokens] + [f.name.split(".")[0] for f in hidden]:
                assert sum(name in w for w in warnings) == 1, (kind, name, warnings)
            assert len(warnings) == len(tokens) + len(hidden), warnings
        assert result.status == "finished"
        assert result.best["scores"] == pytest.approx(clean.best["scores"], abs=1e-6), kind
        assert result.best["overall"] == pytest.approx(clean.best["overall"], abs=1e-6)
        tokens = sorted((cache / "tokens").glob("*.npz"))
        hidden = [f for e in _entries(cache / "activations") for f in _chunk_files(e, "hidden")]
        assert len(tokens) == 6 and len(hidden) == 6  # rebuilt in place: no duplicate entries
