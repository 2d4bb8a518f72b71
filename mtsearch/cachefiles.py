"""Crash-safe cache files: written aside and renamed, checksummed, built under a lock.

The token cache (:mod:`mtsearch.data.tokens`) and the activation cache
(:mod:`mtsearch.train.activation_cache`) keep derived data that any run may rebuild, so
a damaged entry must never stop a run or, worse, change its scores. Both follow the
same rules, kept here:

- An entry ``E`` is written to a temporary name beside it, ``.E.<random>.part``,
  flushed and fsynced, then renamed into place and its directory fsynced: after a
  crash or a power loss a reader sees the old entry, the new one, or none, never a
  0-byte or half-written one under the real name.
- An entry carries a checksum of its contents (:func:`digest`) that a load verifies:
  corruption of the same size is caught instead of read as numbers.
- Builds of ``E`` hold an exclusive ``flock`` on ``.E.lock`` (:func:`entry_lock`): a
  concurrent run waits instead of building twice, and whoever holds the lock knows
  every ``.E.*.part`` beside it is the leftover of a killed build and removes it
  (:func:`remove_parts`). At a cache's first use in a process, leftovers older than
  the process whose entry nobody holds locked are removed too (:func:`remove_stale_parts`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("mtsearch.cache")

PART = ".part"
LOCK = ".lock"
#: the checksum of cache contents: sha256 runs at about 1.1 GB/s on this machine's CPU
#: (SHA extensions), faster than blake2b (0.6 GB/s) and md5 (0.7 GB/s)
ALGORITHM = "sha256"
_BLOCK = 1 << 24  # bytes hashed at a time: bounds what a memory-mapped array pages in at once

_IMPORTED_AT = time.time()
_swept: set[Path] = set()


# ------------------------------------------------------------------ checksums
def digest(chunks: Iterable[bytes | memoryview]) -> str:
    """``sha256:<hex>`` of the concatenated byte chunks."""
    h = hashlib.new(ALGORITHM)
    for chunk in chunks:
        h.update(chunk)
    return f"{ALGORITHM}:{h.hexdigest()}"


def array_bytes(array) -> Iterator[memoryview]:
    """A numpy array's dtype, shape and data as byte chunks, in blocks (memory maps stay cheap)."""
    import numpy as np

    a = np.ascontiguousarray(array)
    yield memoryview(f"{a.dtype.str}{a.shape}".encode())
    flat = a.reshape(-1).view(np.uint8) if a.size else np.zeros(0, dtype=np.uint8)
    for start in range(0, len(flat), _BLOCK):
        yield memoryview(flat[start : start + _BLOCK])


# ------------------------------------------------------------------ durable writes
def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (a file's fsync does not cover its name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems refuse fsync on a directory; nothing more to do there
        if err.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def part_name(path: Path) -> str:
    """The prefix of ``path``'s temporary names: ``.E.``; a build adds ``<random>.part``."""
    return f".{path.name}."


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary name, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=part_name(path), suffix=PART, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def new_part_dir(path: Path) -> Path:
    """An empty temporary directory beside ``path`` for building it (see :func:`publish_dir`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=part_name(path), suffix=PART, dir=path.parent))


# ------------------------------------------------------------------ locks and leftovers
def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}{LOCK}"


@contextlib.contextmanager
def entry_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive build lock of entry ``path`` (blocks while another process builds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(path), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def try_entry_lock(path: Path) -> Iterator[bool]:
    """The build lock of ``path`` if nobody holds it (True), else False at once."""
    try:
        f = open(lock_path(path), "a")
    except OSError:
        yield False
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_path(p: Path) -> int:
    """Delete a file or directory; its size in bytes (0 if it was gone already)."""
    try:
        size = tree_bytes(p)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        return size
    except FileNotFoundError:
        return 0


def remove_parts(path: Path) -> int:
    """Remove the temporary names of entry ``path`` (call with its lock held); bytes freed."""
    prefix = part_name(path)
    if not path.parent.is_dir():
        return 0
    freed = 0
    for p in path.parent.iterdir():
        if p.name.startswith(prefix) and p.name.endswith(PART):
            freed += remove_path(p)
    if freed:
        log.info("removed the leftovers of an interrupted cache build of %s (%.1f MB)", path, freed / 1e6)
    return freed


def entry_of_part(part: Path) -> Path | None:
    """The entry a temporary name ``.E.<random>.part`` was building (None if it is no such name)."""
    name = part.name
    if not (name.startswith(".") and name.endswith(PART)):
        return None
    stem = name[1 : -len(PART)]
    entry, dot, _random = stem.rpartition(".")
    return part.parent / entry if dot and entry else None


def process_start_time() -> float:
    """When this process started (Linux: /proc), else when this module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


def remove_stale_parts(root: Path, owner: Callable[[Path], Path | None] | None = None) -> int:
    """Once per process and ``root``: remove leftovers of killed builds; bytes freed.

    A temporary name counts as a leftover when it is older than this process and the
    entry it belongs to is not locked (nobody is building it now). ``owner(part)`` maps a
    temporary name to its entry (default :func:`entry_of_part`), for caches that keep
    parts inside an entry's folder. Parts directly in ``root`` and one folder below are seen.
    """
    root = Path(root)
    if root in _swept or not root.is_dir():
        return 0
    _swept.add(root)
    started = process_start_time()
    owner = owner or entry_of_part
    candidates = [p for p in root.iterdir() if p.name.endswith(PART)]
    for sub in root.iterdir():
        if sub.is_dir() and not sub.name.startswith("."):
            candidates += [p for p in sub.iterdir() if p.name.endswith(PART)]
    freed = 0
    for part in candidates:
        entry = owner(part)
        try:
            if entry is None or part.lstat().st_mtime >= started:
                continue
        except FileNotFoundError:
            continue
        with try_entry_lock(entry) as free:
            if free:
                freed += remove_path(part)
    if freed:
        log.info("removed %.1f MB left by interrupted cache builds in %s", freed / 1e6, root)
    return freed


def tree_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except FileNotFoundError:
        return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            total += tree_bytes(Path(dirpath) / name)
    return total
