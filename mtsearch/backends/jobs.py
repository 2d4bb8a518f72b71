"""``mtsearch sweep --jobs N``: N runs at once on one machine, as N workers of one sweep.

The command's own process is worker 0 and starts N-1 more (:func:`start_jobs`), each the
same sweep with ``--worker``: the run folders, their flocks and the sweep's propose lock
(:mod:`mtsearch.sweep.runner`) already make several workers train every run exactly once
and share one MLflow parent, so jobs add no bookkeeping of their own.

Threads are split between the jobs: each run gets ``max(1, cores // N)`` torch threads
(never more than the config's own ``num_threads``). A job sets them before torch is
imported (``OMP_NUM_THREADS``) and every run sets them again (the run's ``num_threads``,
a setting outside the configuration hash, so ``--jobs`` changes no run's identity and a
sweep may be resumed with another ``--jobs``).

Ctrl-C (or any error in worker 0) stops the other jobs: each gets SIGINT, abandons its
run as a killed worker would (the run is trained again on resume), and is killed if it
has not ended within :data:`STOP_SECONDS`. A job killed from outside leaves its run to
the others, as any dead worker does.

Only light imports here: the registry imports every module of this folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("mtsearch.sweep")

#: How long a job may take to end after SIGINT before it is killed.
STOP_SECONDS = 30.0
#: Environment variables that size native thread pools (read when torch / numpy load).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cores() -> int:
    """CPU cores this process may use (its affinity mask: taskset and cgroup cpusets count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int, configured: int | None = None) -> int:
    """Torch threads of each run when ``jobs`` run at once: the cores split evenly, at most ``configured``."""
    share = max(1, cores() // jobs)
    return min(share, configured) if configured else share


def check_jobs(value: str | int | None) -> int:
    """``--jobs``: a whole number >= 1 (None: 1)."""
    from mtsearch.errors import ConfigError

    if value is None:
        return 1
    text = str(value).strip()
    if not (text.isascii() and text.isdigit() and int(text) >= 1):
        raise ConfigError(f"--jobs is the number of runs trained at once, a whole number >= 1 (got {value})")
    return int(text)


# ----------------------------------------------------------------- packing runs onto GPUs
#: Adding one more run per GPU must raise the GPU's runs per hour by at least this factor.
MIN_PACKING_GAIN = 1.05
#: The share of a GPU's memory the packed runs may fill (the rest: CUDA context, fragmentation).
GPU_MEMORY_SHARE = 0.9


@dataclass(frozen=True)
class PackProbe:
    """One measurement: ``jobs`` runs sharing one GPU trained ``runs_per_hour`` runs an hour together."""

    jobs: int
    runs_per_hour: float


@dataclass(frozen=True)
class Packing:
    """How many runs share each GPU, and why."""

    per_gpu: int
    gpus: int
    reason: str

    @property
    def jobs(self) -> int:
        """Runs at once on the machine (``--jobs``)."""
        return self.per_gpu * self.gpus

    @property
    def gpus_per_trial(self) -> float:
        """The same packing as Ray's fractional GPU share per trial."""
        return 1.0 / self.per_gpu


def choose_packing(
    probes: list[PackProbe],
    *,
    run_memory_gib: float,
    gpu_memory_gib: float,
    cores: int,
    gpus: int,
    min_gain: float = MIN_PACKING_GAIN,
) -> Packing:
    """How many runs share each of ``gpus`` GPUs, from measurements of runs per hour.

    ``probes``: runs per hour of one GPU with 1, 2, 4, ... runs sharing it. The count
    grows while the next measured count raises runs per hour by at least ``min_gain``
    (stopping at the first that does not), within two caps: memory (``run_memory_gib``
    per run within :data:`GPU_MEMORY_SHARE` of ``gpu_memory_gib``) and cores (at least
    one per run: ``cores // gpus`` runs per GPU).
    """
    if gpus < 1:
        raise ValueError("choose_packing: no GPU to pack runs onto")
    mem_cap = max(1, int(GPU_MEMORY_SHARE * gpu_memory_gib // max(run_memory_gib, 1e-9)))
    core_cap = max(1, cores // gpus)
    cap = min(mem_cap, core_cap)
    caps = (f"memory allows {mem_cap} ({run_memory_gib:.1f} GiB a run of {gpu_memory_gib:.0f} GiB), "
            f"cores {core_cap} a GPU ({cores} cores)")  # fmt: skip
    measured = sorted((p for p in probes if p.jobs >= 1), key=lambda p: p.jobs)
    if not measured:
        return Packing(1, gpus, f"1 run a GPU: nothing measured; {caps}")
    best = measured[0]
    why = f"the measurements stopped at {best.jobs}"
    for probe in measured[1:]:
        if probe.jobs > cap:
            why = f"{probe.jobs} would exceed the cap of {cap}"
            break
        gain = probe.runs_per_hour / best.runs_per_hour if best.runs_per_hour > 0 else float("inf")
        if gain < min_gain:
            why = f"{probe.jobs} runs raised runs per hour only {gain:.2f}x over {best.jobs} (< {min_gain:.2f}x)"
            break
        best = probe
    else:
        if len(measured) > 1:
            why = f"each measured count up to {best.jobs} raised runs per hour by >= {min_gain:.2f}x"
    per_gpu = min(best.jobs, cap)
    return Packing(
        per_gpu,
        gpus,
        f"{per_gpu} run(s) a GPU ({best.runs_per_hour:.0f} runs/h each GPU): {why}; {caps}",
    )


@dataclass
class Jobs:
    """The worker processes one ``--jobs N`` sweep started beside its own."""

    procs: list[subprocess.Popen] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory | None = None

    def wait(self) -> list[dict[str, Any]]:
        """Wait for every job; returns the session records of those that ended normally."""
        records = []
        for i, (proc, out) in enumerate(zip(self.procs, self.outputs, strict=True), start=1):
            code = proc.wait()
            if code != 0:
                log.warning("job %d (pid %d) ended with exit code %d; its runs are left to the others "
                            "or to the next session", i, proc.pid, code)  # fmt: skip
            with contextlib.suppress(OSError, ValueError):
                records.append(json.loads(out.read_text()))
        self.close()
        return records

    def stop(self) -> None:
        """Interrupt every job that still runs (SIGINT, then SIGKILL after STOP_SECONDS)."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def start_jobs(
    n: int,
    *,
    space_path: Path,
    profile: str,
    budget: dict[str, Any],
    extra_set: dict[str, Any],
    name: str,
    storage: str | None,
    mlflow: bool,
    threads: int,
    gpus: tuple[str, ...] | list[str] = (),
) -> Jobs:
    """Start ``n`` worker processes on sweep ``name`` (the caller has prepared it and is a worker itself).

    ``gpus``: CUDA_VISIBLE_DEVICES entries; job ``i`` (1..n) sees only ``gpus[i % len(gpus)]``,
    the caller being job 0 on ``gpus[0]``: the runs spread round-robin, one GPU each.
    """
    import mtsearch

    tmp = tempfile.TemporaryDirectory(prefix="mtsearch-jobs-")
    env = dict(os.environ)
    env.update({v: str(threads) for v in THREAD_VARS})
    # The jobs import this mtsearch, whatever is installed in the environment.
    root = str(Path(mtsearch.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    jobs = Jobs(_tmp=tmp)
    for i in range(1, n + 1):
        out = Path(tmp.name) / f"job-{i}.json"
        spec = {"index": i, "space_path": str(space_path), "profile": profile, "budget": budget,
                "extra_set": extra_set, "name": name, "storage": storage, "mlflow": mlflow, "threads": threads,
                "out": str(out), "verbose": logging.getLogger().getEffectiveLevel() <= logging.DEBUG}  # fmt: skip
        cmd = [
            sys.executable,
            "-c",
            "from mtsearch.backends.jobs import job_main; job_main()",
            json.dumps(spec),
        ]
        job_env = dict(env, CUDA_VISIBLE_DEVICES=str(gpus[i % len(gpus)])) if gpus else env
        # Its own session: a terminal's Ctrl-C reaches the command alone, which interrupts each job once.
        jobs.procs.append(
            subprocess.Popen(cmd, env=job_env, stdin=subprocess.DEVNULL, start_new_session=True)
        )
        jobs.outputs.append(out)
    return jobs


def job_main() -> None:
    """A job's process: one more worker on the sweep; its session record goes to ``spec['out']``."""
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.DEBUG if spec["verbose"] else logging.INFO,
                        format=f"%(levelname)s %(name)s [job {spec['index']}]: %(message)s",
                        stream=sys.stderr)  # fmt: skip
    for noisy in ("transformers", "mlflow", "alembic", "urllib3", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from mtsearch.errors import MtsearchError

    try:
        from mtsearch.backends import BACKENDS
        from mtsearch.sweep.space import load_space

        # The space as the command has it: its file, --set, and --trials/--minutes (budget).
        space = dataclasses.replace(
            load_space(spec["space_path"], spec["profile"], spec["extra_set"]), **spec["budget"]
        )
        outcome = BACKENDS.get("optuna")().run(
            space, spec["name"], storage=spec["storage"], worker=True, mlflow=spec["mlflow"], progress=False,
            threads=spec["threads"],
        )  # fmt: skip
        Path(spec["out"]).write_text(json.dumps(outcome.record(), default=str))
    except MtsearchError as err:
        print(f"mtsearch: error: [job {spec['index']}] {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)  # its run was abandoned as a killed worker's: the next session trains it
