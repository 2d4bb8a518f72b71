"""The frozen layers' outputs, computed once per data file and model and kept on disk.

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
separate), the task, the split and the file's md5. Like the token cache it covers every
usable row of the file, so runs that subsample (train_limit, any seed) share it.

Layout: a directory ``cache_dir()/activations/<task>-<split>-<segment>-k<k>-<digest>``
holding ``hidden.npy`` (float32 [total tokens, H], rows unpadded and concatenated as in
the token cache), ``offsets.npy`` (example i is ``hidden[offsets[i]:offsets[i+1]]``),
``lines.npy`` (the file line of each example) and ``meta.json``. It is written into a
temporary directory and renamed into place (readers see all of it or nothing), built
under a file lock (concurrent trials of a sweep wait for the first instead of building
it twice), and memory-mapped when read: only the rows of each batch are paged in.

Batches carry the states to the model: :func:`mtsearch.data.collate` adds
``cached_hidden`` ([B, S, H], zero where padded) and ``cached_layer`` (k) to every input
segment of a split that has them attached, and ``MultitaskModel.encode`` then runs only
the layers above k (:func:`mtsearch.models.layers.forward_from`).

Limits: states are computed in float32 (under bf16 autocast the uncached path would
round the lower layers to bf16; the cached one does not). A training split joined from
several files (``extra_data``) has no line numbers to match rows by and stays on the
uncached forward, which computes the same values at the full cost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mtsearch import paths
from mtsearch.models.layers import encoder_parts, hidden_after

log = logging.getLogger("mtsearch.train")

#: bump when the layout or what is stored changes, so old entries are ignored
CACHE_VERSION = 1
#: examples per forward while building (length-sorted, so padding stays small)
BUILD_BATCH = 128


# --------------------------------------------------------------------- reading
@dataclass
class HiddenStates:
    """One segment's cached states, seen through a split that may be a subset of the file."""

    flat: np.ndarray  # float32 [total tokens, H], memory-mapped
    offsets: np.ndarray  # int64 [cache rows + 1]
    rows: np.ndarray  # int64 [len(split)]: the cache row of each example of the split
    layer: int  # the states are the output of this many layers (embeddings included)

    def batch(self, indices: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        """[B, max(lengths), H] states of the split's examples ``indices``, zero where padded.

        ``lengths`` are the token counts of the batch's segment (from the token cache):
        they must be the cached ones, or the cache does not describe these tokens.
        """
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        starts = self.offsets[rows]
        lens = self.offsets[rows + 1] - starts
        if not np.array_equal(lens, lengths):
            raise RuntimeError("cached hidden states do not match the batch's token lengths")
        width = int(lens.max()) if len(lens) else 0
        total = int(lens.sum())
        # flat positions of each example's tokens, in order (as Segment.select computes them)
        cum = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lens, out=cum[1:])
        gather = np.repeat(starts - cum[:-1], lens) + np.arange(total)
        out = np.zeros((len(rows), width, self.flat.shape[1]), dtype=np.float32)
        mask = np.arange(width)[None, :] < lens[:, None]
        out[mask] = self.flat[gather]  # row-major boolean assignment = the flat order
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


def _read(path: Path, meta: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    try:
        if json.loads((path / "meta.json").read_text()) != meta:
            return None
        flat = np.load(path / "hidden.npy", mmap_mode="r")
        offsets = np.load(path / "offsets.npy")
        lines = np.load(path / "lines.npy")
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    if flat.ndim != 2 or len(offsets) != len(lines) + 1 or int(offsets[-1]) != flat.shape[0]:
        return None
    return flat, offsets, lines


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@torch.inference_mode()
def _build(
    encoder: torch.nn.Module,
    layers: int,
    segment,
    lines: np.ndarray,
    path: Path,
    meta: dict,
    device: torch.device,
    progress: bool,
) -> None:
    """Compute the hidden states after ``layers`` layers for every row of ``segment``; write ``path``."""
    from tqdm.auto import tqdm

    was_training = encoder.training
    encoder.eval()  # the frozen layers are in eval mode anyway; this also covers the rest
    n = len(segment)
    offsets = np.asarray(segment.offsets, dtype=np.int64)
    lens = np.diff(offsets)
    hidden_size = encoder.config.hidden_size
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        flat = np.lib.format.open_memmap(
            tmp / "hidden.npy", mode="w+", dtype=np.float32, shape=(int(offsets[-1]), hidden_size)
        )
        order = np.argsort(lens, kind="stable")
        bar = tqdm(total=n, disable=not progress, desc=f"activations {path.name[:40]}", unit="ex")
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
        bar.close()
        flat.flush()
        del flat
        np.save(tmp / "offsets.npy", offsets)
        np.save(tmp / "lines.npy", np.asarray(lines, dtype=np.int64))
        (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True))  # last: marks it complete
        if path.exists():  # an unreadable or outdated entry under the same key
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        encoder.train(was_training)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _rows_of(cached_lines: np.ndarray, lines: np.ndarray | None) -> np.ndarray | None:
    """The cache row of each of ``lines`` (file line numbers); None if one is missing."""
    if lines is None:
        return None
    want = np.asarray(lines, dtype=np.int64)
    if not len(cached_lines):
        return None if len(want) else np.zeros(0, dtype=np.int64)
    rows = np.searchsorted(cached_lines, want)  # file lines increase down the file
    rows = np.minimum(rows, len(cached_lines) - 1)
    return rows if np.array_equal(cached_lines[rows], want) else None


# --------------------------------------------------------------------- the trainer's entry
@dataclass
class CacheReport:
    """What :func:`attach` did, for the run's env.json."""

    layers: int
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # splits left on the uncached path
    build_seconds: float = 0.0
    bytes: int = 0

    def to_json(self) -> dict:
        return {
            "layers": self.layers,
            "built": self.built,
            "reused": self.reused,
            "skipped": self.skipped,
            "build_seconds": round(self.build_seconds, 3),
            "bytes": self.bytes,
        }


def attach(
    encoder: torch.nn.Module,
    layers: int,
    identity: str,
    tokenizer_id: str,
    max_length: int,
    splits: list[tuple[object, object]],
    full_encoding: Callable[[object], object],
    *,
    device: torch.device,
    progress: bool = True,
    root: Path | None = None,
) -> CacheReport:
    """Give every ``(Split, EncodedSplit)`` pair its cached states (``enc.hidden``), building what is missing.

    ``full_encoding(split)`` returns the EncodedSplit of every usable row of the split's
    file (needed only to build an entry when ``split`` is a subset). A split whose rows
    the cache cannot find (e.g. a hand-made split) keeps the uncached forward, which
    computes the same values, and is listed in ``skipped``.
    """
    root = Path(root) if root is not None else paths.cache_dir() / "activations"
    report = CacheReport(layers)
    for split, enc in splits:
        if enc.lines is None:
            # rows of several files joined (extra_data): line numbers no longer identify
            # a row of this file, so nothing is matched (or built) for this split
            log.warning(
                "%s %s: rows from several files; this split runs the frozen layers", split.task, split.split
            )
            report.skipped.append(f"{split.task}-{split.split}")
            continue
        full = None
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
            loaded = _read(path, meta)
            if loaded is None:
                with _lock(path):
                    loaded = _read(path, meta)  # built by a concurrent run while we waited?
                    if loaded is None:
                        if full is None:
                            full = enc if split.usable == len(enc) else full_encoding(split)
                        # Minutes on a CPU for the large files, once per model and file: say so.
                        log.info(
                            "building the activation cache for %s %s (%s, %d examples, k=%d); later runs reuse it",
                            split.task, split.split, name, len(full), layers,
                        )  # fmt: skip
                        t0 = time.perf_counter()
                        _build(encoder, layers, full.segments[name], full.lines, path, meta, device, progress)
                        report.build_seconds += time.perf_counter() - t0
                        report.built.append(path.name)
                        loaded = _read(path, meta)
                        if loaded is None:
                            raise RuntimeError(
                                f"activation cache {path} unreadable right after it was written"
                            )
                    else:
                        report.reused.append(path.name)
            else:
                report.reused.append(path.name)
            flat, offsets, lines = loaded
            report.bytes += flat.nbytes
            rows = _rows_of(lines, enc.lines)
            if rows is None or not np.array_equal(offsets[rows + 1] - offsets[rows], seg.lengths()):
                break
            attached[name] = HiddenStates(flat, offsets, rows, layers)
        if len(attached) == len(enc.segments):
            enc.hidden = attached
        else:
            log.warning(
                "%s %s: rows not found in the activation cache; this split runs the frozen layers",
                split.task,
                split.split,
            )
            report.skipped.append(f"{split.task}-{split.split}")
    return report


def prepare(config, encoder, layers: int, source, tokenizer, pairs, device) -> CacheReport | None:
    """The trainer's call: attach cached states to the run's train and dev splits.

    None (and a log line) when the encoder is not BERT-like: the run then keeps the
    uncached forward, whose frozen layers compute the same values.
    """
    from mtsearch.data import Split, parse_file, tokenizer_identity
    from mtsearch.models.multitask import encode_for_model

    if encoder_parts(encoder) is None:
        log.info("activation cache: %s is not a BERT-like encoder; not cached", type(encoder).__name__)
        return None

    def full_encoding(split):
        examples, defects, md5 = parse_file(split.path, split.task, split.split)
        if md5 != split.md5:
            raise RuntimeError(f"{split.path} changed while the run was starting")
        whole = Split(split.task, split.split, split.path, examples, defects, md5)
        return encode_for_model(whole, tokenizer, config)

    identity = model_identity(encoder, layers, source.kind, config.seed)
    report = attach(
        encoder,
        layers,
        identity,
        tokenizer_identity(tokenizer),
        config.max_length,
        pairs,
        full_encoding,
        device=device,
        progress=config.progress,
    )
    log.info(
        "activation cache (k=%d): %d built in %.1fs, %d reused",
        layers,
        len(report.built),
        report.build_seconds,
        len(report.reused),
    )
    return report
