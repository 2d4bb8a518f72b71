"""The frozen layers' outputs, computed once per example and model and kept on disk.

With ``freeze_layers: k`` the embeddings and the lower k encoder layers never change and
run in eval mode (no dropout: see :mod:`mtsearch.train.optim`), so the hidden states
after layer k are a fixed function of each example's tokens. Computing them once and
reading them back is exact, not an approximation: a training or evaluation forward then
runs only layers k..L-1 (and backward stops there anyway), which is what makes sweeps on
a CPU affordable. ``frozen_encoder`` caches the last hidden state (k = L). The
heads-only phases (``heads_only_steps_before/after``) only ever freeze MORE of the
encoder, never the cached layers less, so the cache serves them too; nothing in a run
unfreezes layers 0..k-1, which is why ``activation_cache`` needs no further condition.

One cache entry is one segment ('a', 'b' or 'ab') of one data file under one encoding,
for one model prefix: its key holds the model's identity (its config and a hash of the
frozen weights: embeddings + layers 0..k-1; for the random 'tiny' model also the seed
its weights come from), k, the tokenizer, max_length, the encoding (single / concat /
separate), the task, the split and the file's md5.

Only the rows runs read are cached: a run asks for the rows of its training subset (what
its seed draws from train_fraction / train_limit) and of its dev evaluation subset
(eval_limit; every dev row when a final evaluation on the full dev sets follows), and
computes just the rows the entry lacks. The CPU profiles read 10% of each training file
and 400 dev examples a task, so a sweep caches a few hundred MB instead of every row of
every file (about 2.5 GB and 5 minutes for QQP alone); a later run with another subset
extends the entry. Rows are identified by their line in the file.

Layout: a directory ``cache_dir()/activations/<task>-<split>-<segment>-k<k>-<digest>``
holding chunks, one per extension, and an index:

- ``<chunk>.hidden.npy``: float32 [tokens, H], the chunk's rows unpadded and concatenated;
- ``<chunk>.rows.npy``: int64 [rows, 3], per row its file line, first token and length;
- ``index.json``: the key and the chunks, each with its row and token counts and a
  sha256 of its two files; the index carries a sha256 of itself.

Chunks are written aside, fsynced and renamed before the index that names them is
replaced the same way (:mod:`mtsearch.cachefiles`), so readers (who take no lock) see
whole chunks only. A chunk's checksum is verified the first time a process reads it
(about 1 GB/s, once per chunk and process), so a damaged chunk (0 bytes, truncated,
bytes flipped) is dropped with one warning and its rows computed again, never read as
numbers. Extensions run under the entry's file lock: concurrent trials of a sweep wait
for each other instead of computing the same rows twice, and whoever holds the lock
removes what a killed build left in the entry. Chunks are memory-mapped when read: only
the rows of each batch are paged in.

Batches carry the states to the model: :func:`mtsearch.data.collate` adds
``cached_hidden`` ([B, S, H], zero where padded) and ``cached_layer`` (k) to every input
segment whose rows are all cached (any other batch runs the whole encoder, which computes
the same values), and ``MultitaskModel.encode`` then runs only the layers above k
(:func:`mtsearch.models.layers.forward_from`).

Limits: states are computed in float32 (under bf16 autocast the uncached path would
round the lower layers to bf16; the cached one does not). A training split joined from
several files (``extra_data``) has no line numbers to match rows by and stays on the
uncached forward, which computes the same values at the full cost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mtsearch import cachefiles, paths
from mtsearch.models.layers import encoder_parts, hidden_after

log = logging.getLogger("mtsearch.train")

#: bump when the layout or what is stored changes, so old entries are ignored
CACHE_VERSION = 2  # 2: chunks of the rows runs read, an index, checksums
#: examples per forward while building (length-sorted, so padding stays small)
BUILD_BATCH = 128
INDEX = "index.json"


# --------------------------------------------------------------------- reading
@dataclass
class HiddenStates:
    """One segment's cached states, seen through a split whose rows may be cached in part.

    Example i of the split is ``flats[chunk[i]][start[i] : start[i] + length[i]]``;
    ``chunk[i]`` is -1 where the example is not cached.
    """

    flats: list[np.ndarray | None]  # float32 [tokens, H] per chunk, memory-mapped (None: unused)
    chunk: np.ndarray  # int64 [len(split)]
    start: np.ndarray  # int64 [len(split)]
    length: np.ndarray  # int64 [len(split)]
    layer: int  # the states are the output of this many layers (embeddings included)

    def covers(self, indices: np.ndarray) -> bool:
        """Whether every example of ``indices`` is cached."""
        return bool((self.chunk[np.asarray(indices, dtype=np.int64)] >= 0).all())

    def batch(self, indices: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        """[B, max(lengths), H] states of the split's examples ``indices``, zero where padded.

        ``lengths`` are the token counts of the batch's segment (from the token cache):
        they must be the cached ones, or the cache does not describe these tokens.
        """
        idx = np.asarray(indices, dtype=np.int64)
        chunk, starts, lens = self.chunk[idx], self.start[idx], self.length[idx]
        if (chunk < 0).any():
            raise RuntimeError("the batch holds examples the activation cache does not hold")
        if not np.array_equal(lens, lengths):
            raise RuntimeError("cached hidden states do not match the batch's token lengths")
        width = int(lens.max()) if len(lens) else 0
        cum = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=cum[1:])
        hidden_size = next(f.shape[1] for f in self.flats if f is not None) if len(idx) else 0
        buf = np.empty((int(cum[-1]), hidden_size), dtype=np.float32)  # the batch's tokens, in order
        for c in np.unique(chunk):
            sel = np.flatnonzero(chunk == c)
            sl = lens[sel]
            total = int(sl.sum())
            csum = np.zeros(len(sel) + 1, dtype=np.int64)
            np.cumsum(sl, out=csum[1:])
            within = np.arange(total) - np.repeat(csum[:-1], sl)  # token position inside its example
            buf[np.repeat(cum[:-1][sel], sl) + within] = self.flats[c][np.repeat(starts[sel], sl) + within]
        out = np.zeros((len(idx), width, hidden_size), dtype=np.float32)
        mask = np.arange(width)[None, :] < lens[:, None]
        out[mask] = buf  # row-major boolean assignment = the flat order
        return torch.from_numpy(out)


# --------------------------------------------------------------------- identity
def model_identity(encoder: torch.nn.Module, layers: int, kind: str, seed: int) -> str:
    """What the cached states depend on in the model: its config and the frozen weights.

    The weights of the embeddings and layers 0..k-1 are hashed as they are (for a
    pretrained model, what was loaded; a fine-tuned folder hashes differently). The
    'tiny' model's weights are a random init drawn from the run's seed, which the hash
    already captures; the seed is added too so the key says so.
    """
    parts = encoder_parts(encoder)
    if parts is None:
        raise ValueError("the activation cache needs a BERT-like encoder")
    cfg = {k: v for k, v in encoder.config.to_dict().items() if k not in ("_name_or_path", "_commit_hash")}
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    for i, module in enumerate(parts.lower(layers)):
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{i}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    if kind == "tiny":
        h.update(f"seed={seed}".encode())
    return h.hexdigest()[:24]


def segment_encoding(task_inputs: str, segment: str) -> str:
    """The data layer's encoding that produced a segment: single, concat or separate."""
    if task_inputs == "single":
        return "single"
    return "concat" if segment == "ab" else "separate"


# --------------------------------------------------------------------- on disk
def entry_dir(root: Path, meta: dict) -> Path:
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]
    return root / f"{meta['task']}-{meta['split']}-{meta['segment']}-k{meta['layers']}-{digest}"


def _index_doc(meta: dict, chunks: list[dict]) -> bytes:
    body = {"meta": meta, "chunks": chunks}
    blob = json.dumps(body, sort_keys=True)
    return json.dumps({"body": body, "checksum": cachefiles.digest([blob.encode()])}, indent=1).encode()


def _read_index(path: Path, meta: dict) -> tuple[list[dict] | None, str]:
    """The entry's chunk records; None and "" when there is no entry, None and why when it is damaged."""
    try:
        raw = (path / INDEX).read_bytes()
    except FileNotFoundError:
        return None, ""
    except OSError as err:
        return None, f"its index is unreadable ({err})"
    try:
        doc = json.loads(raw)
        body = doc["body"]
        if cachefiles.digest([json.dumps(body, sort_keys=True).encode()]) != doc["checksum"]:
            return None, "its index does not match its checksum"
        if body["meta"] != meta:
            return None, "its index names another key"
        chunks = list(body["chunks"])
        for c in chunks:
            int(c["rows"]), int(c["tokens"]), str(c["name"]), str(c["checksum"])  # noqa: B018 - shape check
    except (ValueError, KeyError, TypeError) as err:
        return None, f"its index is unreadable ({type(err).__name__})"
    return chunks, ""


def _chunk_files(name: str) -> tuple[str, str]:
    return f"{name}.hidden.npy", f"{name}.rows.npy"


#: chunks whose checksum this process verified, by (path, inode, size, mtime) of both files
_verified: set[tuple] = set()
#: seconds this process spent verifying checksums (reported per run in env.json)
_verify_clock = [0.0]


def _stat_key(files: list[Path]) -> tuple:
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _open_chunk(path: Path, chunk: dict, hidden_size: int) -> tuple[np.ndarray, np.ndarray] | str:
    """A chunk's rows [n, 3] and memory-mapped states, or why it cannot be used."""
    hidden_file, rows_file = (path / f for f in _chunk_files(chunk["name"]))
    try:
        rows = np.load(rows_file, allow_pickle=False)
        flat = np.load(hidden_file, mmap_mode="r", allow_pickle=False)
        key = _stat_key([hidden_file, rows_file])
    except Exception as err:  # noqa: BLE001 - 0 bytes, truncated, garbage: the chunk is computed again
        return f"is unreadable ({type(err).__name__}: {err})"
    n, tokens = int(chunk["rows"]), int(chunk["tokens"])
    if (
        rows.shape != (n, 3)
        or rows.dtype != np.int64
        or flat.shape != (tokens, hidden_size)
        or flat.dtype != np.float32
    ):
        return "does not have the shape its index records"
    if key not in _verified:
        t0 = time.perf_counter()
        got = cachefiles.digest([*cachefiles.array_bytes(rows), *cachefiles.array_bytes(flat)])
        _verify_clock[0] += time.perf_counter() - t0
        if got != chunk["checksum"]:
            return "does not match its checksum (damaged)"
        _verified.add(key)
    if n and ((rows[:, 1] < 0).any() or (rows[:, 1] + rows[:, 2] > tokens).any()):
        return "has rows outside its states"
    return rows, flat


@dataclass
class _Survey:
    """What an entry holds of the wanted rows (each wanted row's chunk, first token, length)."""

    chunks: list[dict]
    flats: list[np.ndarray | None]
    chunk: np.ndarray  # per wanted row, -1: not cached
    start: np.ndarray
    length: np.ndarray
    damaged: list[tuple[str, str]]  # (chunk name or "index", why)

    @property
    def complete(self) -> bool:
        return not self.damaged and bool((self.chunk >= 0).all())


def _survey(path: Path, meta: dict, want: np.ndarray, hidden_size: int) -> _Survey:
    """Locate the rows of file lines ``want`` (sorted, unique) in the entry at ``path``."""
    n = len(want)
    none = np.full(n, -1, dtype=np.int64)
    chunks, problem = _read_index(path, meta)
    if chunks is None:
        return _Survey([], [], none, none.copy(), none.copy(), [("index", problem)] if problem else [])
    flats: list[np.ndarray | None] = [None] * len(chunks)
    damaged: list[tuple[str, str]] = []
    found_chunk, found_start, found_len = none, none.copy(), none.copy()
    for i, c in enumerate(chunks):
        if not (found_chunk < 0).any():
            break  # every wanted row found: later chunks are not read (nor verified)
        opened = _open_chunk(path, c, hidden_size)
        if isinstance(opened, str):
            damaged.append((c["name"], opened))
            continue
        rows, flat = opened
        order = np.argsort(rows[:, 0], kind="stable")
        lines = rows[order, 0]
        pos = np.minimum(np.searchsorted(lines, want), max(len(lines) - 1, 0))
        hit = (found_chunk < 0) & (lines[pos] == want) if len(lines) else np.zeros(n, dtype=bool)
        if hit.any():
            r = order[pos[hit]]
            found_chunk[hit] = i
            found_start[hit] = rows[r, 1]
            found_len[hit] = rows[r, 2]
            flats[i] = flat
    return _Survey(chunks, flats, found_chunk, found_start, found_len, damaged)


@torch.inference_mode()
def _build_chunk(
    encoder: torch.nn.Module,
    layers: int,
    segment,
    lines: np.ndarray,
    path: Path,
    device: torch.device,
    bar,
) -> dict:
    """Compute the states after ``layers`` layers of every row of ``segment``; write a chunk into ``path``.

    Called with the entry's lock held. Returns the chunk's index record.
    """
    was_training = encoder.training
    encoder.eval()  # the frozen layers are in eval mode anyway; this also covers the rest
    n = len(segment)
    offsets = np.asarray(segment.offsets, dtype=np.int64)
    lens = np.diff(offsets)
    hidden_size = encoder.config.hidden_size
    name = f"c{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(4)}"  # never reused: readers see new names
    hidden_file, rows_file = (path / f for f in _chunk_files(name))
    fd, tmp = tempfile.mkstemp(prefix=cachefiles.part_name(hidden_file), suffix=cachefiles.PART, dir=path)
    os.close(fd)
    try:
        flat = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(int(offsets[-1]), hidden_size)
        )
        order = np.argsort(lens, kind="stable")
        for start in range(0, n, BUILD_BATCH):
            rows = order[start : start + BUILD_BATCH]
            blens = lens[rows]
            width = int(blens.max())
            mask = np.arange(width)[None, :] < blens[:, None]
            cum = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(blens, out=cum[1:])
            gather = np.repeat(offsets[rows] - cum[:-1], blens) + np.arange(int(cum[-1]))
            ids = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            ids[mask] = segment.input_ids[gather]
            types[mask] = segment.token_type_ids[gather]
            inputs = {
                "input_ids": torch.from_numpy(ids).to(device),
                "token_type_ids": torch.from_numpy(types).to(device),
                "attention_mask": torch.from_numpy(mask.astype(np.int64)).to(device),
            }
            h = hidden_after(encoder, inputs, layers).float().cpu().numpy()
            flat[gather] = h[mask]
            bar.update(len(rows))
        flat.flush()
        table = np.stack([np.asarray(lines, dtype=np.int64), offsets[:-1], lens], axis=1).astype(np.int64)
        checksum = cachefiles.digest([*cachefiles.array_bytes(table), *cachefiles.array_bytes(flat)])
        del flat
        cachefiles.fsync_file(Path(tmp))
        cachefiles.write_atomic(rows_file, lambda f: np.save(f, table))
        os.replace(tmp, hidden_file)
        cachefiles.fsync_dir(path)
        _verified.add(_stat_key([hidden_file, rows_file]))  # just computed from these bytes
    finally:
        encoder.train(was_training)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"name": name, "rows": n, "tokens": int(offsets[-1]), "checksum": checksum}


def _tidy(path: Path, chunks: list[dict]) -> None:
    """Remove from the entry what its index does not name: leftovers of killed builds (lock held)."""
    keep = {INDEX} | {f for c in chunks for f in _chunk_files(c["name"])}
    freed = 0
    for p in path.iterdir():
        if p.name not in keep:
            freed += cachefiles.remove_path(p)
    if freed:
        log.info("activation cache %s: removed %.1f MB left by an interrupted build", path.name, freed / 1e6)


def _extend(
    encoder: torch.nn.Module,
    layers: int,
    meta: dict,
    path: Path,
    segment,
    lines: np.ndarray,
    device: torch.device,
    progress: bool,
    report: CacheReport,
) -> _Survey:
    """With the entry's lock held: repair the entry, compute the rows it lacks, return the survey."""
    hidden_size = encoder.config.hidden_size
    path.mkdir(parents=True, exist_ok=True)
    survey = _survey(path, meta, lines, hidden_size)
    chunks = survey.chunks
    for what, why in survey.damaged:
        # One warning per damaged piece: its rows are computed again below.
        if what == "index":
            log.warning("activation cache %s: %s; building the entry again", path, why)
        else:
            log.warning("activation cache %s: chunk %s %s; computing its rows again", path, what, why)
    bad = {what for what, _ in survey.damaged}
    if bad:
        chunks = [c for c in chunks if c["name"] not in bad]
        cachefiles.write_bytes_atomic(path / INDEX, _index_doc(meta, chunks))
    _tidy(path, chunks)  # leftovers of killed builds, dropped chunks, a damaged index's chunks
    if bad:
        survey = _survey(path, meta, lines, hidden_size)
    missing = np.flatnonzero(survey.chunk < 0)
    if not len(missing):
        return survey
    part = segment.select(missing)
    what = f"{meta['task']} {meta['split']} {meta['segment']}"
    interactive = progress and sys.stderr.isatty()
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    with tqdm(
        total=len(missing), disable=not interactive, desc=f"activation cache {what}", unit="rows"
    ) as bar:
        record = _build_chunk(encoder, layers, part, lines[missing], path, device, bar)
    cachefiles.write_bytes_atomic(path / INDEX, _index_doc(meta, [*chunks, record]))
    seconds = time.perf_counter() - t0
    size = cachefiles.tree_bytes(path / _chunk_files(record["name"])[0])
    if not interactive:  # a log file gets one line per finished build instead of a bar
        log.info(
            "activation cache %s: %d rows computed in %.1f s (%.1f MB)",
            what,
            len(missing),
            seconds,
            size / 1e6,
        )
    report.build_seconds += seconds
    report.rows_built += len(missing)
    report.built.append(path.name)
    return _survey(path, meta, lines, hidden_size)


def _needed(enc, rows: np.ndarray | None) -> np.ndarray:
    """The split's example indices a run reads (sorted, unique): ``rows``, or every example."""
    if rows is None:
        return np.arange(len(enc), dtype=np.int64)
    return np.unique(np.asarray(rows, dtype=np.int64))


# --------------------------------------------------------------------- the trainer's entry
@dataclass
class CacheReport:
    """What :func:`attach` did, for the run's env.json."""

    layers: int
    built: list[str] = field(default_factory=list)  # entries this run added rows to
    reused: list[str] = field(default_factory=list)  # entries that held every row the run reads
    skipped: list[str] = field(default_factory=list)  # splits left on the uncached path
    build_seconds: float = 0.0
    rows_built: int = 0
    verify_seconds: float = 0.0  # spent checking chunks' checksums (once per chunk and process)
    bytes: int = 0  # bytes of the cached states this run reads
    disk_bytes: int = 0  # the whole activation cache on disk after this run

    def to_json(self) -> dict:
        return {
            "layers": self.layers,
            "built": self.built,
            "reused": self.reused,
            "skipped": self.skipped,
            "build_seconds": round(self.build_seconds, 3),
            "rows_built": self.rows_built,
            "verify_seconds": round(self.verify_seconds, 3),
            "bytes": self.bytes,
            "disk_bytes": self.disk_bytes,
        }


def _owner(root: Path):
    """The entry a temporary name under ``root`` belongs to (for stale-leftover removal)."""

    def owner(part: Path) -> Path | None:
        return cachefiles.entry_of_part(part) if part.parent == root else part.parent

    return owner


_opened: set[Path] = set()


def _note_old_layout(root: Path) -> None:
    """Say (once) how much space entries of the previous layout take: they are never read again."""
    old = [
        d for d in root.iterdir() if d.is_dir() and (d / "meta.json").is_file() and not (d / INDEX).exists()
    ]
    if old:
        size = sum(cachefiles.tree_bytes(d) for d in old)
        log.info(
            "activation cache: %d entries of an older layout (%.1f MB) in %s are no longer read; "
            "delete them to free the space (make clean-cache empties the whole cache)",
            len(old),
            size / 1e6,
            root,
        )


def attach(
    encoder: torch.nn.Module,
    layers: int,
    identity: str,
    tokenizer_id: str,
    max_length: int,
    splits: list[tuple],
    *,
    device: torch.device,
    progress: bool = True,
    root: Path | None = None,
) -> CacheReport:
    """Give every ``(Split, EncodedSplit, rows)`` its cached states (``enc.hidden``), computing what is missing.

    ``rows`` are the example indices of the EncodedSplit the run reads (None: all); only
    they are cached. A split whose rows the cache cannot match (rows joined from several
    files) keeps the uncached forward, which computes the same values, and is listed in
    ``skipped``.
    """
    root = Path(root) if root is not None else paths.cache_dir() / "activations"
    root.mkdir(parents=True, exist_ok=True)
    cachefiles.remove_stale_parts(root, _owner(root))  # once per process: what killed builds left
    if root not in _opened:
        _opened.add(root)
        _note_old_layout(root)
    report = CacheReport(layers)
    hidden_size = encoder.config.hidden_size
    verified_before = _verify_clock[0]
    for split, enc, rows in splits:
        if enc.lines is None:
            # rows of several files joined (extra_data): line numbers no longer identify
            # a row of this file, so nothing is matched (or built) for this split
            log.warning(
                "%s %s: rows from several files; this split runs the frozen layers", split.task, split.split
            )
            report.skipped.append(f"{split.task}-{split.split}")
            continue
        need = _needed(enc, rows)
        lines = np.asarray(enc.lines, dtype=np.int64)[need]
        order = np.argsort(lines, kind="stable")
        want = lines[order]
        if len(want) > 1 and (np.diff(want) == 0).any():
            raise RuntimeError(f"{split.task} {split.split}: two examples share a file line")
        attached = {}
        for name, seg in enc.segments.items():
            meta = {
                "v": CACHE_VERSION,
                "model": identity,
                "layers": layers,
                "tokenizer": tokenizer_id,
                "max_length": max_length,
                "encoding": segment_encoding(split.spec.inputs, name),
                "segment": name,
                "task": split.task,
                "split": split.split,
                "md5": split.md5,
            }
            path = entry_dir(root, meta)
            survey = _survey(path, meta, want, hidden_size)
            if survey.complete:
                report.reused.append(path.name)
            else:
                with cachefiles.entry_lock(path):
                    # the wanted rows in file-line order, as ``want``
                    survey = _extend(encoder, layers, meta, path, seg.select(need[order]), want, device,
                                     progress, report)  # fmt: skip
                    if not survey.complete:
                        raise RuntimeError(f"activation cache {path} incomplete right after it was extended")
            # back from file-line order to the split's order
            chunk = np.full(len(enc), -1, dtype=np.int64)
            start = np.zeros(len(enc), dtype=np.int64)
            length = np.zeros(len(enc), dtype=np.int64)
            chunk[need[order]], start[need[order]], length[need[order]] = (
                survey.chunk,
                survey.start,
                survey.length,
            )
            if not np.array_equal(length[need], seg.lengths()[need]):
                break
            report.bytes += int(length[need].sum()) * hidden_size * 4
            attached[name] = HiddenStates(survey.flats, chunk, start, length, layers)
        if len(attached) == len(enc.segments):
            enc.hidden = attached
        else:
            log.warning(
                "%s %s: the activation cache holds other token counts for these rows; this split runs "
                "the frozen layers",
                split.task,
                split.split,
            )
            report.skipped.append(f"{split.task}-{split.split}")
    report.disk_bytes = cachefiles.tree_bytes(root)
    report.verify_seconds = _verify_clock[0] - verified_before
    return report


def prepare(config, encoder, layers: int, source, tokenizer, pairs, device) -> CacheReport | None:
    """The trainer's call: attach cached states to the ``(Split, EncodedSplit, rows)`` the run reads.

    None (and a log line) when the encoder is not BERT-like: the run then keeps the
    uncached forward, whose frozen layers compute the same values.
    """
    from mtsearch.data import tokenizer_identity

    if encoder_parts(encoder) is None:
        log.info("activation cache: %s is not a BERT-like encoder; not cached", type(encoder).__name__)
        return None
    root = paths.cache_dir() / "activations"
    identity = model_identity(encoder, layers, source.kind, config.seed)
    report = attach(
        encoder,
        layers,
        identity,
        tokenizer_identity(tokenizer),
        config.max_length,
        pairs,
        device=device,
        progress=config.progress,
        root=root,
    )
    log.info(
        "activation cache (k=%d): %s rows computed in %.1f s for %d entries, %d entries reused, "
        "checksums verified in %.2f s; %.1f MB on disk in %s",
        layers,
        f"{report.rows_built:,}",
        report.build_seconds,
        len(report.built),
        len(report.reused),
        report.verify_seconds,
        report.disk_bytes / 1e6,
        root,
    )
    return report
