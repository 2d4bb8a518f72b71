"""Token ids computed once per (tokenizer, max length, pair mode, file) and kept on disk.

A search runs many trials over the same files; tokenizing them again for every trial
would cost more than a short trial itself. The cache stores the whole file's usable rows
(keyed by the file's md5), so runs that subsample with ``limit`` reuse it too, and holds
flat, unpadded arrays: padding is decided per batch by :func:`collate`.

A cache file is written aside and renamed after an fsync, carries a sha256 of its arrays
that every load checks, and is built under a per-file lock (:mod:`mtsearch.cachefiles`):
a damaged file (0 bytes after a power loss, truncated, bytes flipped) is encoded again
with one warning, and a killed build's temporary file is removed by the next one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtsearch import cachefiles, paths
from mtsearch.data.loaders import Split, parse_file
from mtsearch.faults import fault_point

log = logging.getLogger("mtsearch.data")

PAIR_MODES = ("concat", "separate")
#: bump when the cached layout or the tokenization rules change, so old files are ignored
CACHE_VERSION = 2  # 2: a checksum in every file
#: texts per tokenizer call: bounds the memory of the python lists the tokenizer returns
CHUNK = 4096

_identity_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_identity_by_id: dict[int, tuple[object, str]] = {}


def tokenizer_identity(tokenizer) -> str:
    """A stable id for what the tokenizer produces: class name + hash of vocab and casing."""
    try:
        cached = _identity_cache.get(tokenizer)
    except TypeError:  # not weak-referenceable: fall back to a strong, id-keyed entry
        hit = _identity_by_id.get(id(tokenizer))
        cached = hit[1] if hit and hit[0] is tokenizer else None
    if cached is not None:
        return cached
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    # Same vocab with different casing/accents rules gives different ids.
    init = getattr(tokenizer, "init_kwargs", {}) or {}
    rules = {k: init.get(k) for k in ("do_lower_case", "strip_accents", "tokenize_chinese_chars")}
    h.update(json.dumps(rules, sort_keys=True, default=str).encode())
    ident = f"{type(tokenizer).__name__}-{h.hexdigest()[:16]}"
    try:
        _identity_cache[tokenizer] = ident
    except TypeError:
        _identity_by_id[id(tokenizer)] = (tokenizer, ident)
    return ident


@dataclass
class Segment:
    """One model input per example, stored flat: example i is ``input_ids[offsets[i]:offsets[i+1]]``."""

    input_ids: np.ndarray  # int32
    token_type_ids: np.ndarray  # int8
    offsets: np.ndarray  # int64, len n + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def select(self, rows: np.ndarray) -> Segment:
        """The segment restricted to ``rows`` (in that order), still flat."""
        rows = np.asarray(rows, dtype=np.int64)
        lens = self.lengths()[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        gather = np.repeat(self.offsets[:-1][rows] - offsets[:-1], lens) + np.arange(offsets[-1])
        return Segment(self.input_ids[gather], self.token_type_ids[gather], offsets)


@dataclass
class EncodedSplit:
    task: str
    split: str
    ids: list[str]
    labels: np.ndarray | None
    #: ``{"a": ...}`` for single-sentence tasks, ``{"ab": ...}`` for concatenated pairs,
    #: ``{"a": ..., "b": ...}`` for pairs encoded separately; collate keeps this order
    segments: dict[str, Segment]
    pair_mode: str = "concat"
    max_length: int = 0
    cache_path: Path | None = None
    from_cache: bool = False
    lines: np.ndarray | None = field(default=None, repr=False)
    #: segment name -> cached hidden states of the frozen lower encoder layers, attached by
    #: mtsearch.train.activation_cache; collate then adds them to each batch input
    hidden: dict | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        """Real tokens per example summed over segments (for bucketing and padding stats)."""
        total = np.zeros(len(self), dtype=np.int64)
        for seg in self.segments.values():
            total += seg.lengths()
        return total


def _segment_names(inputs: str, pair_mode: str) -> list[str]:
    if inputs == "single":
        return ["a"]
    return ["ab"] if pair_mode == "concat" else ["a", "b"]


def _flatten(batches: list[list[list[int]]], dtype) -> np.ndarray:
    it = itertools.chain.from_iterable(itertools.chain.from_iterable(batches))
    return np.fromiter(it, dtype=dtype)


def _encode(tokenizer, texts_a: list[str], texts_b: list[str] | None, max_length: int) -> Segment:
    if not texts_a:
        empty = np.zeros(0, dtype=np.int64)
        return Segment(empty.astype(np.int32), empty.astype(np.int8), np.zeros(1, dtype=np.int64))
    ids: list[list[list[int]]] = []
    types: list[list[list[int]]] = []
    for start in range(0, len(texts_a), CHUNK):
        a = texts_a[start : start + CHUNK]
        kw = dict(
            add_special_tokens=True,
            truncation="longest_first" if texts_b is not None else True,
            max_length=max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=True,
        )
        if texts_b is not None:
            enc = tokenizer(a, texts_b[start : start + CHUNK], **kw)
        else:
            enc = tokenizer(a, **kw)
        ids.append(enc["input_ids"])
        types.append(enc["token_type_ids"])
    lens = np.fromiter((len(x) for batch in ids for x in batch), dtype=np.int64, count=len(texts_a))
    offsets = np.zeros(len(texts_a) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    return Segment(_flatten(ids, np.int32), _flatten(types, np.int8), offsets)


def _cache_file(cache_dir: Path, split: Split, ident: str, max_length: int, pair_mode: str) -> Path:
    key = json.dumps(
        {
            "v": CACHE_VERSION,
            "tokenizer": ident,
            "max_length": max_length,
            "pair_mode": pair_mode,
            "md5": split.md5,
            "task": split.task,
            "split": split.split,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir / f"{split.task}-{split.split}-{pair_mode}-{max_length}-{digest}.npz"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    return cachefiles.digest(
        b for name in sorted(arrays) for b in (name.encode(), *cachefiles.array_bytes(arrays[name]))
    )


def _save(path: Path, lines: np.ndarray, segments: dict[str, Segment], meta: dict) -> None:
    arrays = {"lines": lines, "meta": np.array(json.dumps(meta))}
    for name, seg in segments.items():
        arrays[f"{name}.input_ids"] = seg.input_ids
        arrays[f"{name}.token_type_ids"] = seg.token_type_ids
        arrays[f"{name}.offsets"] = seg.offsets
    arrays["checksum"] = np.array(_checksum(arrays))

    def write(f) -> None:
        np.savez(f, **arrays)
        fault_point("cache_build")  # fault-injection tests: a kill with the temp file written

    # Written aside, fsynced and renamed (mtsearch.cachefiles): a reader, or the next run
    # after a power loss, sees the whole file or none; concurrent trials encoding the same
    # file each write their own temp file and the last rename wins with identical content.
    cachefiles.write_atomic(path, write)


def _load(
    path: Path, names: list[str], meta: dict
) -> tuple[tuple[np.ndarray, dict[str, Segment]] | None, str]:
    """The cached lines and segments, or None and why the file is damaged ("" if it is not)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as err:  # noqa: BLE001 - any failure to read (0 bytes, truncated, garbage) means: encode again
        return None, f"is unreadable ({type(err).__name__}: {err})"
    try:
        stored = str(arrays.pop("checksum"))
        if _checksum(arrays) != stored:
            return None, "does not match its checksum (damaged)"
        if json.loads(str(arrays["meta"])) != meta:  # intact, but for another file name: not damage
            return None, ""
        lines = arrays["lines"]
        segs = {
            n: Segment(arrays[f"{n}.input_ids"], arrays[f"{n}.token_type_ids"], arrays[f"{n}.offsets"])
            for n in names
        }
    except (KeyError, ValueError, json.JSONDecodeError) as err:
        return None, f"is incomplete ({type(err).__name__}: {err})"
    return (lines, segs), ""


def encode_split(
    split: Split,
    tokenizer,
    max_length: int,
    pair_mode: str = "concat",
    cache_dir: Path | None = None,
) -> EncodedSplit:
    """Token ids of ``split``'s examples, from the on-disk cache when it has them.

    ``concat``: pairs become ``[CLS] a [SEP] b [SEP]`` (token types 0/1, longest-first
    truncation to ``max_length``). ``separate``: each sentence of a pair is its own
    segment, each truncated to ``max_length``. Single-sentence tasks give one segment
    ``[CLS] a [SEP]`` in either mode.
    """
    if pair_mode not in PAIR_MODES:
        raise ValueError(f"pair_mode must be one of {PAIR_MODES}, got {pair_mode!r}")
    if max_length < 4:
        raise ValueError(f"max_length must be at least 4, got {max_length}")
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "tokens"
    names = _segment_names(split.spec.inputs, pair_mode)
    ident = tokenizer_identity(tokenizer)
    # Both pair modes encode a single-sentence task identically: share one cache file.
    key_mode = pair_mode if split.spec.inputs == "pair" else "single"
    path = _cache_file(cache_dir, split, ident, max_length, key_mode)
    meta = {
        "v": CACHE_VERSION,
        "tokenizer": ident,
        "max_length": max_length,
        "pair_mode": key_mode,
        "md5": split.md5,
        "file": split.path.name,
        "segments": names,
    }

    from_cache = False
    cachefiles.remove_stale_parts(cache_dir)  # once per process: leftovers of killed builds
    loaded = _load(path, names, meta)[0] if path.is_file() else None
    if loaded is None:
        # Build under the entry's lock: a concurrent run waits for this one instead of
        # encoding too, and the leftovers of a killed build of this entry can go.
        with cachefiles.entry_lock(path):
            cachefiles.remove_parts(path)
            loaded, problem = _load(path, names, meta) if path.is_file() else (None, "")
            if loaded is None:
                if problem:
                    log.warning("token cache %s %s; encoding the file again", path, problem)
                    path.unlink(missing_ok=True)
                loaded = _encode_file(split, names, tokenizer, max_length, path, meta)
            else:
                from_cache = True  # written by a concurrent run while this one waited
    else:
        from_cache = True
    lines, segs = loaded

    want = np.fromiter((e.line for e in split.examples), dtype=np.int64, count=len(split.examples))
    if not np.array_equal(lines, want):
        pos = {int(ln): i for i, ln in enumerate(lines)}
        try:
            rows = np.fromiter((pos[int(ln)] for ln in want), dtype=np.int64, count=len(want))
        except KeyError:
            # Examples the cache does not hold (e.g. a hand-built Split): encode them directly.
            rows = None
        if rows is None:
            segs = _encode_examples(split.examples, names, tokenizer, max_length)
            from_cache = False
        else:
            segs = {n: s.select(rows) for n, s in segs.items()}
    labels = None
    if split.has_labels:
        labels = np.array([e.label for e in split.examples], dtype=np.float32)
    return EncodedSplit(
        task=split.task,
        split=split.split,
        ids=[e.id for e in split.examples],
        labels=labels,
        segments=segs,
        pair_mode=pair_mode,
        max_length=max_length,
        cache_path=path,
        from_cache=from_cache,
        lines=want,
    )


def _encode_file(split: Split, names: list[str], tokenizer, max_length: int, path: Path, meta: dict):
    """Encode every usable row of ``split``'s file (not just this maybe subsampled split), so
    the cache serves any later limit or seed; saved unless the file changed meanwhile."""
    if split.usable == len(split.examples):
        full = split.examples
    else:
        full, _, md5 = parse_file(split.path, split.task, split.split)
        if md5 != split.md5:  # the file changed since it was loaded
            full = split.examples
    lines = np.fromiter((e.line for e in full), dtype=np.int64, count=len(full))
    segs = _encode_examples(full, names, tokenizer, max_length)
    if len(full) == split.usable:
        _save(path, lines, segs, meta)
    return lines, segs


def _encode_examples(examples, names: list[str], tokenizer, max_length: int) -> dict[str, Segment]:
    a = [e.text_a for e in examples]
    if names == ["a"]:
        return {"a": _encode(tokenizer, a, None, max_length)}
    b = [e.text_b or "" for e in examples]
    if names == ["ab"]:
        return {"ab": _encode(tokenizer, a, b, max_length)}
    return {"a": _encode(tokenizer, a, None, max_length), "b": _encode(tokenizer, b, None, max_length)}


def concat_segments(*segments: Segment) -> Segment:
    """One flat segment holding the examples of ``segments`` one after the other."""
    if not segments:
        raise ValueError("concat_segments needs at least one segment")
    lens = np.concatenate([s.lengths() for s in segments])
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    # Each segment's flat arrays start at its own offsets[0] (0 for the data layer's).
    ids = np.concatenate([s.input_ids[s.offsets[0] : s.offsets[-1]] for s in segments])
    types = np.concatenate([s.token_type_ids[s.offsets[0] : s.offsets[-1]] for s in segments])
    return Segment(ids.astype(np.int32, copy=False), types.astype(np.int8, copy=False), offsets)


def concat_encoded(a: EncodedSplit, b: EncodedSplit) -> EncodedSplit:
    """The examples of ``a`` followed by those of ``b`` (e.g. a task's file + extra rows).

    Both must be the same task, split and encoding (segments, pair mode, max length).
    Each keeps its own token cache file (keyed by its file's md5), which is why they are
    encoded apart and joined here. The result has no ``lines``: line numbers of two files
    do not identify a row any more, so the activation cache leaves such a split on the
    uncached forward instead of matching rows of the wrong file.
    """
    if (a.task, a.split) != (b.task, b.split):
        raise ValueError(f"cannot join {a.task}/{a.split} with {b.task}/{b.split}")
    if tuple(a.segments) != tuple(b.segments) or (a.pair_mode, a.max_length) != (b.pair_mode, b.max_length):
        raise ValueError(
            f"{a.task}: cannot join encodings {tuple(a.segments)} ({a.pair_mode}, {a.max_length}) and "
            f"{tuple(b.segments)} ({b.pair_mode}, {b.max_length})"
        )
    if (a.labels is None) != (b.labels is None):
        raise ValueError(f"{a.task}: cannot join a labelled split with an unlabelled one")
    labels = None if a.labels is None else np.concatenate([a.labels, b.labels]).astype(np.float32)
    return EncodedSplit(
        task=a.task,
        split=a.split,
        ids=list(a.ids) + list(b.ids),
        labels=labels,
        segments={n: concat_segments(a.segments[n], b.segments[n]) for n in a.segments},
        pair_mode=a.pair_mode,
        max_length=a.max_length,
        cache_path=None,
        from_cache=a.from_cache and b.from_cache,
        lines=None,
        hidden=None,
    )


def collate(encoded: EncodedSplit, indices, pad_id: int = 0) -> dict:
    """A batch of ``encoded[indices]``, padded to the batch's own longest sequence per segment."""
    import torch

    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    inputs = []
    hidden = encoded.hidden or {}
    for name, seg in encoded.segments.items():
        sub = seg.select(idx)
        lens = sub.lengths()
        width = int(lens.max()) if len(lens) else 0
        mask = np.arange(width)[None, :] < lens[:, None]
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        types = np.zeros((len(idx), width), dtype=np.int64)
        # Boolean assignment fills row-major, which is exactly the flat storage order.
        ids[mask] = sub.input_ids
        types[mask] = sub.token_type_ids
        entry = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
            "token_type_ids": torch.from_numpy(types),
        }
        if name in hidden and hidden[name].covers(idx):
            # The activation cache: the frozen layers' output for these examples, padded
            # like the ids; the model runs only the layers above ``cached_layer``. A batch
            # with an example the cache does not hold runs the whole encoder (same values).
            entry["cached_hidden"] = hidden[name].batch(idx, lens)
            entry["cached_layer"] = torch.tensor(hidden[name].layer)
        inputs.append(entry)
    labels = None
    if encoded.labels is not None:
        labels = torch.from_numpy(encoded.labels[idx].astype(np.float32, copy=True))
    return {"inputs": inputs, "labels": labels, "index": torch.from_numpy(idx.copy())}
