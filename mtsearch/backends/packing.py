"""``mtsearch sweep --jobs auto``: how many runs a sweep trains at once on this machine.

Without CUDA (or when the sweep's runs are set to ``device: cpu``) ``auto`` is
:func:`cpu_jobs`. On CUDA it is a short measurement (:func:`measure_packing`): 1, 2, 4, ...
processes on the first GPU each train the sweep's first configuration for
:data:`PROBE_STEPS` steps at once, each reporting its training steps/s (over the second
half of its steps, after warm-up) and its peak GPU memory; the counts stop where one more
no longer pays (:func:`~mtsearch.backends.jobs.choose_packing`, which also caps them by
memory and cores). The answer is cached in the sweep folder (:data:`AUTO_FILE`): a
resumed sweep on the same machine does not measure again.

Several GPUs: the jobs are pinned round-robin, job ``i`` to GPU ``i mod gpus``
(``CUDA_VISIBLE_DEVICES``); the command's own process is job 0 and pins itself before it
initialises CUDA (:func:`pin_this_process`). Ray gets the same answer as its fractional
GPU share per trial (:attr:`JobsChoice.gpus_per_trial`) and places the trials itself.

Nothing here initialises CUDA in the command's process (CUDA reads ``CUDA_VISIBLE_DEVICES``
once, then): GPUs are counted and measured in child processes. Only light imports at
module level: the registry imports every module of this folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtsearch.backends.jobs import GPU_MEMORY_SHARE, Packing, PackProbe, choose_packing, cores

log = logging.getLogger("mtsearch.sweep")

#: The sweep folder's file that keeps the ``--jobs auto`` answer for the sessions that resume it.
AUTO_FILE = "jobs-auto.json"
#: Runs at once on one GPU that the measurement tries, in order (stopping where one more count no
#: longer pays). 8 is where the H200 measurements of issue 17 saturated (MiniLM).
PROBE_COUNTS = (1, 2, 4, 8)
#: Training steps of each measured run: the rate is read over the second half. Chosen so that the
#: whole measurement stays well under a minute at the ~70 ms a MiniLM step took on an H200
#: (4 rounds of 40 steps plus model loading); not yet timed on a GPU.
PROBE_STEPS = 40


def cpu_jobs(n_cores: int | None = None) -> int:
    """``--jobs auto`` without CUDA: 2 runs at once wherever there are 2 cores or more, else 1.

    On 2 cores, 2 runs of 1 thread each got 1.14x the runs per minute of 1 run with 2 threads
    (benchmarks/bench_jobs.py: MiniLM's small matrix products keep a second thread half idle).
    Only 2 cores were measured, so a bigger machine also gets 2 (run ``make bench BENCH=jobs``
    there before giving more). The Makefile passes ``--jobs auto``: this is its rule too.
    """
    n = cores() if n_cores is None else n_cores
    return 2 if n >= 2 else 1


@dataclass(frozen=True)
class JobsChoice:
    """Runs at once on this machine, the GPUs they are spread over (none: CPU), and why."""

    jobs: int
    reason: str
    gpus: tuple[str, ...] = ()  # CUDA_VISIBLE_DEVICES entries, job i on gpus[i % len(gpus)]
    per_gpu: int | None = None  # runs sharing each GPU (None: not a measured GPU packing)
    cached: bool = False

    def gpu_of(self, index: int) -> str | None:
        """The GPU of job ``index`` (0: the command's own process), round-robin; None without GPUs."""
        return self.gpus[index % len(self.gpus)] if self.gpus else None

    @property
    def gpus_per_trial(self) -> float:
        """Ray's fractional GPU share per trial: 1 / runs per GPU (0 without a GPU)."""
        return 1.0 / self.per_gpu if self.gpus and self.per_gpu else 0.0

    def line(self) -> str:
        """The closing output's line: how many runs shared each GPU (or the cores), and why."""
        if not self.gpus:
            return f"jobs: {self.jobs} ({self.reason})"
        shared = ", ".join(
            f"GPU {g}: {sum(1 for i in range(self.jobs) if self.gpu_of(i) == g)}" for g in self.gpus
        )
        cached = " (measured by an earlier session of this sweep)" if self.cached else ""
        return f"jobs: {self.jobs}, runs sharing each GPU: {shared}{cached}; {self.reason}"


@dataclass
class Measurement:
    """What :func:`measure_packing` found on one GPU."""

    probes: list[PackProbe]
    run_memory_gib: float  # the largest peak of one run (torch's reserved memory)
    gpu_memory_gib: float
    notes: list[str] = field(default_factory=list)  # e.g. a count whose runs failed


#: ``measure(config, gpu, max_jobs)`` -> Measurement: injectable, so CPU tests take the whole
#: ``auto`` path with a fake one.
Measure = Callable[[Any, str, int], Measurement]


# ---------------------------------------------------------------------------- choosing
def choose_jobs(
    value: str | int | None,
    space,
    sweep_dir: Path,
    *,
    measure: Measure | None = None,
    gpus: Sequence[str] | None = None,
    find_gpus: Callable[[Any], list[str]] | None = None,
) -> JobsChoice:
    """``--jobs`` as given (a number, ``auto`` or None) for ``space``'s sweep in ``sweep_dir``.

    ``gpus``: what :func:`jobs_gpus` found (None: found here, with ``find_gpus``).
    """
    from mtsearch.backends.jobs import check_jobs, threads_per_job

    auto = _is_auto(value)
    jobs = cpu_jobs() if auto else check_jobs(value)
    if jobs == 1 and not auto:
        return JobsChoice(1, "--jobs 1")
    # The runs' threads, as OptunaBackend.run gives them: the cores split, capped by the space's num_threads.
    threads = f"{threads_per_job(jobs, space.base.get('num_threads'))} thread(s) each"
    config = space.run_config(first_params(space), 0)
    gpus = tuple(jobs_gpus(value, space, find_gpus) if gpus is None else gpus)
    if not auto:  # several GPUs: even a given number of jobs is spread over them
        gpus = gpus[:jobs]
        return JobsChoice(
            jobs, f"--jobs {jobs}, " + (f"over {len(gpus)} GPU(s)" if gpus else threads), gpus=gpus
        )
    if not gpus:
        return JobsChoice(jobs, f"auto without CUDA: {cores()} core(s), {threads}")
    machine = {"gpus": list(gpus), "cores": cores()}
    cached = _read_cache(sweep_dir / AUTO_FILE, machine)
    if cached is not None:
        return JobsChoice(cached["jobs"], cached["reason"], gpus=gpus, per_gpu=cached["per_gpu"], cached=True)
    print(f"--jobs auto: measuring how many runs share a GPU ({len(gpus)} GPU(s))...", file=sys.stderr,
          flush=True)  # fmt: skip
    found = (measure or measure_packing)(config, gpus[0], max(1, cores() // len(gpus)))
    packing = packing_of(found, cores(), len(gpus))
    reason = "; ".join([packing.reason, *found.notes])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / AUTO_FILE).write_text(json.dumps({
        "machine": machine, "jobs": packing.jobs, "per_gpu": packing.per_gpu, "reason": reason,
        "probes": [vars(p) for p in found.probes], "run_memory_gib": found.run_memory_gib,
        "gpu_memory_gib": found.gpu_memory_gib, "measured": time.time(),
    }, indent=2))  # fmt: skip
    return JobsChoice(packing.jobs, reason, gpus=gpus, per_gpu=packing.per_gpu)


def check_gpus_per_trial(value: str | float) -> str | float:
    """``--gpus-per-trial``: ``auto`` or a number >= 0."""
    from mtsearch.errors import ConfigError

    text = str(value).strip()
    if text == "auto":
        return "auto"
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not (0 <= number < float("inf")):
        raise ConfigError(
            f"--gpus-per-trial is a number of GPUs >= 0 (a fraction shares one) or auto (got {value})"
        )
    return number


def _read_cache(path: Path, machine: dict[str, Any]) -> dict[str, Any] | None:
    """The cached answer, if it was measured with these GPUs and cores (another machine measures again)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("machine") != machine or not isinstance(data.get("jobs"), int) or data["jobs"] < 1:
        return None
    return data


def first_params(space) -> dict[str, Any]:
    """The space's first configuration: each dimension's first choice, or the low end of its range."""

    class _First:  # answers the suggest_* calls of Space.sample as an Optuna trial would
        def suggest_categorical(self, name, choices):
            return list(choices)[0]

        def suggest_int(self, name, low, high, **_):
            return int(low)

        def suggest_float(self, name, low, high, **_):
            return float(low)

    return space.sample(_First())


def _is_auto(value: str | int | None) -> bool:
    return value is not None and str(value).strip() == "auto"


def jobs_gpus(
    value: str | int | None, space, find_gpus: Callable[[Any], list[str]] | None = None
) -> tuple[str, ...]:
    """The GPUs ``--jobs value`` spreads the runs over (none for one job, or without CUDA).

    Found in a child process (:func:`visible_gpus`): the command pins itself to the first
    (:func:`pin_this_process`) before anything here asks torch about CUDA (a run's device
    check does), since CUDA reads ``CUDA_VISIBLE_DEVICES`` once, when it starts.
    """
    from mtsearch.backends.jobs import check_jobs

    if not _is_auto(value) and check_jobs(value) == 1:
        return ()
    return tuple((find_gpus or visible_gpus)(space.run_config(first_params(space), 0)))


def pin_this_process(gpus: Sequence[str]) -> None:
    """Job 0 (the command's own process) on the first of ``gpus``, before CUDA starts here."""
    gpu = gpus[0] if gpus else None
    if gpu is None or os.environ.get("CUDA_VISIBLE_DEVICES") == gpu:
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # too late: CUDA has read the variable
        log.warning("CUDA already started in this process: its runs use every GPU it saw, not GPU %s", gpu)
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu


# ------------------------------------------------------------------------ finding GPUs
def visible_gpus(config) -> list[str]:
    """The GPUs the runs of ``config`` would train on, as ``CUDA_VISIBLE_DEVICES`` entries ([]: none).

    Counted in a child process (this one must not start CUDA before it is pinned), and only
    where an NVIDIA driver is installed: a machine without one pays nothing.
    """
    if config.device == "cpu":
        return []
    if not Path("/proc/driver/nvidia/version").exists() and shutil.which("nvidia-smi") is None:
        return []
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    count = int(out.stdout.strip() or 0) if out.returncode == 0 and out.stdout.strip().isdigit() else 0
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [g.strip() for g in given.split(",") if g.strip()] if given else [str(i) for i in range(count)]
    return ids[:count]


# ------------------------------------------------------------------------ measuring
class ProbePool:
    """Processes on one GPU that each train a configuration for a few steps when told, all at once.

    Each loads torch and starts CUDA once (then says it is ready); :meth:`round` starts more when
    needed, waits until all are ready, and only then tells ``k`` of them to train, so their
    training overlaps. ``benchmarks/bench_gpu.py`` measures runs per hour with it too.
    """

    def __init__(self, config_values: dict[str, Any], gpu: str, threads: int = 1, device: str = "cuda"):
        # device "cpu": the same processes and exchanges without a GPU (memory reads 0), for the tests.
        self.values, self.gpu, self.threads, self.device = config_values, gpu, threads, device
        self.procs: list[subprocess.Popen] = []
        self.gpu_memory_gib = 0.0
        self._tmp = tempfile.TemporaryDirectory(prefix="mtsearch-probe-")

    def _start(self) -> None:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=self.gpu, MTSEARCH_RUNS=self._tmp.name,
                   OMP_NUM_THREADS=str(self.threads), TOKENIZERS_PARALLELISM="false")  # fmt: skip
        code = f"from mtsearch.backends.packing import probe_main; probe_main({self.device!r})"
        # Their training logs go to a file: the sweep's output stays readable.
        with open(Path(self._tmp.name) / f"probe-{len(self.procs)}.log", "w") as err:
            proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, text=True)  # fmt: skip
        self.procs.append(proc)

    def _read(self, proc: subprocess.Popen) -> dict[str, Any]:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError(f"a measuring process ended (exit code {proc.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def round(self, k: int, steps: int, threads: int | None = None) -> dict[str, Any]:
        """``k`` runs of ``steps`` steps at once: their summed steps/s and the largest peak memory (GiB)."""
        new = []
        while len(self.procs) < k:
            self._start()
            new.append(self.procs[-1])
        for proc in new:  # every process ready before any trains: the k runs overlap
            self.gpu_memory_gib = self._read(proc)["gpu_memory_gib"]
        order = {
            "steps": steps,
            "threads": threads or self.threads,
            "values": {**self.values, "device": self.device},
        }
        for proc in self.procs[:k]:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(order) + "\n")
            proc.stdin.flush()
        answers = [self._read(proc) for proc in self.procs[:k]]
        return {"jobs": k, "steps_per_second": sum(a["steps_per_second"] for a in answers),
                "run_memory_gib": max(a["memory_gib"] for a in answers)}  # fmt: skip

    def close(self, kill: bool = False) -> None:
        """End the processes: each finishes its run and exits, or with ``kill`` (an error or
        Ctrl-C in the middle of a round) is killed at once rather than waited for."""
        for proc in self.procs:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()
        for proc in self.procs:
            try:
                if kill:
                    proc.kill()
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> ProbePool:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(kill=exc_type is not None)


def measure_packing(
    config,
    gpu: str,
    max_jobs: int,
    counts: Sequence[int] = PROBE_COUNTS,
    steps: int = PROBE_STEPS,
    pool_factory: Callable[..., Any] = ProbePool,
) -> Measurement:
    """Runs per hour of one GPU at 1, 2, 4, ... runs of ``config`` at once (at most ``max_jobs``).

    Runs per hour are estimated from the training rate alone (steps/s of all runs together
    over the config's ``max_steps``), evaluation and start-up apart. The runs are eager
    (``compile: off``): compiling in every measuring run would cost minutes. Stops at the
    first count that raises runs per hour by less than the packing's minimum gain, at the
    first count memory or ``max_jobs`` would not allow, and at a count whose runs fail
    (the counts before it stand). ``pool_factory``: :class:`ProbePool`, or the tests' fake.
    """
    values = config.model_dump(mode="json")
    probes: list[PackProbe] = []
    memory, notes = 0.0, []
    run_steps = config.max_steps or steps
    with pool_factory(values, gpu) as pool:
        for k in counts:
            if k > max_jobs or (probes and memory and k * memory > GPU_MEMORY_SHARE * pool.gpu_memory_gib):
                break
            try:
                row = pool.round(k, steps, threads=max(1, max_jobs // k))
            except (RuntimeError, ValueError) as err:
                if not probes:
                    from mtsearch.errors import MtsearchError

                    raise MtsearchError(
                        f"--jobs auto: the measuring run failed ({err}); give --jobs N"
                    ) from None
                notes.append(f"{k} runs at once failed while measuring ({err})")
                break
            memory = max(memory, row["run_memory_gib"])
            probes.append(PackProbe(k, 3600 * row["steps_per_second"] / run_steps))
            chosen = choose_packing(probes, run_memory_gib=memory, gpu_memory_gib=pool.gpu_memory_gib,
                                    cores=max_jobs, gpus=1)  # fmt: skip
            if chosen.per_gpu < k:  # this count did not pay: the next would not either
                break
        return Measurement(probes, memory, pool.gpu_memory_gib, notes)


def probe_main(device: str = "cuda") -> None:
    """A :class:`ProbePool` process: starts CUDA, says it is ready, then trains what it is told."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # anything the trainer prints stays off the answers' stream
    try:
        import torch

        total = 0.0
        if device == "cuda":
            torch.zeros(1, device="cuda")
            total = torch.cuda.mem_get_info()[1] / 2**30
        print(json.dumps({"gpu_memory_gib": total}), file=proto, flush=True)
        for n, line in enumerate(sys.stdin):
            order = json.loads(line)
            print(json.dumps(probe_run(order["values"], order["steps"], order["threads"], n)), file=proto,
                  flush=True)  # fmt: skip
    except Exception as err:  # noqa: BLE001 - reported to the pool, which names it in one line
        print(json.dumps({"error": f"{type(err).__name__}: {err}"}), file=proto, flush=True)


def probe_run(values: dict[str, Any], steps: int, threads: int, n: int) -> dict[str, float]:
    """One measuring run: steps/s over its second half (after warm-up) and its peak GPU memory (GiB)."""
    import torch

    from mtsearch.config import make_config
    from mtsearch.records import read_metrics
    from mtsearch.train import train

    cuda = values.get("device") != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    config = make_config({**values, "max_steps": steps, "eval_every": max(1, steps // 2), "eval_limit": 16,
                          "final_eval": False, "save_checkpoint": False, "mlflow": False, "progress": False,
                          "compile": "off", "num_threads": threads, "name": f"probe-{os.getpid()}-{n}"})  # fmt: skip
    result = train(config)
    first, second = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"][-2:]
    rate = (second["step"] - first["step"]) / max(1e-9, second["train_seconds"] - first["train_seconds"])
    return {"steps_per_second": rate, "memory_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0}


def packing_of(measurement: Measurement, cores_: int, gpus: int) -> Packing:
    """What :func:`~mtsearch.backends.jobs.choose_packing` makes of a measurement."""
    return choose_packing(measurement.probes, run_memory_gib=measurement.run_memory_gib,
                          gpu_memory_gib=measurement.gpu_memory_gib, cores=cores_, gpus=gpus)  # fmt: skip
