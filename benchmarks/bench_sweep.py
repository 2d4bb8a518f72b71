"""Sweep orchestration overhead: wall time of a sweep spent outside training and evaluation.

Runs the smoke space (tiny model, real data, Optuna backend, MLflow on) in a fresh
runs folder and splits the sweep's wall time into
- training + evaluation: the trainer's own loop time (metrics.jsonl train/eval seconds),
- per-run setup inside train(): data loading, token cache reads, model build, MLflow run,
- orchestration outside train(): Optuna study, sampling, the MLflow parent run, results.
The smoke space's runs are deliberately tiny (4 steps), so per-run fixed costs dominate
there; the same sweep is also run with longer runs (``--steps``) to show how the shares
move as runs approach a real sweep's length.

    python benchmarks/bench_sweep.py [--steps 4 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(steps: int) -> dict:
    from mtsearch.backends import BACKENDS
    from mtsearch.sweep.space import load_space

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MTSEARCH_RUNS"] = tmp
        space = load_space("smoke", extra_set={"max_steps": steps, "eval_every": max(1, steps // 2)})
        t0 = time.perf_counter()
        out = BACKENDS.get("optuna")().run(space, f"bench-{steps}", progress=False)
        wall = time.perf_counter() - t0
    return {
        "steps_per_run": steps,
        "runs": out.runs,
        "wall_seconds": wall,
        "inside_train_seconds": out.run_seconds,
        "train_eval_seconds": out.train_eval_seconds,
        "orchestration_share": 1 - out.run_seconds / wall,
        "outside_train_and_eval_share": 1 - out.train_eval_seconds / wall,
        "per_run_setup_seconds": (out.run_seconds - out.train_eval_seconds) / max(1, out.runs),
        "orchestration_seconds_per_run": (wall - out.run_seconds) / max(1, out.runs),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 200])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one measurement
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "sweep.json"))
    args = ap.parse_args()
    os.environ.setdefault("MTSEARCH_DATA", str(ROOT / "data" / "cs224n"))
    os.environ.setdefault("MTSEARCH_CACHE", str(ROOT / "runs" / "cache"))
    if args.one is not None:
        print(json.dumps(measure(args.one)))
        return
    # Each measurement in a fresh process, as a user's sweep runs: one runs folder and one
    # MLflow store per process (MLflow keeps its store open for the process's lifetime).
    rows = []
    for steps in args.steps:
        out = subprocess.run([sys.executable, __file__, "--one", str(steps)], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"measurement with {steps} steps failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    report = {
        "benchmark": "sweep_overhead",
        "space": "smoke",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target_outside_train_and_eval_share": 0.05,
        "measurements": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        print(
            f"{r['steps_per_run']:4d} steps/run: wall {r['wall_seconds']:.1f} s for {r['runs']} runs; "
            f"outside train(): {100 * r['orchestration_share']:.1f}% ({r['orchestration_seconds_per_run']:.2f} s/run); "
            f"outside training+evaluation: {100 * r['outside_train_and_eval_share']:.1f}% "
            f"(per-run setup {r['per_run_setup_seconds']:.2f} s)"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
