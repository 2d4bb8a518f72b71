"""Kill a sweep with SIGKILL at named moments, resume it, compare with an uninterrupted sweep.

Shared by tests/sweep/test_faults.py (a fixed list of kill points) and
benchmarks/bench_faults.py (a longer randomised version). The kill points are the
``fault_point`` names in the code (:mod:`mtsearch.faults`); ``MTSEARCH_FAULT=<point>:<n>``
kills the process the n-th time it reaches the point.

A sweep process costs a few seconds of imports (torch, transformers, MLflow) before it
does anything, and a chain of kills starts a dozen. :class:`Forker` pays them once: a
helper process imports everything, then forks one child per sweep command, which runs
``mtsearch.cli.main`` in a fresh process of its own (its own pid, locks, files and
database connections; the kernel drops its locks when it is killed). Nothing in the
helper touches torch, Optuna or MLflow state before forking. Ray sweeps use plain
subprocesses (:func:`start`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]

#: Every kill point, and the moment it stands for.
POINTS = {
    "mlflow_parent": "the sweep's MLflow parent run created, not yet recorded in sweep.json",
    "cache_build": "a token cache written to its temporary file, not yet renamed",
    "propose": "a configuration's parameters stored, none of its runs started",
    "trial_created": "a run locked and its Optuna trial created, training not started",
    "run_start": "a run's run.json written, the trainer not started",
    "during_run": "a run's evaluation reported (metrics.jsonl and the MLflow run half-done)",
    "after_result": "a run's result.json written, the study not yet told",
    "after_tell": "the study told, the run's lock not yet released",
    "between_runs": "between two runs of a worker (seeds of one configuration, or two configurations)",
    "session_end": "every run done, the MLflow parent not yet finished",
    "ray_suggest": "Ray driver: a run handed to Tune, its worker maybe not started",
    "ray_complete": "Ray driver: a Tune trial ended, the study not yet told",
}

SAMPLERS = ["round_robin", "temperature", "proportional", "sequential"]


def fault_space(folder: Path, name: str, seeds: int = 2, steps: int = 4) -> Path:
    """The smoke space with four samplers, ``seeds`` seeds and ``steps`` steps (an evaluation every 2)."""
    text = (
        (ROOT / "search_spaces" / "smoke.yaml").read_text()
        .replace("name: smoke", f"name: {name}")
        .replace("seeds: 2", f"seeds: {seeds}")
        .replace("  sampler:\n    choices: [round_robin, temperature]",
                 f"  sampler:\n    choices: [{', '.join(SAMPLERS)}]")
        .replace("max_steps: 4", f"max_steps: {steps}")
    )  # fmt: skip
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def sweep_env(runs: Path, data_dir: Path, cache: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "MTSEARCH_RUNS": str(runs), "MTSEARCH_DATA": str(data_dir), "MTSEARCH_CACHE": str(cache),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    for inherited in ("MTSEARCH_FAULT", "MTSEARCH_HOLD", "MLFLOW_TRACKING_URI"):  # only what extra asks for
        env.pop(inherited, None)
    return {**env, **extra}


def start(space: Path, env: dict[str, str], fault: str | None = None, *args: str) -> subprocess.Popen:
    """A sweep process in its own process group (so whatever it started can be stopped with it)."""
    env = {**env, **({"MTSEARCH_FAULT": fault} if fault else {})}
    cmd = [sys.executable, "-m", "mtsearch.cli", "sweep", str(space), "--quiet", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    """Wait for a sweep process; then stop anything left in its process group (Ray's helpers)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this sweep started, nothing else
    except ProcessLookupError:
        pass
    return proc.returncode, out, err


def wait_for_hold(runs: Path, point: str, proc: subprocess.Popen, other_than: int | None = None) -> int:
    """The pid of a process held at ``point`` (``MTSEARCH_HOLD``), once one is there.

    Waits on the hold's marker file, not on time; the bound only ends a hung sweep's test.
    """
    from mtsearch.faults import held

    def first_held() -> int | None:
        return next((pid for pid in held(runs, point) if pid != other_than), None)

    return wait_until(first_held, proc, f"a process held at {point}", every=0.05)


def run(space: Path, env: dict[str, str], fault: str | None = None, *args: str) -> tuple[int, str, str]:
    return finish(start(space, env, fault, *args))


class Forker:
    """A process that has imported mtsearch's heavy dependencies and forks sweep processes on request."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.sweep.fault_harness"], env=env, cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.ready = False  # it imports in the background until first used

    def _ensure_ready(self) -> None:
        if not self.ready:
            assert self._read() == {"ready": True}
            self.ready = True

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork helper died (exit {self.proc.poll()})")
        return json.loads(line)

    def _ask(self, **cmd) -> dict:
        self._ensure_ready()
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def start(self, space: Path, env: dict[str, str], fault: str | None = None, *args: str) -> int:
        """Fork a sweep process; returns its pid (its output goes to ``<runs>/forked-<pid>.log``)."""
        env = {**env, **({"MTSEARCH_FAULT": fault} if fault else {})}
        return self._ask(op="start", env=env, args=["sweep", str(space), "--quiet", *args])["pid"]

    def wait(self, pid: int) -> tuple[int, str]:
        """Exit code (negative: killed by that signal) and the process's log."""
        reply = self._ask(op="wait", pid=pid)
        return reply["code"], reply["log"]

    def run(self, space: Path, env: dict[str, str], fault: str | None = None, *args: str) -> tuple[int, str]:
        return self.wait(self.start(space, env, fault, *args))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _serve() -> None:
    """The fork helper: import once, then fork a sweep process per command read on stdin."""
    import io

    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (the slow part of MLflow's first use)
    import optuna  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import mtsearch.backends  # noqa: F401
    import mtsearch.cli
    import mtsearch.train  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    logs: dict[int, Path] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "start":
            log = Path(cmd["env"]["MTSEARCH_RUNS"]) / f"forked-{len(logs)}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            pid = os.fork()
            if pid == 0:  # the sweep process
                os.setsid()
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                sys.stdin = io.StringIO()
                os.environ.clear()
                os.environ.update(cmd["env"])
                code = 1
                try:
                    code = mtsearch.cli.main(cmd["args"])
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            logs[pid] = log
            print(json.dumps({"pid": pid}), flush=True)
        elif cmd["op"] == "wait":
            _, status = os.waitpid(cmd["pid"], 0)
            code = os.waitstatus_to_exitcode(status)
            print(json.dumps({"code": code, "log": logs[cmd["pid"]].read_text(errors="replace")}), flush=True)


def fired(runs: Path) -> set[str]:
    """The kill points that fired (their markers)."""
    folder = runs / ".faults"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def scores_by_key(runs_table) -> dict[tuple[str, int], dict]:
    cols = ["status", "overall", "sst", "para", "sts"]
    return {
        (r["config_hash"], int(r["seed_index"])): {c: r[c] for c in cols} for _, r in runs_table.iterrows()
    }


def problems(sweep_dir: Path, reference: dict, seeds: int, configurations: int, mlflow: bool) -> list[str]:
    """Everything that differs from a complete, uninterrupted sweep (empty: none)."""
    import optuna

    from mtsearch.sweep.runner import load_runs

    out = []
    runs = load_runs(sweep_dir)
    keys = list(zip(runs["config_hash"], runs["seed_index"], strict=True))
    if len(keys) != len(set(keys)):
        out.append("a run key appears twice")
    per = runs.groupby("config_hash")["seed_index"].apply(sorted).to_dict()
    if len(per) != configurations or any(v != list(range(seeds)) for v in per.values()):
        out.append(f"not every configuration has seeds 0..{seeds - 1} once: {per}")
    got = scores_by_key(runs)
    if got != reference:
        diff = {
            k: (got.get(k), reference.get(k))
            for k in set(got) | set(reference)
            if got.get(k) != reference.get(k)
        }
        out.append(f"scores differ from the uninterrupted sweep: {diff}")
    study = optuna.load_study(study_name=sweep_dir.name, storage=f"sqlite:///{sweep_dir / 'study.db'}")
    running = [t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    if running:
        out.append(f"study trials left RUNNING: {running}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    told = sorted((t.user_attrs["config_hash"], t.user_attrs["seed_index"]) for t in complete)
    if told != sorted(got):
        out.append(f"the study's complete trials are not one per run: {told}")
    if mlflow:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{sweep_dir.parent.parent / 'mlflow.db'}")
        exp = client.get_experiment_by_name("mtsearch")
        mruns = client.search_runs([exp.experiment_id], max_results=10000)
        left = [(r.data.tags.get("mtsearch.kind"), r.data.tags.get("config_hash"), r.data.tags.get("seed_index"))
                for r in mruns if r.info.status == "RUNNING"]  # fmt: skip
        if left:
            out.append(f"MLflow runs left RUNNING: {left}")
        parents = [r for r in mruns if r.data.tags.get("mtsearch.kind") == "sweep"]
        if len(parents) != 1:
            out.append(f"{len(parents)} MLflow parent runs, not 1")
        finished = [
            r for r in mruns if r.data.tags.get("mtsearch.kind") == "trial" and r.info.status == "FINISHED"
        ]
        if sorted((r.data.tags["config_hash"], int(r.data.tags["seed_index"])) for r in finished) != sorted(
            got
        ):
            out.append("the FINISHED MLflow runs are not one per run")
    return out


def leftovers(sweep_dir: Path, cache: Path) -> list[str]:
    """Temporary files a killed process left behind."""
    return [str(p) for p in [*cache.rglob("*.part"), *sweep_dir.rglob(".*.tmp")]]


def meta(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


if __name__ == "__main__":
    _serve()
