"""Concurrent trials: one run using every core against one run per core (``mtsearch sweep --jobs``).

On a small machine, the matrix products of one MiniLM step (top 2 layers trained, batch
32, length 64) are too small to keep several threads busy, so one run per core may get
more runs through in an hour than one run with all the cores. Both arms sweep the same
runs (one configuration of the sampling space's CPU settings: ``freeze_layers: 4``, the
activation cache, ``train_fraction: 0.1``, evaluations on 400 dev examples per task, with
``--steps`` steps and ``--runs`` seeds) as a user would, ``mtsearch sweep`` in a fresh
process and a fresh runs folder each:

- ``threads``: ``--jobs 1`` with ``num_threads`` = the cores (2 here);
- ``jobs``:    ``--jobs C`` with ``num_threads`` 1 (C = the cores: 2 jobs of 1 thread here).

The throughput is runs per minute of the sweep's wall time (process start to end, so the
second job's start-up is charged to the jobs arm), and training examples per second; the
ratio jobs / threads > 1 means concurrency wins. One warm-up run first builds the token and
activation caches (``runs/cache``, shared with real sweeps), so neither arm pays for them.
With ``--rounds R`` the arms alternate R times (threads, jobs, jobs, threads, ...) and the
ratio is that of the summed runs over the summed wall times. The runs differ in their seed
only (``vary_data: false``: one training subset, whose activations the warm-up caches).

    python benchmarks/bench_jobs.py [--runs 4] [--steps 40] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import data_dir  # noqa: E402

SPACE = """\
# Written by benchmarks/bench_jobs.py: the sampling space's CPU settings, one configuration.
name: {name}
base:
  preset: baseline
  set:
    freeze_layers: 4
    activation_cache: true
    train_fraction: 0.1
    max_length: 64
    max_steps: {steps}
    eval_every: {eval_every}
    eval_limit: 400
    final_eval: false
    save_checkpoint: false
    num_threads: {threads}
dimensions:
  sampler:
    choices: [round_robin]
objective: overall
seeds: {runs}
# One training subset for every seed: the warm-up caches its activations for both arms.
vary_data: false
algorithm: grid
pruner: none
"""


def sweep(folder: Path, name: str, runs: int, steps: int, jobs: int, threads: int) -> dict:
    """One ``mtsearch sweep`` process on a fresh runs folder; its wall time and what it trained."""
    space = folder / f"{name}.yaml"
    space.write_text(SPACE.format(name=name, steps=steps, eval_every=max(1, steps // 2), threads=threads,
                                  runs=runs))  # fmt: skip
    env = {**os.environ, "MTSEARCH_RUNS": str(folder / name), "MTSEARCH_DATA": str(data_dir()),
           "MTSEARCH_CACHE": os.environ.get("MTSEARCH_CACHE", str(ROOT / "runs" / "cache")),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    cmd = [sys.executable, "-m", "mtsearch.cli", "sweep", str(space), "--quiet", "--jobs", str(jobs)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"sweep {name} failed:\n{out.stderr[-3000:]}")
    results = [
        json.loads(p.read_text()) for p in (folder / name / "sweeps" / name).glob("runs/*/s*/result.json")
    ]
    envs = [json.loads(p.read_text()) for p in (folder / name / "sweeps" / name).glob("runs/*/s*/env.json")]
    if len(results) != runs or {r["status"] for r in results} != {"finished"}:
        raise SystemExit(f"sweep {name}: expected {runs} finished runs, got {[r['status'] for r in results]}")
    return {
        "jobs": jobs,
        "threads_per_run": threads,
        "torch_threads_seen": sorted({e.get("torch_threads") for e in envs}),
        "runs": runs,
        "steps_per_run": steps,
        "wall_seconds": wall,
        "examples": sum(int(r["examples"]) for r in results),
        "mean_run_seconds": sum(float(r["seconds"]) for r in results) / runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4, help="runs per arm (seeds of one configuration)")
    ap.add_argument("--steps", type=int, default=40, help="training steps per run")
    ap.add_argument("--rounds", type=int, default=1, help="times each arm runs (alternating)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "jobs.json"))
    args = ap.parse_args()
    from mtsearch.backends.jobs import cores

    c = cores()
    if c < 2:
        raise SystemExit("bench_jobs: one core only, nothing to split")
    arms = {"threads": (1, c), "jobs": (c, 1)}  # (jobs, torch threads per run)
    order = [("threads", "jobs") if i % 2 == 0 else ("jobs", "threads") for i in range(args.rounds)]
    rows: dict[str, list[dict]] = {"threads": [], "jobs": []}
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        sweep(folder, "warmup", 1, 1, 1, c)  # builds the token and activation caches
        warmup = time.perf_counter() - t0
        for i, pair in enumerate(order):
            for arm in pair:
                jobs, threads = arms[arm]
                rows[arm].append(sweep(folder, f"{arm}-{i}", args.runs, args.steps, jobs, threads))
                r = rows[arm][-1]
                print(f"{arm:7s} ({jobs} job(s) x {threads} thread(s)): {r['runs']} runs in {r['wall_seconds']:.1f} s "
                      f"({60 * r['runs'] / r['wall_seconds']:.2f} runs/min, {r['mean_run_seconds']:.1f} s per run)",
                      flush=True)  # fmt: skip

    def total(arm: str, what: str) -> float:
        return sum(r[what] for r in rows[arm])

    per_min = {a: 60 * total(a, "runs") / total(a, "wall_seconds") for a in rows}
    ex_per_s = {a: total(a, "examples") / total(a, "wall_seconds") for a in rows}
    ratio = per_min["jobs"] / per_min["threads"]
    report = {
        "benchmark": "jobs",
        "question": f"{c} concurrent runs x 1 thread against 1 run x {c} threads (runs per minute)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "benchmarks/bench_jobs.py", *sys.argv[1:]]),
        "machine": {"cores": c, "cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "space": "sampling CPU settings (freeze_layers 4, activation cache, train_fraction 0.1), MiniLM",
        "runs_per_arm": args.runs, "steps_per_run": args.steps, "rounds": args.rounds,
        "warmup_seconds": warmup,
        "runs_per_minute": per_min,
        "examples_per_second": ex_per_s,
        "ratio_jobs_over_threads": ratio,
        "concurrency_wins": ratio > 1.0,
        "arms": rows,
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"runs per minute: {c} jobs x 1 thread {per_min['jobs']:.2f}, 1 job x {c} threads "
          f"{per_min['threads']:.2f}: ratio {ratio:.2f} ({'concurrency wins' if ratio > 1 else 'threads win'})")  # fmt: skip
    print(f"written to {out}")


if __name__ == "__main__":
    main()
