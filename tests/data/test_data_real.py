"""The real CS224N files beside the checkout (skipped when shared/ is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtsearch.data import check_report, collate, encode_split, fingerprint, load_split
from mtsearch.data.fetch import KNOWN_MD5


@pytest.mark.parametrize(
    "task,split,usable",
    [
        ("sst", "train", 8544),
        ("sst", "dev", 1101),
        ("sst", "test", 2210),
        ("sts", "train", 6040),
        ("sts", "dev", 863),
        ("sts", "test", 1725),
        ("cfimdb", "train", 1707),
        ("cfimdb", "dev", 245),
        ("cfimdb", "test", 488),
    ],
)
def test_clean_files(real_data: Path, task: str, split: str, usable: int):
    s = load_split(task, split, real_data, strict=True)
    assert len(s) == usable and s.defects == []
    assert s.md5 == KNOWN_MD5[s.path.name]


def test_quora_dev_and_train_subset(real_data: Path):
    dev = load_split("para", "dev", real_data, warn=False)
    assert len(dev) == 20212
    assert [d.line for d in dev.defects] == [2577, 14222]
    assert all(d.reason.startswith("empty label") for d in dev.defects)
    ids = [e.id for e in dev.examples]
    assert len(set(ids)) == len(ids)
    train = load_split("para", "train", real_data, warn=False)
    assert train.path.name == "quora-train-subset.csv"
    assert len(train) == 22644 and [d.line for d in train.defects] == [11662, 12412]
    fp = fingerprint([dev])[0]
    assert (fp["file"], fp["rows"], fp["defects"], fp["md5"]) == (
        "quora-dev.csv",
        20212,
        2,
        "b7990635a450e3402919bdd80d719157",
    )


def test_check_report_on_real_data(real_data: Path):
    text = check_report(real_data)
    assert "para dev: quora-dev.csv  20,212 usable pairs, 2 defect(s)" in text
    assert "quora-dev.csv:2577: empty label" in text and "quora-dev.csv:14222: empty label" in text
    assert "md5 differs" not in text


def test_real_tokenization_smoke(real_data: Path, tokenizer, tmp_path: Path):
    s = load_split("sts", "dev", real_data, limit=64, seed=0)
    enc = encode_split(s, tokenizer, 128, cache_dir=tmp_path)
    batch = collate(enc, range(16), pad_id=tokenizer.pad_token_id)
    (inp,) = batch["inputs"]
    assert inp["input_ids"].shape[1] == enc.lengths()[:16].max() <= 128
