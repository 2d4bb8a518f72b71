"""More data in a run: extra_data rows appended to a task, and the optional cfimdb task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mtsearch.train.trainer as trainer
from mtsearch.errors import ConfigError, DataError
from mtsearch.records import read_metrics
from mtsearch.tasks import overall_score
from mtsearch.train import train
from tests.helpers import tiny_config

# STS train format; line 3 is malformed (a label above 5), the other three are used.
EXTRA_STS = (
    "\tid\tsentence1\tsentence2\tsimilarity\n"
    "0\tx-1\tA cat sits on a mat .\tA cat is sitting on a mat .\t4.6\n"
    "1\tx-2\tA broken row .\tIts label is too high .\t7.5\n"
    "2\tx-3\tA man cooks .\tThe stock market fell .\t0.2\n"
    "3\tx-4\tTwo dogs play .\tDogs are playing .\t3.9\n"
)


@pytest.fixture
def seen_train(monkeypatch):
    """The training encodings the loop receives, per task (captured from the data stage)."""
    seen: dict = {}
    real = trainer.load_data

    def load_data(config, runtime):
        data = real(config, runtime)
        seen.update(data.enc_train)
        return data

    monkeypatch.setattr(trainer, "load_data", load_data)
    return seen


def test_extra_rows_are_appended_and_fingerprinted(small_data_dir, runs, tmp_path, seen_train):
    extra = tmp_path / "more-sts.csv"
    extra.write_text(EXTRA_STS)
    result = train(
        tiny_config(small_data_dir, name="x", train_limit=48, max_steps=2, extra_data={"sts": str(extra)})
    )
    assert result.status == "finished"
    sizes = {t: len(e) for t, e in seen_train.items()}
    assert sizes == {"sst": 48, "para": 48, "sts": 48 + 3}  # the three good rows, on top of train_limit
    sts = seen_train["sts"]
    assert sts.ids[-3:] == ["x-1", "x-3", "x-4"]
    assert sts.labels[-3:].tolist() == pytest.approx([4.6, 0.2, 3.9])
    env = json.loads((result.run_dir / "env.json").read_text())
    rows = [r for r in env["data"] if r.get("extra")]
    assert rows == [
        {
            "task": "sts",
            "split": "train",
            "file": "more-sts.csv",
            "rows": 3,
            "used": 3,
            "md5": rows[0]["md5"],
            "defects": 1,
            "extra": True,
            "path": str(extra),
        }
    ]
    assert len(rows[0]["md5"]) == 32


def test_extra_data_errors_stop_the_run_before_any_run_directory(small_data_dir, runs, tmp_path):
    missing = tmp_path / "absent.csv"
    with pytest.raises(ConfigError, match=rf"extra_data\.sst: {missing} does not exist"):
        train(tiny_config(small_data_dir, extra_data={"sst": str(missing)}))
    bad = tmp_path / "bad-sts.csv"
    bad.write_text(EXTRA_STS)
    with pytest.raises(DataError, match=r"extra_data\.sts: .*bad-sts\.csv:3: label 7\.5 out of range"):
        train(tiny_config(small_data_dir, strict_data=True, extra_data={"sts": str(bad)}))
    with pytest.raises(ConfigError, match=r"extra_data names 'cfimdb'.*not in tasks"):
        tiny_config(small_data_dir, extra_data={"cfimdb": str(bad)})
    with pytest.raises(ConfigError, match=r"extra_data: unknown task 'stsb'"):
        tiny_config(small_data_dir, extra_data={"stsb": str(bad)})
    assert not runs.exists() or not any(runs.iterdir())


def test_cfimdb_trains_end_to_end_with_long_reviews_truncated(small_data_dir, runs, seen_train):
    from mtsearch.data import encode_split, load_split
    from mtsearch.models.encoder import load_tokenizer, resolve_model

    cfg = tiny_config(
        small_data_dir, name="cf", tasks=["sst", "para", "sts", "cfimdb"], train_limit=48, max_steps=2
    )
    result = train(cfg)
    assert result.status == "finished" and result.steps == 2
    # Reviews run to hundreds of tokens (median ~200 with this tokenizer): each is cut to
    # max_length (64), [CLS] ... [SEP] included.
    cf = seen_train["cfimdb"]
    full = encode_split(
        load_split("cfimdb", "train", small_data_dir, warn=False), load_tokenizer(resolve_model("tiny")), 512
    )
    full_len = dict(zip(full.ids, full.segments["a"].lengths().tolist(), strict=True))
    assert np.median(list(full_len.values())) > 2 * cfg.max_length
    assert cf.segments["a"].lengths().tolist() == [min(full_len[i], cfg.max_length) for i in cf.ids]
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    scores = evals[-1]["scores"]
    assert set(scores) == {"sst", "para", "sts", "cfimdb"} and 0.0 <= scores["cfimdb"] <= 1.0
    assert "cfimdb" in evals[-1]["train_loss"] and np.isfinite(evals[-1]["train_loss"]["cfimdb"])
    # cfimdb is reported but, as an auxiliary task, not part of the overall score
    assert evals[-1]["overall"] == pytest.approx(
        overall_score({t: scores[t] for t in ("sst", "para", "sts")})
    )
    env = json.loads((result.run_dir / "env.json").read_text())
    assert {"ids-cfimdb-train.csv", "ids-cfimdb-dev.csv"} <= {r["file"] for r in env["data"]}


def test_extra_cfimdb_rows_and_a_path_relative_to_the_working_directory(
    small_data_dir, runs, tmp_path, monkeypatch, seen_train
):
    monkeypatch.chdir(tmp_path)
    Path("reviews.csv").write_text(
        "\tid\tsentence\tsentiment\n0\tr-1\tA long and lovely film , warmly acted .\t1\n1\tr-2\tDull .\t0\n"
    )
    cfg = tiny_config(
        small_data_dir,
        tasks=["sst", "cfimdb"],
        train_limit=16,
        max_steps=1,
        extra_data={"cfimdb": "reviews.csv"},
    )
    assert train(cfg).status == "finished"
    assert seen_train["cfimdb"].ids[-2:] == ["r-1", "r-2"] and len(seen_train["cfimdb"]) == 18


def test_extra_rows_with_frozen_layers_run_uncached_for_that_task(small_data_dir, runs, tmp_path):
    # The joined split has no line numbers to find its rows in the activation cache: that
    # task keeps the uncached forward (the same values), the others use the cache.
    extra = tmp_path / "more-sts.csv"
    extra.write_text(EXTRA_STS)
    cfg = tiny_config(
        small_data_dir,
        name="fz",
        freeze_layers=1,
        max_steps=1,
        train_limit=32,
        extra_data={"sts": str(extra)},
    )
    result = train(cfg)
    cache = json.loads((result.run_dir / "env.json").read_text())["model"]["activation_cache"]
    assert result.status == "finished" and cache["skipped"] == ["sts-train"]
