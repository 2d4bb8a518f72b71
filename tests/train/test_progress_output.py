"""Progress in a log file (stderr not a terminal): one line per finished run, no tqdm redraws."""

from __future__ import annotations

from mtsearch.train.runtime import SweepProgress, progress_bar


def test_a_sweep_prints_one_line_per_finished_run_when_not_a_terminal(capsys):
    progress = SweepProgress("smoke", total=4, done=1, enabled=True)  # resumed: one run done before
    progress.run_done("1a2b/s0", "sampler=round_robin", 871, "finished", 0.41234, 12.34)
    progress.run_done("1a2b/s1", "sampler=round_robin", 42, "pruned", None, 3.0)
    progress.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    first, second = err.splitlines()
    assert first.startswith(
        "sweep smoke [2/4] run 1a2b/s0 (sampler=round_robin) seed 871: finished, score 0.4123, 12.3 s"
    )
    assert second.startswith("sweep smoke [3/4] run 1a2b/s1 (sampler=round_robin) seed 42: pruned, 3.0 s")


def test_quiet_sweep_and_training_bar_write_nothing_when_not_a_terminal(capsys):
    progress = SweepProgress("smoke", total=None, done=0, enabled=False)
    progress.run_done("1a2b/s0", "base", 1, "finished", 0.5, 1.0)
    progress.close()
    bar = progress_bar(10, "train x", enabled=True)  # enabled, but stderr is a capture, not a terminal
    for _ in range(10):
        bar.update(1)
    bar.close()
    assert capsys.readouterr().err == ""
