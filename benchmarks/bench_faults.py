"""Randomised fault injection: many SIGKILLs at random kill points, every resumed sweep checked.

The longer version of tests/sweep/test_faults.py. Sweeps of the fault space (the smoke
space with four samplers and two seeds, on the first rows of the real files) are killed
at a random kill point (and a random n-th passage) again and again; whenever a process
ends on its own the sweep is complete and is compared with an uninterrupted one (every
configuration has each seed once, the same scores key by key, no study trial and no
MLflow run left RUNNING), then a new sweep starts. With ``--workers 2`` two processes
work on each sweep at once, each with its own random kill point.

    python benchmarks/bench_faults.py [--kills 40] [--workers 1|2] [--seed 0]

Writes runs/bench/faults.json: kills per point, resumes per sweep, seconds per process,
and every problem found (none expected).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import copy_head_rows, real_data_dir  # noqa: E402
from tests.sweep import fault_harness as F  # noqa: E402

#: Kill points a plain Optuna sweep reaches (the Ray driver's own are left to the test).
OPTUNA_POINTS = [p for p in F.POINTS if not p.startswith("ray_")]


def reference_scores(tmp: Path, data: Path) -> dict:
    from mtsearch.backends import BACKENDS
    from mtsearch.sweep.runner import load_runs
    from mtsearch.sweep.space import load_space

    os.environ.update(
        MTSEARCH_RUNS=str(tmp / "ref-runs"), MTSEARCH_DATA=str(data), MTSEARCH_CACHE=str(tmp / "ref")
    )
    out = BACKENDS.get("optuna")().run(
        load_space(str(F.fault_space(tmp, "faults"))), progress=False, mlflow=False
    )
    return F.scores_by_key(load_runs(out.sweep_dir))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=40, help="SIGKILLs to inflict in all")
    ap.add_argument("--workers", type=int, default=1, choices=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "faults.json"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    data_src = real_data_dir()
    if data_src is None:
        print("the CS224N data is not beside the checkout (make data)")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmpdir:
        tmp = Path(tmpdir)
        data = copy_head_rows(data_src, tmp / "data")
        forker = F.Forker(F.sweep_env(tmp / "forker", data, tmp / "forker-cache"))
        reference = reference_scores(tmp, data)
        kills: dict[str, int] = {}
        sweeps, problems, seconds = [], [], []
        sweep_no, resumes, fired = 0, 0, 0
        space = F.fault_space(tmp, "faults")
        runs = tmp / "runs-0"
        while fired < args.kills:
            env = F.sweep_env(runs, data, tmp / f"cache-{sweep_no}")
            faults = [f"{rng.choice(OPTUNA_POINTS)}:{rng.randint(1, 3)}" for _ in range(args.workers)]
            before = F.fired(runs)
            t0 = time.perf_counter()
            pids = [forker.start(space, env, f, *(["--worker"] if i else [])) for i, f in enumerate(faults)]
            codes = [forker.wait(p) for p in pids]
            seconds.append(time.perf_counter() - t0)
            new = F.fired(runs) - before
            for marker in new:
                point = marker.rsplit("-", 1)[0]
                kills[point] = kills.get(point, 0) + 1
            fired += len(new)
            resumes += 1
            bad = [(f, c, log[-800:]) for f, (c, log) in zip(faults, codes, strict=True) if c not in (0, -9)]
            if bad:
                problems.append({"sweep": sweep_no, "error": "a process failed", "details": bad})
            if all(c == 0 for c, _ in codes):  # ended on its own: the sweep is complete
                found = F.problems(
                    runs / "sweeps" / "faults", reference, seeds=2, configurations=4, mlflow=True
                )
                problems += [{"sweep": sweep_no, "error": p} for p in found]
                sweeps.append({"sweep": sweep_no, "processes": resumes, "problems": len(found)})
                print(
                    f"sweep {sweep_no}: complete after {resumes} processes, problems: {found or 'none'}",
                    flush=True,
                )
                sweep_no, resumes = sweep_no + 1, 0
                runs = tmp / f"runs-{sweep_no}"
        if resumes:  # finish the last sweep without a kill
            code, log = forker.run(space, F.sweep_env(runs, data, tmp / f"cache-{sweep_no}"))
            found = F.problems(runs / "sweeps" / "faults", reference, seeds=2, configurations=4, mlflow=True)
            if code != 0:
                found.append(f"the last resume failed: {log[-800:]}")
            problems += [{"sweep": sweep_no, "error": p} for p in found]
            sweeps.append({"sweep": sweep_no, "processes": resumes + 1, "problems": len(found)})
        forker.close()
    result = {
        "kills": fired, "workers": args.workers, "seed": args.seed, "kills_per_point": dict(sorted(kills.items())),
        "sweeps": sweeps, "problems": problems,
        "seconds_per_process": {"mean": sum(seconds) / len(seconds), "max": max(seconds)} if seconds else None,
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("kills", "kills_per_point")}), f"problems: {len(problems)}")
    print(f"written: {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
