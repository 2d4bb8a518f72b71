"""Loaders on hand-made fixture files that hold every kind of defect."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from mtsearch.data import Defect, fingerprint, load_split, require_files, resolve_data_dir
from mtsearch.errors import DataError
from mtsearch.tasks import QQP_TRAIN_FALLBACK

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"

SST_DEFECTS = {
    4: "class label 2.5 is not a whole number (sentiment)",
    5: "label 7 out of range [0, 4] (sentiment)",
    6: "non-numeric label 'positive' (sentiment)",
    8: "empty sentence (sentence)",
    9: "missing field: expected 4 fields, found 3",
    10: "empty label (sentiment)",
    11: "unterminated quote",
    15: "empty id",
}


def test_sst_train_every_defect_kind_counted_with_line_and_reason():
    s = load_split("sst", "train", FIXTURES, warn=False)
    assert [d.line for d in s.defects] == sorted(SST_DEFECTS)
    assert {d.line: d.reason for d in s.defects} == SST_DEFECTS
    assert all(d.file == "ids-sst-train.csv" for d in s.defects)
    assert [e.line for e in s.examples] == [2, 3, 7, 12, 13, 14, 16]
    assert len(s) == s.usable == 7


def test_good_rows_around_an_open_quote_survive_unmerged():
    s = load_split("sst", "train", FIXTURES, warn=False)
    by_line = {e.line: e for e in s.examples}
    assert by_line[12].text_a == "Good row right after the open quote ."
    assert by_line[12].label == 1.0
    assert by_line[13].text_a == 'Another "quoted" row .'
    assert by_line[3].text_a == 'A "quoted" sentence that is fine .'
    assert by_line[14].label == 3.0  # "3.0" is a whole number
    # The fixture is a real trap: one csv reader over the whole file merges lines 11-13.
    with open(FIXTURES / "ids-sst-train.csv", newline="", encoding="utf-8") as f:
        whole = list(csv.reader(f, delimiter="\t"))
    assert len(whole) < 16


def test_sentences_are_stripped_and_ids_kept():
    s = load_split("sst", "dev", FIXTURES)
    assert [(e.id, e.text_a, e.text_b, e.label) for e in s.examples] == [
        ("sst-dv-01", "Dev sentence one .", None, 0.0),
        ("sst-dv-02", "Dev sentence two .", None, 2.0),
        ("sst-dv-03", "Dev sentence three .", None, 4.0),
    ]
    assert s.defects == []


def test_odd_test_header_and_no_labels():
    s = load_split("sst", "test", FIXTURES, warn=False)
    assert [(e.id, e.text_a, e.label) for e in s.examples] == [
        ("sst-te-01", "Test sentence one .", None),
        ("sst-te-02", "Test sentence two .", None),
    ]
    assert s.defects == [Defect("ids-sst-test-student.csv", 4, "empty sentence (sentence)")]
    t = load_split("sts", "test", FIXTURES)
    assert [(e.text_a, e.text_b, e.label) for e in t.examples][0] == (
        "A child is smiling.",
        "A kid smiles.",
        None,
    )


def test_quora_published_defect_kind():
    s = load_split("para", "dev", FIXTURES, warn=False)
    assert [e.id for e in s.examples] == ["qd-01", "qd-02", "qd-04", "qd-06"]
    assert s.examples[1].text_a == '"Which word is right: "affect" or "effect"?"'
    assert [e.label for e in s.examples] == [1.0, 0.0, 1.0, 0.0]
    assert [d.line for d in s.defects] == [4, 6]
    assert s.defects[0].reason == "empty label (is_duplicate); sentence2 opens a quote that never closes"
    assert s.defects[1].reason.startswith("empty label (is_duplicate)")


def test_para_train_falls_back_to_subset_and_prefers_full(fixture_dir: Path):
    s = load_split("para", "train", fixture_dir, warn=False)
    assert s.path.name == QQP_TRAIN_FALLBACK
    assert len(s) == 3
    assert [(d.line, d.reason) for d in s.defects][1] == (
        6,
        "class label 0.5 is not a whole number (is_duplicate)",
    )
    full = fixture_dir / "quora-train.csv"
    full.write_text("\tid\tsentence1\tsentence2\tis_duplicate\n1\tf-1\tA?\tB?\t1.0\n", encoding="utf-8")
    s = load_split("para", "train", fixture_dir)
    assert s.path == full and len(s) == 1


def test_sts_range_and_fractional_scores():
    s = load_split("sts", "train", FIXTURES, warn=False)
    assert [e.label for e in s.examples] == pytest.approx([4.8, 0.0, 3.8, 2.6, 5.0])
    assert {d.line: d.reason for d in s.defects} == {
        5: "label 5.5 out of range [0.0, 5.0] (similarity)",
        6: "label -0.2 out of range [0.0, 5.0] (similarity)",
        7: "non-numeric label 'nan' (similarity)",
    }
    c = load_split("cfimdb", "dev", FIXTURES, warn=False)
    assert len(c) == 2 and c.defects[0].line == 4


def test_strict_raises_naming_file_line_and_reason():
    with pytest.raises(DataError) as exc:
        load_split("sst", "train", FIXTURES, strict=True)
    msg = str(exc.value)
    assert "ids-sst-train.csv:4" in msg and "not a whole number" in msg
    with pytest.raises(DataError, match=r"quora-dev\.csv:4: empty label"):
        load_split("para", "dev", FIXTURES, strict=True)
    load_split("sst", "dev", FIXTURES, strict=True)  # a clean file passes


def test_one_warning_per_file(caplog, monkeypatch):
    import mtsearch.data.loaders as loaders

    monkeypatch.setattr(loaders, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="mtsearch.data"):
        load_split("sst", "train", FIXTURES)
        load_split("sst", "train", FIXTURES)  # a sweep loads it for every run: warned once
    recs = [r for r in caplog.records if r.name == "mtsearch.data"]
    assert len(recs) == 1
    msg = recs[0].getMessage()
    assert "skipped 8 malformed row(s)" in msg and "ids-sst-train.csv:4" in msg and "and 5 more" in msg


def test_crlf_utf8_errors_and_blank_lines(tmp_path: Path):
    rows = [
        b"\tid\tsentence\tsentiment",
        b"0\ta\t Windows line ending .\t1",
        b"",
        b"1\tb\t Bad byte \xff here .\t2",
        b'2\tc\t"quoted, then junk"x\t3',
        b"3\td\t Fine .\t0",
    ]
    (tmp_path / "ids-sst-dev.csv").write_bytes(b"\r\n".join(rows) + b"\r\n")
    s = load_split("sst", "dev", tmp_path, warn=False)
    assert [(e.id, e.text_a) for e in s.examples] == [("a", "Windows line ending ."), ("d", "Fine .")]
    assert [(d.line, d.reason.split(" (")[0]) for d in s.defects] == [
        (4, "not valid UTF-8"),
        (5, "malformed quoting"),
    ]


def test_limit_is_a_seeded_ordered_subset_and_keeps_file_identity():
    full = load_split("sst", "train", FIXTURES, warn=False)
    a = load_split("sst", "train", FIXTURES, warn=False, limit=4, seed=1)
    b = load_split("sst", "train", FIXTURES, warn=False, limit=4, seed=1)
    c = load_split("sst", "train", FIXTURES, warn=False, limit=4, seed=2)
    assert [e.line for e in a.examples] == [e.line for e in b.examples]
    assert len(a) == 4 and a.usable == 7 and a.md5 == full.md5
    assert [e.line for e in a.examples] == sorted(e.line for e in a.examples)
    assert {e.line for e in a.examples} <= {e.line for e in full.examples}
    assert [e.line for e in c.examples] != [e.line for e in a.examples]
    assert len(load_split("sst", "train", FIXTURES, warn=False, limit=100)) == 7
    fp = fingerprint([a])[0]
    assert fp == {
        "task": "sst",
        "split": "train",
        "file": "ids-sst-train.csv",
        "rows": 7,
        "used": 4,
        "md5": full.md5,
        "defects": 8,
    }


def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch):
    import mtsearch.data.loaders as loaders

    cli, env, default = tmp_path / "cli", tmp_path / "env", tmp_path / "default"
    for d in (cli, env, default):
        d.mkdir()
        (d / "sts-dev.csv").write_text("x\n")
    monkeypatch.setattr(loaders, "default_data_dir", lambda: default)
    monkeypatch.setenv("MTSEARCH_DATA", str(env))
    assert resolve_data_dir(str(cli)) == cli
    assert resolve_data_dir(None) == env
    monkeypatch.delenv("MTSEARCH_DATA")
    assert resolve_data_dir(None) == default


def test_resolve_data_dir_missing_folder_message(tmp_path: Path, monkeypatch):
    import mtsearch.data.loaders as loaders

    gone = tmp_path / "nowhere" / "cs224n"
    monkeypatch.delenv("MTSEARCH_DATA", raising=False)
    monkeypatch.setattr(loaders, "default_data_dir", lambda: gone)
    with pytest.raises(DataError) as exc:
        resolve_data_dir(None)
    msg = str(exc.value)
    assert msg.startswith(f"no data in {gone}") and "mtsearch data fetch --from DIR" in msg
    assert "MTSEARCH_DATA" in msg and "--data-dir" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no data in .*empty .from --data-dir"):
        resolve_data_dir(empty)
    assert resolve_data_dir(gone, must_exist=False) == gone


def test_require_files_names_the_missing_file(fixture_dir: Path):
    found = require_files(fixture_dir, ["sst", "para"], ["train", "dev"])
    assert found[("para", "train")].name == QQP_TRAIN_FALLBACK
    (fixture_dir / "ids-sst-dev.csv").unlink()
    with pytest.raises(DataError) as exc:
        require_files(fixture_dir, ["sst", "para"], ["train", "dev", "test"])
    msg = str(exc.value)
    assert "ids-sst-dev.csv" in msg and "quora-test-student.csv" in msg and str(fixture_dir) in msg
    assert "ids-sst-train.csv" not in msg
    with pytest.raises(DataError, match="ids-sst-dev.csv"):
        load_split("sst", "dev", fixture_dir)
