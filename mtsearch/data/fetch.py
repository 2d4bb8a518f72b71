"""Filling a data folder from a local mirror or the course repository, checksums verified.

Every file lands through a temporary file in the destination folder and ``os.replace``,
so an interrupted fetch never leaves a truncated csv that a later run would read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from mtsearch.errors import DataError
from mtsearch.tasks import QQP_TRAIN_FALLBACK

#: The course's starter repository at the commit the README describes.
DEFAULT_SOURCE = (
    "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/"
    "f25cd95c73a1ce3f3b88dd7a11df90f0ab488bd9/data/"
)

#: md5 of every file of the release (shared/data/cs224n/README.md).
KNOWN_MD5: dict[str, str] = {
    "ids-sst-train.csv": "f3daabb505555cc31dcc809c1d42eb57",
    "ids-sst-dev.csv": "fbbe5fbcfbe634ff2de643aa42abb3ca",
    "ids-sst-test-student.csv": "2aa44d6cafc98a053d041f6b1c1f15ad",
    "quora-train-subset.csv": "4f2c354768211efa706b08df4fb9eb9c",
    "quora-dev.csv": "b7990635a450e3402919bdd80d719157",
    "sts-train.csv": "3eb8d84ac44373ecc3be9b8a8ed85496",
    "sts-dev.csv": "80116c340747a966f732644e54085044",
    "sts-test-student.csv": "5a77eb8b5387f8f04c71a16bbc2d6b41",
    "ids-cfimdb-train.csv": "0db6dc7bdd4958f9804b60da301bffbe",
    "ids-cfimdb-dev.csv": "ed408ba236731ae8e97717f2faf1f5d7",
    "ids-cfimdb-test-student.csv": "9356d1d225f15cd6afa6daaaebf61bba",
}

#: The full QQP training file is only known by its git blob id (no md5 was published).
QQP_TRAIN = "quora-train.csv"
QQP_TRAIN_BLOB_SHA1 = "a3b5546f6a0e65b60a328a5d294d1038f5bed1da"

#: Fetched when the source has them, but no checksum is known, so they are reported as
#: unverified and their absence is not an error.
OPTIONAL_UNVERIFIED = ("quora-test-student.csv",)

TIMEOUT_S = 30
CHUNK = 1 << 20


def git_blob_sha1(path: Path) -> str:
    """The id git gives the file's content: sha1 of ``b"blob <size>\\0" + content``."""
    size = path.stat().st_size
    h = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def expected_hash(name: str) -> tuple[str, str] | None:
    """(kind, hex) a file must match, or None when no checksum is known."""
    if name == QQP_TRAIN:
        return "git-blob-sha1", QQP_TRAIN_BLOB_SHA1
    if name in KNOWN_MD5:
        return "md5", KNOWN_MD5[name]
    return None


def actual_hash(path: Path, kind: str) -> str:
    return git_blob_sha1(path) if kind == "git-blob-sha1" else file_md5(path)


def verify_file(path: Path) -> bool | None:
    """True/False against the known checksum of its name; None when none is known."""
    exp = expected_hash(path.name)
    if exp is None:
        return None
    return actual_hash(path, exp[0]) == exp[1]


class _Unavailable(Exception):
    """The source does not hold this file (404 or absent from the mirror)."""


class _Source:
    def __init__(self, source: str):
        self.raw = source
        self.is_url = "://" in source
        if self.is_url:
            self.base = source if source.endswith("/") else source + "/"
        else:
            self.dir = Path(source).expanduser()
            if not self.dir.is_dir():
                raise DataError(
                    f"mirror folder {self.dir} does not exist; pass --from a folder with the CS224N csv files."
                )

    def where(self, name: str) -> str:
        return self.base + name if self.is_url else str(self.dir / name)

    def copy_to(self, name: str, out) -> int:
        """Write the file's bytes to ``out``; returns the byte count."""
        if not self.is_url:
            src = self.dir / name
            if not src.is_file():
                raise _Unavailable(name)
            with open(src, "rb") as f:
                shutil.copyfileobj(f, out, CHUNK)
            return src.stat().st_size
        url = self.base + name
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
                n = 0
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    out.write(chunk)
                    n += len(chunk)
                return n
        except urllib.error.HTTPError as err:
            if err.code == 404:
                raise _Unavailable(name) from None
            raise DataError(f"download of {url} failed (HTTP {err.code} {err.reason}).") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise DataError(
                f"cannot reach {self.base} ({reason}); offline, copy from a local mirror with "
                "`mtsearch data fetch --from DIR` (a folder holding the CS224N csv files)."
            ) from None


def _fetch_one(src: _Source, name: str, dest: Path) -> tuple[Path, int]:
    """Fetch ``name`` into ``dest`` atomically after verifying it; returns (path, bytes)."""
    exp = expected_hash(name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            size = src.copy_to(name, out)
            out.flush()
            os.fsync(out.fileno())
        if exp is not None:
            kind, want = exp
            got = actual_hash(tmp, kind)
            if got != want:
                raise DataError(
                    f"{name} from {src.where(name)} has {kind} {got}, expected {want}; "
                    "the source holds a different file, so it was not installed."
                )
        os.chmod(tmp, 0o644)
        target = dest / name
        os.replace(tmp, target)
        return target, size
    finally:
        if tmp.exists():
            tmp.unlink()


def _present_ok(path: Path) -> bool:
    return path.is_file() and verify_file(path) is not False


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def fetch_data(dest: Path, source: str | None, progress: bool = True) -> list[dict]:
    """Fill ``dest`` from ``source`` (a mirror folder or a URL base; default: the course repo).

    Files already present with the right checksum are skipped. The full QQP training
    file is preferred; when the source lacks it, the 22,646-pair subset is accepted.
    Returns one record per file: name, status, bytes, checksum and where it came from.
    """
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    src = _Source(source or DEFAULT_SOURCE)
    names = [n for n in KNOWN_MD5 if n != QQP_TRAIN_FALLBACK]
    plan: list[tuple[str, bool]] = [(n, True) for n in names]
    plan.append((QQP_TRAIN, True))
    plan += [(n, False) for n in OPTIONAL_UNVERIFIED]

    records: list[dict] = []
    missing: list[str] = []
    total = len(plan)
    for i, (name, required) in enumerate(plan, start=1):
        tag = f"[{i}/{total}] {name}"
        if name == QQP_TRAIN:
            rec = _fetch_qqp_train(src, dest, tag, progress)
            if rec is None:
                missing.append(f"{QQP_TRAIN} (or {QQP_TRAIN_FALLBACK})")
            else:
                records.append(rec)
            continue
        target = dest / name
        exp = expected_hash(name)
        if _present_ok(target):
            records.append(_record(name, "present" if exp else "unverified", target, exp, src))
            _say(progress, f"{tag}: already present, {f'{exp[0]} ok' if exp else 'no known checksum'}")
            continue
        try:
            path, size = _fetch_one(src, name, dest)
        except _Unavailable:
            if required:
                missing.append(name)
                _say(progress, f"{tag}: not in {src.raw}")
            else:
                records.append({"file": name, "status": "absent", "source": src.where(name)})
                _say(progress, f"{tag}: not in source (optional, skipped)")
            continue
        status = "fetched" if exp is not None else "unverified"
        records.append(_record(name, status, path, exp, src))
        check = f"{exp[0]} ok" if exp else "no known checksum"
        _say(progress, f"{tag}: {_mb(size)} {'downloaded' if src.is_url else 'copied'}, {check}")
    if missing:
        raise DataError(f"{src.raw} lacks {', '.join(missing)}; files found there were installed in {dest}.")
    return records


def _record(name: str, status: str, path: Path, exp: tuple[str, str] | None, src: _Source) -> dict:
    rec = {"file": name, "status": status, "bytes": path.stat().st_size, "source": src.where(name)}
    rec["md5"] = KNOWN_MD5[name] if exp and exp[0] == "md5" else file_md5(path)
    if exp and exp[0] == "git-blob-sha1":
        rec["git_blob_sha1"] = exp[1]
    return rec


def _fetch_qqp_train(src: _Source, dest: Path, tag: str, progress: bool) -> dict | None:
    full, subset = dest / QQP_TRAIN, dest / QQP_TRAIN_FALLBACK
    if full.is_file() and verify_file(full):
        _say(progress, f"{tag}: already present, git blob ok")
        return _record(QQP_TRAIN, "present", full, expected_hash(QQP_TRAIN), src)
    try:
        path, size = _fetch_one(src, QQP_TRAIN, dest)
        _say(progress, f"{tag}: {_mb(size)} {'downloaded' if src.is_url else 'copied'}, git blob ok")
        return _record(QQP_TRAIN, "fetched", path, expected_hash(QQP_TRAIN), src)
    except _Unavailable:
        pass
    # The full file is not on this source: the subset is the accepted stand-in.
    sub_tag = f"{tag} -> {QQP_TRAIN_FALLBACK}"
    exp = expected_hash(QQP_TRAIN_FALLBACK)
    if _present_ok(subset):
        _say(progress, f"{sub_tag}: full file not in source; subset already present, md5 ok")
        return _record(QQP_TRAIN_FALLBACK, "present", subset, exp, src)
    try:
        path, size = _fetch_one(src, QQP_TRAIN_FALLBACK, dest)
    except _Unavailable:
        _say(progress, f"{tag}: neither it nor {QQP_TRAIN_FALLBACK} is in {src.raw}")
        return None
    _say(progress, f"{sub_tag}: full file not in source; {_mb(size)} subset copied, md5 ok")
    return _record(QQP_TRAIN_FALLBACK, "fetched", path, exp, src)
