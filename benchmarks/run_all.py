"""``make bench``: every benchmark in turn, each writing its JSON under runs/bench/.

They run one after another, never side by side: on a 2-core machine two benchmarks at
once would measure each other.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHES = [
    ("trainer", ["bench_trainer.py"]),
    ("updates", ["bench_updates.py", "--out", str(ROOT / "runs" / "bench" / "updates.json")]),
    ("freeze", ["bench_freeze.py"]),
    ("sweep", ["bench_sweep.py"]),
    ("faults", ["bench_faults.py"]),
    ("jobs", ["bench_jobs.py"]),
    ("decision", ["bench_decision.py"]),
    ("gpu", ["bench_gpu.py"]),  # skips with one line without CUDA
]


def main() -> int:
    only = set(sys.argv[1:])
    failed = []
    for name, cmd in BENCHES:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], cwd=ROOT).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
