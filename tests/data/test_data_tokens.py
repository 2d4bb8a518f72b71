"""Token caching, pair modes, truncation and per-batch padding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mtsearch.data import collate, encode_split, load_split, tokenizer_identity

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _forbid_calls(monkeypatch, tokenizer):
    def boom(*args, **kwargs):
        raise AssertionError("the tokenizer was called although the cache should serve")

    monkeypatch.setattr(type(tokenizer), "__call__", boom)


def test_cache_written_then_reused_without_calling_the_tokenizer(tokenizer, tmp_path: Path, monkeypatch):
    split = load_split("sst", "train", FIXTURES, warn=False)
    first = encode_split(split, tokenizer, 32, cache_dir=tmp_path)
    assert not first.from_cache
    assert first.cache_path.parent == tmp_path and first.cache_path.suffix == ".npz"
    # atomic: no temporary file left, only the entry (and its build lock)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [first.cache_path.name]
    _forbid_calls(monkeypatch, tokenizer)
    again = encode_split(split, tokenizer, 32, cache_dir=tmp_path)
    assert again.from_cache
    for name, seg in first.segments.items():
        assert np.array_equal(seg.input_ids, again.segments[name].input_ids)
        assert np.array_equal(seg.offsets, again.segments[name].offsets)
    assert again.segments["a"].input_ids.dtype == np.int32
    assert again.segments["a"].token_type_ids.dtype == np.int8
    assert again.segments["a"].offsets.dtype == np.int64


def test_default_cache_location_and_key(tokenizer, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MTSEARCH_CACHE", str(tmp_path / "c"))
    split = load_split("sts", "dev", FIXTURES)
    a = encode_split(split, tokenizer, 32)
    assert a.cache_path.parent == tmp_path / "c" / "tokens" and a.cache_path.is_file()
    b = encode_split(split, tokenizer, 16)
    c = encode_split(split, tokenizer, 32, pair_mode="separate")
    assert len({a.cache_path, b.cache_path, c.cache_path}) == 3


def test_subset_reuses_the_whole_file_cache(tokenizer, tmp_path: Path, monkeypatch):
    sub = load_split("sst", "train", FIXTURES, warn=False, limit=3, seed=4)
    enc_sub = encode_split(sub, tokenizer, 32, cache_dir=tmp_path)  # encodes and caches the whole file
    assert len(enc_sub) == 3 and enc_sub.ids == [e.id for e in sub.examples]
    _forbid_calls(monkeypatch, tokenizer)
    full = encode_split(load_split("sst", "train", FIXTURES, warn=False), tokenizer, 32, cache_dir=tmp_path)
    assert full.from_cache and len(full) == 7
    rows = [full.ids.index(i) for i in enc_sub.ids]
    seg_full, seg_sub = full.segments["a"], enc_sub.segments["a"]
    for k, r in enumerate(rows):
        a = seg_full.input_ids[seg_full.offsets[r] : seg_full.offsets[r + 1]]
        b = seg_sub.input_ids[seg_sub.offsets[k] : seg_sub.offsets[k + 1]]
        assert np.array_equal(a, b)
    again = encode_split(
        load_split("sst", "train", FIXTURES, warn=False, limit=3, seed=9), tokenizer, 32, cache_dir=tmp_path
    )
    assert again.from_cache


def test_corrupt_cache_is_rebuilt(tokenizer, tmp_path: Path):
    split = load_split("sst", "dev", FIXTURES)
    enc = encode_split(split, tokenizer, 32, cache_dir=tmp_path)
    enc.cache_path.write_bytes(b"not a zip file")
    again = encode_split(split, tokenizer, 32, cache_dir=tmp_path)
    assert not again.from_cache
    assert np.array_equal(again.segments["a"].input_ids, enc.segments["a"].input_ids)
    assert encode_split(split, tokenizer, 32, cache_dir=tmp_path).from_cache


def test_concat_pairs_have_token_types_and_sep_positions(tokenizer, tmp_path: Path):
    split = load_split("para", "dev", FIXTURES, warn=False)
    enc = encode_split(split, tokenizer, 64, pair_mode="concat", cache_dir=tmp_path)
    assert list(enc.segments) == ["ab"]
    seg = enc.segments["ab"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for i, ex in enumerate(split.examples):
        ids = seg.input_ids[seg.offsets[i] : seg.offsets[i + 1]].tolist()
        types = seg.token_type_ids[seg.offsets[i] : seg.offsets[i + 1]].tolist()
        assert ids == tokenizer(ex.text_a, ex.text_b)["input_ids"]
        seps = [k for k, t in enumerate(ids) if t == sep]
        assert ids[0] == cls and len(seps) == 2 and seps[1] == len(ids) - 1
        assert types == [0] * (seps[0] + 1) + [1] * (len(ids) - seps[0] - 1)
    assert enc.labels.dtype == np.float32 and enc.labels.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_separate_gives_two_segments(tokenizer, tmp_path: Path):
    split = load_split("sts", "train", FIXTURES, warn=False)
    enc = encode_split(split, tokenizer, 64, pair_mode="separate", cache_dir=tmp_path)
    assert list(enc.segments) == ["a", "b"]
    for name, attr in (("a", "text_a"), ("b", "text_b")):
        seg = enc.segments[name]
        assert len(seg) == len(split)
        assert not seg.token_type_ids.any()
        for i, ex in enumerate(split.examples):
            got = seg.input_ids[seg.offsets[i] : seg.offsets[i + 1]].tolist()
            assert got == tokenizer(getattr(ex, attr))["input_ids"]
    assert np.array_equal(enc.lengths(), enc.segments["a"].lengths() + enc.segments["b"].lengths())
    single = encode_split(load_split("sst", "dev", FIXTURES), tokenizer, 64, "separate", cache_dir=tmp_path)
    assert list(single.segments) == ["a"]


def test_truncation_respects_max_length(tokenizer, tmp_path: Path):
    split = load_split("para", "dev", FIXTURES, warn=False)
    for mode in ("concat", "separate"):
        enc = encode_split(split, tokenizer, 8, pair_mode=mode, cache_dir=tmp_path)
        for seg in enc.segments.values():
            assert seg.lengths().max() <= 8
            ends = seg.offsets[1:] - 1
            assert (seg.input_ids[ends] == tokenizer.sep_token_id).all()
    enc = encode_split(split, tokenizer, 8, pair_mode="concat", cache_dir=tmp_path)
    ex = split.examples[1]
    ref = tokenizer(ex.text_a, ex.text_b, truncation="longest_first", max_length=8)["input_ids"]
    seg = enc.segments["ab"]
    assert seg.input_ids[seg.offsets[1] : seg.offsets[2]].tolist() == ref
    with pytest.raises(ValueError, match="pair_mode"):
        encode_split(split, tokenizer, 8, pair_mode="zip", cache_dir=tmp_path)


def test_collate_pads_to_batch_max_only(tokenizer, tmp_path: Path):
    split = load_split("sts", "train", FIXTURES, warn=False)
    enc = encode_split(split, tokenizer, 64, pair_mode="separate", cache_dir=tmp_path)
    idx = [3, 0, 1]
    batch = collate(enc, idx, pad_id=tokenizer.pad_token_id)
    assert batch["index"].tolist() == idx
    assert batch["labels"].dtype.is_floating_point
    assert batch["labels"].tolist() == pytest.approx([2.6, 4.8, 0.0])
    assert len(batch["inputs"]) == 2
    for name, inp in zip(("a", "b"), batch["inputs"], strict=True):
        lens = enc.segments[name].lengths()[idx]
        assert inp["input_ids"].shape == (3, lens.max())
        assert inp["attention_mask"].sum(1).tolist() == lens.tolist()
        assert (inp["input_ids"][inp["attention_mask"] == 0] == tokenizer.pad_token_id).all()
        assert inp["input_ids"].dtype == inp["attention_mask"].dtype == inp["token_type_ids"].dtype
        assert str(inp["input_ids"].dtype) == "torch.int64"
    shortest = int(np.argmin(enc.segments["a"].lengths()))
    one = collate(enc, [shortest], pad_id=0)["inputs"][0]
    assert one["input_ids"].shape[1] == enc.segments["a"].lengths()[shortest]
    assert one["attention_mask"].all()


def test_concat_batch_matches_tokenizer_padding(tokenizer, tmp_path: Path):
    split = load_split("para", "dev", FIXTURES, warn=False)
    enc = encode_split(split, tokenizer, 64, cache_dir=tmp_path)
    batch = collate(enc, [0, 1, 2, 3], pad_id=tokenizer.pad_token_id)
    ref = tokenizer(
        [e.text_a for e in split.examples],
        [e.text_b for e in split.examples],
        padding=True,
        return_tensors="pt",
    )
    (inp,) = batch["inputs"]
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert inp[key].tolist() == ref[key].tolist()


def test_test_split_has_no_labels(tokenizer, tmp_path: Path):
    enc = encode_split(load_split("sts", "test", FIXTURES), tokenizer, 32, cache_dir=tmp_path)
    assert enc.labels is None
    assert collate(enc, [0, 1])["labels"] is None


def test_tokenizer_identity_is_cached_per_object(tokenizer, monkeypatch):
    ident = tokenizer_identity(tokenizer)
    assert ident.startswith(type(tokenizer).__name__)

    def no_vocab(self):
        raise AssertionError("vocab hashed twice")

    monkeypatch.setattr(type(tokenizer), "get_vocab", no_vocab)
    assert tokenizer_identity(tokenizer) == ident


def test_single_sentence_modes_share_a_cache_and_empty_splits_work(tokenizer, tmp_path: Path, monkeypatch):
    split = load_split("sst", "dev", FIXTURES)
    a = encode_split(split, tokenizer, 32, "concat", cache_dir=tmp_path)
    _forbid_calls(monkeypatch, tokenizer)
    b = encode_split(split, tokenizer, 32, "separate", cache_dir=tmp_path)
    assert b.from_cache and b.cache_path == a.cache_path and b.pair_mode == "separate"
    empty = encode_split(load_split("sst", "dev", FIXTURES, limit=0), tokenizer, 32, cache_dir=tmp_path)
    assert len(empty) == 0 and empty.lengths().tolist() == []
    batch = collate(empty, [])
    assert batch["inputs"][0]["input_ids"].shape == (0, 0)


def _damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "zero bytes":  # what a power loss after an un-fsynced rename leaves
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # same size, bytes flipped in the middle (where the arrays are)
        damaged = bytearray(data)
        mid = len(data) // 2
        damaged[mid : mid + 16] = bytes(b ^ 0xFF for b in damaged[mid : mid + 16])
        path.write_bytes(bytes(damaged))


@pytest.mark.parametrize("kind", ["zero bytes", "truncated", "flipped bytes"])
def test_a_damaged_cache_file_is_encoded_again_with_one_warning(tokenizer, tmp_path: Path, caplog, kind):
    split = load_split("para", "dev", FIXTURES, warn=False)
    clean = encode_split(split, tokenizer, 32, cache_dir=tmp_path)
    _damage(clean.cache_path, kind)
    with caplog.at_level("WARNING", logger="mtsearch.data"):
        again = encode_split(split, tokenizer, 32, cache_dir=tmp_path)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(clean.cache_path) in warnings[0].getMessage()
    assert not again.from_cache
    for name, seg in clean.segments.items():
        for attr in ("input_ids", "token_type_ids", "offsets"):
            assert np.array_equal(getattr(seg, attr), getattr(again.segments[name], attr))
    caplog.clear()
    with caplog.at_level("WARNING", logger="mtsearch.data"):
        assert encode_split(split, tokenizer, 32, cache_dir=tmp_path).from_cache  # repaired on disk
    assert not caplog.records


def test_same_size_damage_is_caught_by_the_checksum_not_by_luck(tokenizer, tmp_path: Path, monkeypatch):
    # A flipped token id inside a stored array: the zip container may not notice, the checksum does.
    split = load_split("sst", "dev", FIXTURES)
    enc = encode_split(split, tokenizer, 32, cache_dir=tmp_path)
    with np.load(enc.cache_path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["a.input_ids"] = arrays["a.input_ids"].copy()
    arrays["a.input_ids"][3] += 1  # the old checksum is kept: a valid zip whose contents changed
    np.savez(enc.cache_path, **arrays)
    again = encode_split(split, tokenizer, 32, cache_dir=tmp_path)
    assert not again.from_cache and np.array_equal(again.segments["a"].input_ids, enc.segments["a"].input_ids)


def test_leftovers_of_killed_builds_are_removed(tokenizer, tmp_path: Path):
    from mtsearch import cachefiles

    split = load_split("sts", "dev", FIXTURES)
    path = encode_split(split, tokenizer, 32, cache_dir=tmp_path / "warm").cache_path
    name = path.name
    cache = tmp_path / "cache"
    cache.mkdir()
    # a build of this entry killed before this process started, one of another entry, and one
    # written "now" by a concurrent process (newer than this process: left alone at open)
    old = cache / f".{name}.k1ll3d.part"
    other = cache / ".sst-dev-single-32-0000.npz.x.part"
    young = cache / ".sts-train-concat-32-1111.npz.y.part"
    for p in (old, other, young):
        p.write_bytes(b"half written")
    past = cachefiles.process_start_time() - 60
    for p in (old, other):
        os.utime(p, (past, past))
    enc = encode_split(split, tokenizer, 32, cache_dir=cache)
    assert not old.exists() and not other.exists() and young.exists()
    assert not enc.from_cache and enc.cache_path.is_file()
    # the next build of an entry removes its own leftovers, however young
    fresh = cache / f".{name}.again.part"
    fresh.write_bytes(b"half written")
    enc.cache_path.unlink()
    encode_split(split, tokenizer, 32, cache_dir=cache)
    assert not fresh.exists() and young.exists()
