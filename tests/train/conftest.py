"""A small copy of the real data for trainer tests that touch whole files.

The activation cache covers every row of a data file (like the token cache), so a test
on the real files would encode all of QQP through the tiny model; the first 120 rows of
each file keep those tests to a second or two.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL_ROWS = 120


@pytest.fixture(scope="session")
def small_data_dir(data_dir: Path, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("small-data")
    for src in sorted(data_dir.glob("*.csv")):
        with open(src, "rb") as f:
            lines = [line for _, line in zip(range(SMALL_ROWS + 1), f, strict=False)]  # header + rows
        (dest / src.name).write_bytes(b"".join(lines))
    return dest
