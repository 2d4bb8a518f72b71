"""`mtsearch reproduce`: the published scores file, the table beside the paper, --published, --all."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mtsearch.cli import main
from mtsearch.reproduce import course_overall, plain_mean, published_scores, reproducible_presets
from mtsearch.sweep.space import list_presets

TINY = [
    "model=tiny", "freeze_layers=0", "train_limit=64", "max_steps=30", "eval_every_epochs=null", "eval_every=30",
    "eval_limit=30", "final_eval=false", "max_length=32", "simcse_epochs=null", "simcse_steps=2",
    "simcse_batch_size=16", "mlflow=false", "progress=false", "num_threads=1",
]  # fmt: skip


def _set(data_dir) -> list[str]:
    return [arg for item in [*TINY, f"data_dir={data_dir}"] for arg in ("--set", item)]


def test_published_scores_name_their_report_and_agree_with_what_the_reports_printed():
    rows = published_scores()
    assert {(r.report, r.split) for r in rows} >= {
        ("000", "dev"),
        ("001", "dev"),
        ("002", "dev"),
        ("004", "dev"),
    }
    assert set(reproducible_presets()) <= set(list_presets())
    for r in rows:
        assert r.title and r.authors and r.preset
        if r.printed_overall is not None:  # the report's own overall, in its own convention
            computed = course_overall(r.scores) if r.printed_convention == "course" else plain_mean(r.scores)
            assert computed == pytest.approx(r.printed_overall, abs=1e-3)
    # by hand, 001 dev: (0.523 + 0.905 + (0.875 + 1) / 2) / 3 = 0.7885; plain (0.523 + 0.905 + 0.875) / 3
    r001 = next(r for r in rows if r.report == "001" and r.split == "dev")
    assert course_overall(r001.scores) == pytest.approx(0.7885)
    assert plain_mean(r001.scores) == pytest.approx(2.303 / 3)


def test_published_prints_the_table_alone_without_training(capsys, runs):
    assert main(["reproduce", "--published"]) == 0
    out = capsys.readouterr().out
    for r in published_scores():
        assert r.title in out and r.preset in out
    assert "0.7885 (course formula)" in out and "0.582 (plain mean)" in out
    assert not runs.exists()  # nothing trained, nothing written


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["reproduce"], "give a PRESET, --published or --all"),
        (["reproduce", "baseline"], "preset 'baseline' reproduces no published system"),
        (["reproduce", "--all", "--published"], "got --published and --all"),
        (["reproduce", "attention_separate_updates", "--profile", "tpu"], "profile 'tpu' is not defined"),
        (["reproduce", "attention_separate_updates", "--set", "lrr=1"], "unknown config key 'lrr'"),
    ],
)
def test_bad_requests_end_in_one_line(argv, fragment, capsys, runs):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtsearch: error: ") and fragment in err and len(err.strip().splitlines()) == 1


def test_one_preset_prints_its_scores_beside_the_papers(small_data_dir, runs, capsys):
    assert main(["reproduce", "attention_separate_updates", *_set(small_data_dir)]) == 0
    out = capsys.readouterr().out
    run_dir = runs / "reproduce" / "cpu" / "attention_separate_updates"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "finished"
    scores = result["best"]["scores"]
    # Every measure's label is two words, then the columns: ours, paper (dev), ours - paper.
    lines = {line.split("  ")[0]: line.split() for line in out.splitlines() if line[:1].isalpha()}
    assert float(lines["sst acc"][2]) == pytest.approx(scores["sst"], abs=1e-4)
    assert float(lines["sst acc"][3]) == pytest.approx(0.504)  # the paper's dev SST
    assert float(lines["overall (course)"][2]) == pytest.approx(course_overall(scores), abs=1e-4)
    # the paper's, by hand from 002's dev scores: (0.504 + 0.869 + (0.868 + 1) / 2) / 3 = 0.769
    assert float(lines["overall (course)"][3]) == pytest.approx(0.769, abs=1e-4)
    assert float(lines["plain mean"][2]) == pytest.approx(plain_mean(scores), abs=1e-4)
    assert 'report 002 "Multi-Task Learning BERT Model with Task-Specific Decoders" (Li)' in out
    assert "all-MiniLM-L6-v2" in out  # the encoder caveat


def test_all_runs_every_preset_and_writes_the_table(small_data_dir, runs, capsys):
    assert main(["reproduce", "--all", *_set(small_data_dir)]) == 0
    out = capsys.readouterr().out
    csv_path, md_path = runs / "reproduce" / "reproduce-cpu.csv", runs / "reproduce" / "reproduce-cpu.md"
    assert f"tables: {csv_path}, {md_path}" in out
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["preset"] for r in rows] == reproducible_presets()
    assert [r["report"] for r in rows] == ["000", "001", "002", "004"]
    paper = {p.preset: p for p in published_scores() if p.split == "dev"}
    for row in rows:
        assert row["status"] == "finished" and row["model"] == "tiny" and row["profile"] == "cpu"
        result = json.loads((runs / "reproduce" / "cpu" / row["preset"] / "result.json").read_text())
        ours = result["best"]["scores"]
        assert float(row["sts"]) == pytest.approx(ours["sts"], abs=1e-4)
        assert float(row["overall_course"]) == pytest.approx(course_overall(ours), abs=1e-4)
        assert float(row["plain_mean"]) == pytest.approx(plain_mean(ours), abs=1e-4)
        assert float(row["sts_paper"]) == pytest.approx(paper[row["preset"]].scores["sts"])
        assert float(row["plain_mean_paper"]) == pytest.approx(
            plain_mean(paper[row["preset"]].scores), abs=1e-4
        )
    md = md_path.read_text()
    assert md.count("\n| 0") == 4 and "overall_course_paper" in md and "all-MiniLM-L6-v2" in md


def test_gpu_profile_chooses_and_scores_on_the_full_dev_sets_and_says_so(small_data_dir, runs, capsys):
    """The reports chose the best epoch on the full dev sets and printed its scores there: the
    gpu profile does the same (no held-out half), and the label and the scored rows say so."""
    from mtsearch.data.loaders import load_split
    from mtsearch.reproduce import FULL_DEV

    full = [*TINY, "eval_limit=null"]  # the gpu profiles evaluate every dev row
    argv = [arg for item in [*full, f"data_dir={small_data_dir}"] for arg in ("--set", item)]
    assert main(["reproduce", "attention_separate_updates", "--profile", "gpu", *argv]) == 0
    out = capsys.readouterr().out
    run_dir = runs / "reproduce" / "gpu" / "attention_separate_updates"
    sizes = {t: len(load_split(t, "dev", small_data_dir).examples) for t in ("sst", "para", "sts")}
    with np.load(run_dir / "eval_examples.npz") as z:
        assert str(z["which"]) == "eval_rows"  # not "half_b": no held-out half chose the checkpoint
        for t, n in sizes.items():  # every dev row scored, each once
            assert sorted(z[f"{t}.index"].tolist()) == list(range(n))
    result = json.loads((run_dir / "result.json").read_text())
    assert result["best"]["chosen_on"] == "eval_rows"
    assert (
        f"ours: scored on {FULL_DEV} (sst {sizes['sst']}, para {sizes['para']}, sts {sizes['sts']} rows)"
        in out
    )
    assert "QQP training file: quora-train" in out  # which file was read, full or subset


def test_a_held_out_half_is_labelled_as_such(small_data_dir, runs, capsys):
    """Asked for held_out_score explicitly, the score is half B's, and the label says so."""
    from mtsearch.reproduce import HALF_B

    items = [*TINY, "eval_limit=null", "held_out_score=true", f"data_dir={small_data_dir}"]
    argv = [arg for item in items for arg in ("--set", item)]
    assert main(["reproduce", "attention_separate_updates", "--profile", "gpu", *argv]) == 0
    assert f"ours: scored on {HALF_B}" in capsys.readouterr().out
