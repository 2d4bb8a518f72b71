"""Extra labelled rows from a user's file: loading, errors, fingerprint, joining encodings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from mtsearch.data import (
    collate,
    concat_encoded,
    encode_split,
    fingerprint,
    load_extra,
    load_split,
    require_extra_files,
)
from mtsearch.errors import ConfigError, DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"

# SST train format: a leading index column, id, sentence, sentiment (0..4). Line 4 has a
# label out of range, the only defect.
EXTRA_SST = (
    "\tid\tsentence\tsentiment\n"
    "0\tx-1\tAn extra good row .\t4\n"
    "1\tx-2\tAnother extra row .\t0\n"
    "2\tx-3\tA label out of range .\t9\n"
    "3\tx-4\tThe last extra row .\t2\n"
)


@pytest.fixture
def extra_sst(tmp_path: Path) -> Path:
    path = tmp_path / "my-sst.csv"
    path.write_text(EXTRA_SST)
    return path


def test_extra_rows_load_like_the_task_file_and_count_defects(extra_sst, caplog):
    split = load_extra("sst", extra_sst)
    assert [e.id for e in split.examples] == ["x-1", "x-2", "x-4"]
    assert [e.label for e in split.examples] == [4.0, 0.0, 2.0]
    assert [(d.line, d.reason) for d in split.defects] == [(4, "label 9 out of range [0, 4] (sentiment)")]
    assert split.task == "sst" and split.split == "train" and split.extra
    assert "skipped 1 malformed row(s) in" in caplog.text and "my-sst.csv:4" in caplog.text


def test_strict_mode_stops_at_the_first_bad_extra_row(extra_sst):
    with pytest.raises(DataError, match=r"extra_data\.sst: .*my-sst\.csv:4: label 9 out of range"):
        load_extra("sst", extra_sst, strict=True)


def test_fingerprint_names_the_extra_file(extra_sst):
    main = load_split("sst", "train", FIXTURES, warn=False)
    extra = load_extra("sst", extra_sst, warn=False)
    rows = fingerprint([main, extra])
    assert "extra" not in rows[0]
    assert rows[1] == {
        "task": "sst",
        "split": "train",
        "file": "my-sst.csv",
        "rows": 3,
        "used": 3,
        "md5": hashlib.md5(EXTRA_SST.encode()).hexdigest(),
        "defects": 1,
        "extra": True,
        "path": str(extra_sst),
    }


def test_missing_or_wrong_files_are_refused_naming_the_field_and_path(tmp_path: Path, extra_sst):
    assert require_extra_files({"sst": str(extra_sst)}) == {"sst": extra_sst}
    missing = tmp_path / "nope.csv"
    with pytest.raises(ConfigError, match=rf"extra_data\.sts: {missing} does not exist"):
        require_extra_files({"sst": str(extra_sst), "sts": str(missing)})
    with pytest.raises(ConfigError, match=rf"extra_data\.sst: {tmp_path} is a folder"):
        require_extra_files({"sst": str(tmp_path)})
    # a file of another task's format: the columns are not those of the task
    with pytest.raises(DataError, match=r"extra_data\.sts: .*my-sst\.csv has no column 'sentence1'"):
        load_extra("sts", extra_sst)
    only_bad = tmp_path / "bad.csv"
    only_bad.write_text("\tid\tsentence\tsentiment\n0\tb-1\tNo label here .\t\n")
    with pytest.raises(DataError, match=r"extra_data\.sst: .*bad\.csv has no usable rows \(1 malformed\)"):
        load_extra("sst", only_bad)


@pytest.mark.parametrize("task, mode", [("sst", "concat"), ("sts", "concat"), ("sts", "separate")])
def test_concat_encoded_is_the_two_splits_one_after_the_other(tokenizer, tmp_path: Path, task, mode):
    main = load_split(task, "train", FIXTURES, warn=False)
    both = load_split(task, "train", FIXTURES, warn=False)
    half = len(main.examples) // 2
    # two "files": the fixture's first half and second half, encoded apart
    first = encode_split(
        type(main)(task, "train", main.path, main.examples[:half], [], "a" * 32),
        tokenizer,
        32,
        mode,
        tmp_path,
    )
    second = encode_split(
        type(main)(task, "train", main.path, main.examples[half:], [], "b" * 32),
        tokenizer,
        32,
        mode,
        tmp_path,
    )
    whole = encode_split(both, tokenizer, 32, mode, tmp_path)
    joined = concat_encoded(first, second)
    assert joined.ids == whole.ids and np.array_equal(joined.labels, whole.labels)
    assert joined.lines is None and joined.hidden is None  # rows of two files: no cache rows
    idx = np.arange(len(whole))
    got, want = collate(joined, idx), collate(whole, idx)
    for g, w in zip(got["inputs"], want["inputs"], strict=True):
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert g[key].equal(w[key]), key


def test_concat_encoded_refuses_different_tasks_or_encodings(tokenizer, tmp_path: Path):
    sts = load_split("sts", "train", FIXTURES, warn=False)
    sst = load_split("sst", "train", FIXTURES, warn=False)
    a = encode_split(sts, tokenizer, 32, "concat", tmp_path)
    with pytest.raises(ValueError, match="cannot join sts/train with sst/train"):
        concat_encoded(a, encode_split(sst, tokenizer, 32, "concat", tmp_path))
    with pytest.raises(ValueError, match=r"cannot join encodings \('ab',\)"):
        concat_encoded(a, encode_split(sts, tokenizer, 32, "separate", tmp_path))
