"""``--jobs auto``: the CPU rule, the GPU measurement (faked: no CUDA needed), its cache, the pinning.

The measuring processes themselves (:class:`ProbePool`) are exercised on the CPU with the
tiny model; the figures they give on a GPU are for ``benchmarks/bench_gpu.py`` to measure.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from mtsearch.backends import jobs as jobs_mod
from mtsearch.backends import packing
from mtsearch.backends.jobs import PackProbe
from mtsearch.backends.packing import (
    AUTO_FILE,
    Measurement,
    ProbePool,
    choose_jobs,
    cpu_jobs,
    measure_packing,
)
from mtsearch.backends.ray_tune import trial_resources
from mtsearch.cli import main
from mtsearch.errors import MtsearchError
from mtsearch.sweep.runner import load_runs
from mtsearch.sweep.space import load_space
from tests.helpers import tiny_config
from tests.sweep import fault_harness as F

# Shaped like the H200 measurements of issue 17 (MiniLM): 8 runs a GPU pay, 16 would not.
H200 = [PackProbe(1, 8.0), PackProbe(2, 16.0), PackProbe(4, 32.0), PackProbe(8, 54.4), PackProbe(16, 56.0)]


class FakeMeasure:
    """A measurement that records how it was asked."""

    def __init__(self, probes=H200, memory=2.0, gpu_memory=139.0):
        self.calls: list[tuple[str, int]] = []
        self.result = Measurement(list(probes), memory, gpu_memory)

    def __call__(self, config, gpu, max_jobs):
        self.calls.append((gpu, max_jobs))
        return self.result


@pytest.fixture
def cores(monkeypatch):
    """Pretend the machine has ``n`` cores (both modules read them)."""

    def set_cores(n: int) -> None:
        monkeypatch.setattr(jobs_mod, "cores", lambda: n)
        monkeypatch.setattr(packing, "cores", lambda: n)

    return set_cores


def test_cpu_auto_is_the_makefiles_rule(cores, tmp_path):
    assert [cpu_jobs(n) for n in (1, 2, 3, 16)] == [1, 2, 2, 2]
    cores(2)
    space = load_space("smoke")
    choice = choose_jobs("auto", space, tmp_path / "s", find_gpus=lambda config: [])
    assert (choice.jobs, choice.gpus, choice.gpu_of(0), choice.gpus_per_trial) == (2, (), None, 0.0)
    assert choice.line() == "jobs: 2 (auto without CUDA: 2 core(s), 1 thread(s) each)"
    assert not (tmp_path / "s").exists(), "nothing measured, nothing cached"
    cores(1)
    assert choose_jobs("auto", space, tmp_path / "s", find_gpus=lambda config: []).jobs == 1
    assert choose_jobs(None, space, tmp_path / "s").line() == "jobs: 1 (--jobs 1)"


def test_gpu_auto_measures_once_and_a_resume_reads_the_answer(cores, tmp_path, capsys):
    cores(16)
    space, sweep_dir = load_space("smoke"), tmp_path / "s"
    fake = FakeMeasure()
    choice = choose_jobs("auto", space, sweep_dir, measure=fake, find_gpus=lambda config: ["0", "1"])
    assert fake.calls == [("0", 8)], "measured on the first GPU, its share of the cores the cap"
    assert (choice.jobs, choice.per_gpu, choice.gpus_per_trial) == (16, 8, 0.125)
    assert [choice.gpu_of(i) for i in range(4)] == ["0", "1", "0", "1"]
    line = choice.line()
    assert line.startswith("jobs: 16, runs sharing each GPU: GPU 0: 8, GPU 1: 8; 8 run(s) a GPU")
    assert "16 would exceed the cap of 8" in line and "cores 8 a GPU (16 cores)" in line  # 16 cores, 2 GPUs
    assert "measuring how many runs share a GPU (2 GPU(s))" in capsys.readouterr().err
    cached = json.loads((sweep_dir / AUTO_FILE).read_text())
    assert (cached["jobs"], cached["machine"]) == (16, {"gpus": ["0", "1"], "cores": 16})

    def no_measure(*args):
        raise AssertionError("a resume on the same machine must not measure again")

    again = choose_jobs("auto", space, sweep_dir, measure=no_measure, find_gpus=lambda config: ["0", "1"])
    assert (again.jobs, again.per_gpu, again.cached) == (16, 8, True)
    assert "(measured by an earlier session of this sweep)" in again.line()
    cores(4)  # another machine: measured again, capped by its cores
    other = choose_jobs("auto", space, sweep_dir, measure=fake, find_gpus=lambda config: ["0", "1"])
    assert (other.jobs, other.per_gpu, other.cached, fake.calls[-1]) == (4, 2, False, ("0", 2))


def test_given_jobs_spread_over_the_gpus_and_start_jobs_pins_each(monkeypatch, tmp_path):
    space = load_space("smoke")
    choice = choose_jobs("3", space, tmp_path, find_gpus=lambda config: ["4", "6"])
    assert (choice.jobs, choice.gpus, choice.line()) == (3, ("4", "6"), "jobs: 3, runs sharing each GPU: "
                                                         "GPU 4: 2, GPU 6: 1; --jobs 3, over 2 GPU(s)")  # fmt: skip
    envs = []

    class FakePopen:
        def __init__(self, cmd, env, **kwargs):
            envs.append(env)

    monkeypatch.setattr(jobs_mod.subprocess, "Popen", FakePopen)
    started = jobs_mod.start_jobs(3, space_path=space.path, profile="cpu", budget={}, extra_set={}, name="x",
                                  storage=None, mlflow=False, threads=2, gpus=("4", "6"))  # fmt: skip
    started.close()
    # The command is job 0 on GPU 4; jobs 1, 2, 3 round-robin from there, each seeing one GPU.
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["6", "4", "6"]
    assert {e["OMP_NUM_THREADS"] for e in envs} == {"2"}
    envs.clear()
    jobs_mod.start_jobs(1, space_path=space.path, profile="cpu", budget={}, extra_set={}, name="x", storage=None,
                        mlflow=False, threads=1).close()  # fmt: skip
    assert envs[0].get("CUDA_VISIBLE_DEVICES") == jobs_mod.os.environ.get("CUDA_VISIBLE_DEVICES"), (
        "no GPUs: as is"
    )


def test_sweep_jobs_auto_with_a_fake_gpu_pins_the_command_and_says_why(
    runs, small_data_dir, monkeypatch, tmp_path, capsys, cores
):
    """The whole CLI path: a fake GPU "3", a fake measurement choosing 1 run a GPU; one tiny run trains (on the CPU)."""
    cores(2)
    monkeypatch.setenv("MTSEARCH_DATA", str(small_data_dir))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # restored after the test, whatever the command sets
    fake = FakeMeasure(probes=[PackProbe(1, 10.0), PackProbe(2, 10.2)], memory=4.0, gpu_memory=80.0)
    monkeypatch.setattr(packing, "visible_gpus", lambda config: ["3"])
    monkeypatch.setattr(packing, "measure_packing", fake)
    space = F.fault_space(tmp_path, "auto", seeds=1)
    assert main(["sweep", str(space), "--quiet", "--no-mlflow", "--jobs", "auto", "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert fake.calls == [("3", 2)]
    assert packing.os.environ["CUDA_VISIBLE_DEVICES"] == "3", "the command (job 0) pinned to its GPU"
    line = next(x for x in out.splitlines() if x.startswith("jobs: "))
    assert line.startswith("jobs: 1, runs sharing each GPU: GPU 3: 1; 1 run(s) a GPU (10 runs/h each GPU)")
    assert "2 runs raised runs per hour only 1.02x over 1 (< 1.05x)" in line
    sweep_dir = runs / "sweeps" / "auto"
    assert F.meta(sweep_dir)["sessions"][0]["jobs_reason"] == line
    assert list(load_runs(sweep_dir)["status"]) == ["finished"]
    # The resume reads the cached answer: no second measurement, and it says so.
    assert main(["sweep", str(space), "--quiet", "--no-mlflow", "--jobs", "auto", "--trials", "1"]) == 0
    assert fake.calls == [("3", 2)]
    assert "(measured by an earlier session of this sweep)" in capsys.readouterr().out


def test_the_measurement_stops_where_one_more_run_no_longer_pays():
    class FakePool:
        """Runs per hour by count (steps/s of the 100-step config), memory per run; None: the round fails."""

        def __init__(self, rates, memory=1.0):
            self.rates, self.memory, self.rounds, self.gpu_memory_gib = rates, memory, [], 80.0

        def __call__(self, values, gpu):
            return self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def round(self, k, steps, threads):
            self.rounds.append((k, threads))
            if self.rates[k] is None:
                raise RuntimeError("CUDA out of memory")
            return {"jobs": k, "steps_per_second": self.rates[k] * 100 / 3600, "run_memory_gib": self.memory}

    config = tiny_config(".", max_steps=100)
    pool = FakePool({1: 10.0, 2: 20.0, 4: 20.5, 8: 40.0})
    found = measure_packing(config, "0", 16, pool_factory=pool)
    assert pool.rounds == [(1, 16), (2, 8), (4, 4)], "4 did not pay: 8 is not tried"
    assert [(p.jobs, round(p.runs_per_hour, 6)) for p in found.probes] == [(1, 10.0), (2, 20.0), (4, 20.5)]
    pool = FakePool({1: 10.0, 2: 20.0, 4: 40.0, 8: 80.0})
    measure_packing(config, "0", 4, pool_factory=pool)
    assert [k for k, _ in pool.rounds] == [1, 2, 4], "the cores cap the counts tried"
    pool = FakePool({1: 10.0, 2: 20.0, 4: 40.0, 8: 80.0}, memory=30.0)
    measure_packing(config, "0", 16, pool_factory=pool)
    assert [k for k, _ in pool.rounds] == [1, 2], "4 runs of 30 GiB would not fit 90% of 80 GiB"
    pool = FakePool({1: 10.0, 2: 20.0, 4: None})
    found = measure_packing(config, "0", 16, pool_factory=pool)
    assert [p.jobs for p in found.probes] == [1, 2]
    assert found.notes == ["4 runs at once failed while measuring (CUDA out of memory)"]
    with pytest.raises(MtsearchError, match=r"measuring run failed \(CUDA out of memory\); give --jobs N"):
        measure_packing(config, "0", 16, pool_factory=FakePool({1: None}))


def test_the_measuring_processes_train_together_on_the_cpu(small_data_dir, runs):
    """ProbePool's real processes and exchanges (device cpu: no memory to read), tiny model."""
    values = tiny_config(small_data_dir, train_limit=32, eval_limit=16).model_dump(mode="json")
    with ProbePool(values, "0", device="cpu") as pool:
        two = pool.round(2, 2)
        one = pool.round(1, 2)  # the same first process, trained again
        assert len(pool.procs) == 2 and pool.gpu_memory_gib == 0.0
    assert (two["jobs"], one["jobs"], two["run_memory_gib"], one["run_memory_gib"]) == (2, 1, 0.0, 0.0)
    assert two["steps_per_second"] > 0 and one["steps_per_second"] > 0
    assert all(p.returncode == 0 for p in pool.procs), "closing their input ends them"


def test_an_error_mid_round_kills_the_measuring_processes_at_once(small_data_dir, runs):
    """Ctrl-C (or a time cap) while the processes train: they are killed, not waited for."""
    values = tiny_config(small_data_dir, train_limit=32, eval_limit=16).model_dump(mode="json")
    with pytest.raises(KeyboardInterrupt), ProbePool(values, "0", device="cpu") as pool:
        pool.round(1, 2)  # started and ready
        order = {"steps": 10**7, "threads": 1, "values": {**values, "device": "cpu"}}
        pool.procs[0].stdin.write(json.dumps(order) + "\n")  # a run that would take hours
        pool.procs[0].stdin.flush()
        calls, proc = [], pool.procs[0]
        for name in ("kill", "wait"):  # record the order: killed first, then reaped
            real = getattr(proc, name)
            setattr(proc, name, lambda *a, _n=name, _real=real, **k: calls.append(_n) or _real(*a, **k))
        raise KeyboardInterrupt
    assert calls[:2] == ["kill", "wait"] and proc.returncode == -signal.SIGKILL


def test_visible_gpus_counts_in_a_child_and_honours_cuda_visible_devices(monkeypatch):
    config = tiny_config(".")
    assert packing.visible_gpus(tiny_config(".", device="cpu")) == []
    monkeypatch.setattr(packing.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    asked = []

    def fake_run(cmd, **kwargs):
        asked.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="2\n", stderr="")

    monkeypatch.setattr(packing.subprocess, "run", fake_run)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert packing.visible_gpus(config) == ["5", "7"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert packing.visible_gpus(config) == ["0", "1"]
    assert "torch.cuda.device_count()" in asked[0][-1], "counted in a child process"


def test_ray_gets_the_packing_as_a_fractional_gpu(cores, tmp_path, runs, capsys):
    cores(16)
    choice = choose_jobs(
        "auto", load_space("smoke"), tmp_path, measure=FakeMeasure(), find_gpus=lambda c: ["0"]
    )
    capsys.readouterr()  # its "measuring" line
    assert trial_resources(2.0, choice.gpus_per_trial) == {"cpu": 2.0, "gpu": 0.125}
    assert packing.check_gpus_per_trial("auto") == "auto" and packing.check_gpus_per_trial("0.5") == 0.5
    for bad in ("-1", "half", "inf"):
        assert main(["sweep", "smoke", "--quiet", "--backend", "ray", "--gpus-per-trial", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"mtsearch: error: --gpus-per-trial is a number of GPUs >= 0 (a fraction shares one) "
                       f"or auto (got {bad})")  # fmt: skip
