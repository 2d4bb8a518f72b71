"""fetch_data from a mirror folder and over HTTP, with checksums and the QQP subset rule."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import pytest

import mtsearch.data.fetch as fetch
from mtsearch.data import fetch_data
from mtsearch.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
FILES = ("ids-sst-dev.csv", "sts-dev.csv", "quora-train-subset.csv")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch) -> Path:
    """A mirror with three fixture files; the md5 table is narrowed to exactly those."""
    src = tmp_path / "mirror"
    src.mkdir()
    for name in FILES:
        shutil.copy(FIXTURES / name, src / name)
    monkeypatch.setattr(fetch, "KNOWN_MD5", {n: md5(src / n) for n in FILES})
    return src


def statuses(records: list[dict]) -> dict[str, str]:
    return {r["file"]: r["status"] for r in records}


def test_copy_from_mirror_accepts_the_qqp_subset(mirror: Path, tmp_path: Path, capsys):
    dest = tmp_path / "data" / "cs224n"
    recs = fetch_data(dest, str(mirror))
    assert statuses(recs) == {
        "ids-sst-dev.csv": "fetched",
        "sts-dev.csv": "fetched",
        "quora-train-subset.csv": "fetched",
        "quora-test-student.csv": "absent",
    }
    for name in FILES:
        assert (dest / name).read_bytes() == (mirror / name).read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)  # no temp files left
    err = capsys.readouterr().err
    assert "ids-sst-dev.csv" in err and "md5 ok" in err and "subset" in err
    assert next(r for r in recs if r["file"] == "sts-dev.csv")["md5"] == md5(mirror / "sts-dev.csv")


def test_skip_files_already_present(mirror: Path, tmp_path: Path, capsys):
    dest = tmp_path / "dest"
    fetch_data(dest, str(mirror), progress=False)
    before = {n: (dest / n).stat().st_mtime_ns for n in FILES}
    recs = fetch_data(dest, str(mirror), progress=False)
    assert {statuses(recs)[n] for n in FILES} == {"present"}
    assert {n: (dest / n).stat().st_mtime_ns for n in FILES} == before
    assert capsys.readouterr().err == ""


def test_wrong_file_in_dest_is_replaced(mirror: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sts-dev.csv").write_text("stale\n")
    recs = fetch_data(dest, str(mirror), progress=False)
    assert statuses(recs)["sts-dev.csv"] == "fetched"
    assert md5(dest / "sts-dev.csv") == md5(mirror / "sts-dev.csv")


def test_checksum_mismatch_names_file_and_both_hashes(mirror: Path, tmp_path: Path, monkeypatch):
    table = dict(fetch.KNOWN_MD5)
    table["sts-dev.csv"] = "0" * 32
    monkeypatch.setattr(fetch, "KNOWN_MD5", table)
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as exc:
        fetch_data(dest, str(mirror), progress=False)
    msg = str(exc.value)
    assert "sts-dev.csv" in msg and "0" * 32 in msg and md5(mirror / "sts-dev.csv") in msg
    assert not (dest / "sts-dev.csv").exists()
    assert not [p for p in dest.iterdir() if p.name.endswith(".part")]


def test_full_qqp_file_preferred_and_verified_by_git_blob(mirror: Path, tmp_path: Path, monkeypatch):
    full = mirror / "quora-train.csv"
    full.write_bytes((FIXTURES / "quora-dev.csv").read_bytes())
    data = full.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    monkeypatch.setattr(fetch, "QQP_TRAIN_BLOB_SHA1", blob)
    recs = fetch_data(tmp_path / "a", str(mirror), progress=False)
    assert statuses(recs)["quora-train.csv"] == "fetched"
    assert "quora-train-subset.csv" not in statuses(recs)
    assert not (tmp_path / "a" / "quora-train-subset.csv").exists()

    monkeypatch.setattr(fetch, "QQP_TRAIN_BLOB_SHA1", "f" * 40)
    with pytest.raises(DataError, match=f"quora-train.csv .*git-blob-sha1 {blob}, expected {'f' * 40}"):
        fetch_data(tmp_path / "b", str(mirror), progress=False)


def test_mirror_missing_a_required_file(mirror: Path, tmp_path: Path):
    (mirror / "sts-dev.csv").unlink()
    with pytest.raises(DataError, match="lacks sts-dev.csv"):
        fetch_data(tmp_path / "dest", str(mirror), progress=False)
    assert (tmp_path / "dest" / "ids-sst-dev.csv").is_file()  # what was there got installed
    with pytest.raises(DataError, match="does not exist"):
        fetch_data(tmp_path / "dest", str(tmp_path / "no-such-mirror"), progress=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_says_what_to_set(tmp_path: Path):
    url = f"http://127.0.0.1:{_closed_port()}/data/"
    with pytest.raises(DataError) as exc:
        fetch_data(tmp_path / "dest", url, progress=False)
    msg = str(exc.value)
    assert f"cannot reach {url}" in msg and "--from DIR" in msg
    assert msg.count(". ") == 0  # one sentence
    assert not list((tmp_path / "dest").iterdir())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def http_mirror(mirror: Path):
    handler = functools.partial(_QuietHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_download_over_http(http_mirror: str, mirror: Path, tmp_path: Path, capsys):
    dest = tmp_path / "dest"
    recs = fetch_data(dest, http_mirror)
    st = statuses(recs)
    assert st["quora-train-subset.csv"] == "fetched"  # full file 404s: the subset is accepted
    assert st["quora-test-student.csv"] == "absent"
    for name in FILES:
        assert (dest / name).read_bytes() == (mirror / name).read_bytes()
    assert "downloaded" in capsys.readouterr().err
    assert {statuses(fetch_data(dest, http_mirror, progress=False))[n] for n in FILES} == {"present"}


def test_fetch_the_real_mirror(real_data: Path, tmp_path: Path):
    recs = fetch_data(tmp_path / "cs224n", str(real_data), progress=False)
    st = statuses(recs)
    assert st.pop("quora-test-student.csv") == "absent"
    assert set(st.values()) == {"fetched"} and len(st) == 11
    assert "quora-train.csv" not in st
