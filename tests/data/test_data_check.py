"""The text of `mtsearch data check` on the fixture folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtsearch.data import check_report
from mtsearch.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def test_report_counts_labels_and_defects():
    text = check_report(FIXTURES)
    lines = text.splitlines()
    assert lines[0] == f"data folder: {FIXTURES}"
    assert "sst train: ids-sst-train.csv  7 usable sentences, 8 defect(s)" in lines
    assert "    defect ids-sst-train.csv:11: unterminated quote" in lines
    assert "    defect ids-sst-train.csv:9: missing field: expected 4 fields, found 3" in lines
    assert (
        "para train: quora-train-subset.csv  3 usable pairs, 2 defect(s)  (subset of the full QQP training file)"
        in lines
    )
    assert "    labels: 0: 2 (50.0%)  1: 2 (50.0%)" in lines  # para dev
    assert "    labels: min 0.00  mean 3.24  max 5.00" in lines  # sts train
    assert (
        "    histogram: [0,0.5): 1  [0.5,1.5): 0  [1.5,2.5): 0  [2.5,3.5): 1  [3.5,4.5): 1  [4.5,5]: 2"
        in lines
    )
    assert "(md5 differs from the course release)" in text  # fixtures are not the real files
    assert "missing: quora-test-student.csv, ids-cfimdb-train.csv, ids-cfimdb-test-student.csv" in lines
    test_block = lines[lines.index("sts test: sts-test-student.csv  2 usable pairs, 0 defect(s)") + 1 :][:2]
    assert not any("labels" in x for x in test_block)


def test_report_strict_stops_at_first_defect():
    with pytest.raises(DataError, match=r"ids-sst-train\.csv:4"):
        check_report(FIXTURES, strict=True)
