"""The command line of a sweep: provisional tables per racing round, Ctrl-C, failing loudly, --trials on a grid.

Everything goes through the real ``mtsearch`` main() on the smoke space (tiny model). The
racing policy is the deterministic fake of the rounds tests (round after 2 seeds: the two
best go on; after 3: the best; then stop), so the rounds do not hang on the tiny model's
scores; the Ctrl-C is pressed at a named fault point, never after a delay.
"""

from __future__ import annotations

import json
import shlex
import shutil

import pytest

from mtsearch.cli import main
from mtsearch.sweep.keys import DONE
from mtsearch.sweep.provisional import MARK
from mtsearch.sweep.runner import load_runs
from tests.sweep.test_rounds import FakePolicy, racing_space


@pytest.fixture
def small_env(runs, small_data_dir, monkeypatch):
    monkeypatch.setenv("MTSEARCH_DATA", str(small_data_dir))
    return runs


@pytest.fixture
def fake_race(monkeypatch):
    policy = FakePolicy()
    monkeypatch.setattr("mtsearch.sweep.racing.decide", policy)
    return policy


def test_each_racing_round_prints_provisional_tables(small_env, fake_race, tmp_path, capsys):
    space = str(racing_space(tmp_path))
    assert main(["sweep", space, "--quiet", "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    # round after 2 seeds (2 configurations go on), after 3 (1 goes on); after 4 the race stops: final tables
    assert [line.split(";")[0] for line in out.splitlines() if line.startswith(f"==== {MARK}")] == [
        f"==== {MARK}: racing round after 2 seed(s) per configuration",
        f"==== {MARK}: racing round after 3 seed(s) per configuration",
    ]
    first = out[out.index(f"{MARK}: racing round after 2") : out.index("end of the PROVISIONAL tables")]
    assert "configurations ranked by mean overall" in first and "ablation: sampler" in first
    assert "(top 3 of 3; mean ± sd)" in first  # every configuration, ranked on its first two seeds
    assert f"next round ({MARK}): seed index 2 for 2 configuration(s)" in first
    # a raced sweep's verdicts are at final_alpha 0.04: the tables print the level they use
    assert "96% interval" in first and "best set (96%," in first and "95%" not in first
    # the round's table is the runs it saw: 3 configurations x 2 seeds, though 3 more runs followed
    assert "6 runs read" in first
    assert "sweep race: racing: one configuration left in the best set" in out
    assert "more time would settle" in out
    assert out.rindex("more time would settle") > out.rindex(MARK)  # the closing output, after the rounds


def test_ctrl_c_after_a_round_prints_the_tables_so_far_and_the_resume_command(
    small_env, fake_race, tmp_path, monkeypatch, capsys
):
    space = str(racing_space(tmp_path))
    # Ctrl-C right after the first round's tables
    monkeypatch.setenv("MTSEARCH_FAULT", "round_shown:1:sigint")
    argv = ["sweep", space, "--quiet", "--no-mlflow"]
    assert main(argv) == 130
    captured = capsys.readouterr()
    out = captured.out
    assert f"{MARK}: racing round after 2 seed(s)" in out
    assert "sweep race: interrupted by the user" in out
    tail = out[out.index("interrupted by the user") :]
    assert "the tables so far (PROVISIONAL" in tail and "configurations ranked by mean overall" in tail
    resume = next(line for line in tail.splitlines() if line.startswith("resume"))
    command = shlex.split(resume.split(": ", 1)[1])
    assert command == ["mtsearch", *argv]
    assert "mtsearch: interrupted" in captured.err
    done = load_runs(small_env / "sweeps" / "race")
    assert len(done[done["status"].isin(DONE)]) == 6  # the first seeds, nothing of round 2 done yet

    # the printed command goes on from there (the fault point fired once; it stays quiet now)
    monkeypatch.delenv("MTSEARCH_FAULT")
    assert main(command[1:]) == 0
    done = load_runs(small_env / "sweeps" / "race")
    assert len(done[done["status"].isin(DONE)]) == 9


def header_only(small_data_dir, tmp_path, name: str):
    data = tmp_path / "data"
    shutil.copytree(small_data_dir, data)
    path = data / name
    path.write_text(path.read_text().splitlines()[0] + "\n")
    return data


@pytest.mark.parametrize("name", ["ids-sst-train.csv", "ids-sst-dev.csv"])
def test_a_data_problem_every_run_would_hit_fails_before_the_first_run(
    small_env, small_data_dir, tmp_path, monkeypatch, capsys, name
):
    monkeypatch.setenv("MTSEARCH_DATA", str(header_only(small_data_dir, tmp_path, name)))
    assert main(["sweep", "smoke", "--quiet", "--no-mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[-1]] and err[0].startswith("mtsearch: error: ") and name in err[0]
    assert "no usable rows for task 'sst'" in err[0]
    assert not (small_env / "sweeps" / "smoke").exists()  # no run, no sweep folder


def test_a_sweep_whose_every_run_fails_exits_non_zero_with_the_first_error(
    small_env, small_data_dir, tmp_path, monkeypatch, capsys
):
    # A failure the check before the first run cannot see: every run fails on its own.
    monkeypatch.setenv("MTSEARCH_DATA", str(header_only(small_data_dir, tmp_path, "ids-sst-train.csv")))
    monkeypatch.setattr("mtsearch.train.trainer.check_data", lambda config: None)
    assert main(["sweep", "smoke", "--quiet", "--no-mlflow"]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("mtsearch: error:")]
    assert len(errors) == 1
    # the count is the failed run folders' (the trainer's error decides how many runs a
    # failing configuration gets, not this test)
    failed = [
        r
        for r in (small_env / "sweeps" / "smoke" / "runs").glob("*/s*/result.json")
        if json.loads(r.read_text())["status"] == "failed"
    ]
    assert failed
    assert f"sweep smoke: no run finished ({len(failed)} failed); first error" in errors[0]
    assert "no usable rows for task 'sst'" in errors[0]
    assert "failed runs:" in captured.out  # the tables and the failures are still printed


def test_trials_under_a_grid_takes_its_first_configurations(small_env, capsys):
    assert main(["sweep", "smoke", "--quiet", "--no-mlflow", "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "the first 1 of the grid's 2 configurations are done (--trials 1)" in out
    table = load_runs(small_env / "sweeps" / "smoke")
    assert len(table) == 2 and {p["sampler"] for p in table["params"]} == {"round_robin"}  # the grid's first
    assert "not run:" not in out  # --trials 1 asked for one configuration: nothing is missing


def test_a_grid_configuration_without_runs_is_named_untested(small_env, capsys):
    """A budget that ends mid-grid leaves configurations without runs: the closing output names them."""
    from mtsearch.sweep.provisional import format_not_run
    from mtsearch.sweep.space import load_space

    assert main(["sweep", "smoke", "--quiet", "--no-mlflow", "--trials", "1"]) == 0
    capsys.readouterr()
    sweep_dir = small_env / "sweeps" / "smoke"
    whole = load_space("smoke")  # the grid of 2, as a sweep that ran out of time sees it
    from mtsearch.sweep.runner import describe_params

    missing = [p for p in whole.grid() if p["sampler"] != "round_robin"]
    assert format_not_run(whole, sweep_dir).splitlines() == [
        "not run: 1 of the 2 configurations (the budget ended first; untested, so no verdict, not 'no "
        "difference'; the same command with more --minutes runs them):",
        f"  {describe_params(missing[0])}",
    ]
    assert main(["sweep", "smoke", "--quiet", "--no-mlflow"]) == 0  # the resume runs the rest
    assert "not run:" not in capsys.readouterr().out
    assert format_not_run(whole, sweep_dir) == ""


def test_results_reprints_the_untested_configurations_from_the_recorded_space(small_env, tmp_path, capsys):
    """`mtsearch results` ends as the sweep's closing output does: the grid's configurations
    without a run are named, read from the space file the sweep recorded; where that file
    no longer defines the sweep's dimensions it says it cannot tell, never "all ran"."""
    from mtsearch.sweep.provisional import recorded_space

    assert main(["sweep", "smoke", "--quiet", "--no-mlflow", "--trials", "1"]) == 0
    capsys.readouterr()
    sweep_dir = small_env / "sweeps" / "smoke"
    assert main(["results", str(sweep_dir)]) == 0
    assert "not run:" not in capsys.readouterr().out  # --trials 1 asked for one configuration

    # A sweep whose minutes ran out after one configuration records no trial budget.
    meta_path = sweep_dir / "sweep.json"
    meta = json.loads(meta_path.read_text())
    meta["space"]["trials"] = None
    meta_path.write_text(json.dumps(meta))
    assert recorded_space(meta, sweep_dir).trials is None
    assert main(["results", "smoke"]) == 0
    out = capsys.readouterr().out.splitlines()
    at = out.index(next(line for line in out if line.startswith("not run: 1 of the 2 configurations")))
    assert "round_robin" not in out[at + 1] and out[at + 1].startswith("  sampler=")

    # The recorded dimensions differ from the file's now (the file was edited): no list from it.
    meta["space"]["dimensions"][0]["choices"] = ["round_robin", "a_sampler_the_file_never_had"]
    meta_path.write_text(json.dumps(meta))
    assert recorded_space(meta, sweep_dir) is None
    assert main(["results", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "not run: unknown (the sweep's space file is gone or no longer defines its dimensions)" in out
    assert "not run: 1 of" not in out


def test_without_the_space_only_a_grid_sweep_says_its_untested_configurations_are_unknown():
    """A sampler (random, TPE) has no list of configurations a run could be missing from; a
    verify folder's configurations are the ones verify chose. Neither gets the line."""
    import types

    import pandas as pd

    from mtsearch.sweep.provisional import format_closing

    def closing(meta):
        return format_closing(
            types.SimpleNamespace(meta=meta, ablation=None, runs=pd.DataFrame(), sweep_dir="unused"), None
        )

    grid = {"space": {"algorithm": "grid", "seeds": 2, "max_seeds": 2}}
    assert [line.split(" (")[0] for line in closing(grid)] == ["not run: unknown"]
    assert closing({"space": {"algorithm": "random", "seeds": 2, "max_seeds": 2}}) == []
    assert closing({**grid, "verify_of": "sampling"}) == []


def test_configurations_with_identical_runs_are_named_as_one_computation():
    """Known truth: a and b are the same schedule (equal scores at every shared seed), c differs
    only in STS at one seed, d shares no seed with a, e differs at its one finished seed."""
    import pandas as pd

    from mtsearch.sweep.provisional import format_identical

    def row(h, k, sts, status="finished"):
        return {"config_hash": h, "seed_index": k, "status": status, "overall": 0.5, "sst": 0.3, "para": 0.6,
                "sts": sts, "params": {"sampler": h}}  # fmt: skip

    runs = pd.DataFrame([
        row("a", 0, 0.11), row("a", 1, 0.12), row("a", 2, 0.13),
        row("b", 0, 0.11), row("b", 1, 0.12),  # raced out after 2 seeds: the shared ones agree
        row("c", 0, 0.11), row("c", 1, 0.125),
        row("d", 5, 0.11),
        row("e", 0, 0.11, status="failed"), row("e", 1, 0.14),
    ])  # fmt: skip
    out = format_identical(runs).splitlines()
    assert out[0].startswith("identical runs (every task's score the same at every shared seed")
    assert out[1:] == ["  sampler=a; sampler=b (seeds 0, 1)"]
    assert format_identical(runs[runs["config_hash"] != "b"]) == ""
