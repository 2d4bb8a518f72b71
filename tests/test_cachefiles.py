"""mtsearch.cachefiles: what both caches rely on to survive kills and power losses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from mtsearch import cachefiles


def test_an_atomic_write_is_fsynced_then_renamed(tmp_path: Path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def fsync(fd):
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "entry.npz"
    cachefiles.write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert synced == ["file", "dir"]  # the data before the rename, the rename after it
    assert [p.name for p in tmp_path.iterdir()] == ["entry.npz"]


def test_a_write_that_fails_leaves_the_old_entry_and_no_temporary_file(tmp_path: Path):
    target = tmp_path / "entry.npz"
    target.write_bytes(b"old")

    def boom(f):
        f.write(b"half")
        raise KeyboardInterrupt  # a Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        cachefiles.write_atomic(target, boom)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["entry.npz"]


def test_parts_name_their_entry(tmp_path: Path):
    entry = tmp_path / "sts-dev-concat-32-abc.npz"
    part = tmp_path / f"{cachefiles.part_name(entry)}x7_q{cachefiles.PART}"
    assert cachefiles.entry_of_part(part) == entry
    assert cachefiles.entry_of_part(tmp_path / "plain.npz") is None
    assert cachefiles.entry_of_part(tmp_path / ".x.part") is None


def test_the_checksum_sees_contents_dtype_and_shape():
    a = np.arange(12, dtype=np.float32)
    base = cachefiles.digest(cachefiles.array_bytes(a))
    assert base.startswith("sha256:") and base == cachefiles.digest(cachefiles.array_bytes(a.copy()))
    flipped = a.copy()
    flipped.view(np.uint8)[5] ^= 1
    others = [flipped, a.reshape(3, 4), a.astype(np.float64), a.view(np.int32)]
    assert len({base, *(cachefiles.digest(cachefiles.array_bytes(x)) for x in others)}) == 5


def test_stale_parts_are_swept_once_per_process_and_root(tmp_path: Path):
    started = cachefiles.process_start_time()
    assert time.time() - 7 * 86400 < started <= time.time()
    past = started - 60
    old = tmp_path / ".e1.npz.a.part"
    old.write_bytes(b"x" * 10)
    os.utime(old, (past, past))
    assert cachefiles.remove_stale_parts(tmp_path) == 10 and not old.exists()
    again = tmp_path / ".e2.npz.b.part"
    again.write_bytes(b"x")
    os.utime(again, (past, past))
    assert cachefiles.remove_stale_parts(tmp_path) == 0 and again.exists()  # already swept here
