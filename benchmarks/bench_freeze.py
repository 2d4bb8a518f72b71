"""Freezing benchmark: training speed with the lower layers frozen and cached, against full fine-tuning.

Both sides train all-MiniLM-L6-v2 (6 layers) on the real SST, QQP and STS files with the
same batch size, steps and evaluation; one fine-tunes everything, the other sets
``freeze_layers: 4`` with the activation cache, so each of its steps runs (and
back-propagates through) only the top 2 layers, and AdamW updates only their weights and
the heads. The target: at least 3x the training examples per second.

The cache is built once, by a first "build" run on an emptied cache directory; its build
time (every train and dev row of the three files through the embeddings and 4 layers) is
reported on its own. The timed pairs then run with the cache warm, as every run of a sweep
after the first does. Ratios are reported both ways:

- ``train_examples_per_s``: training only, warm cache (what each later run of a sweep gets);
- ``with_build_one_run``: the frozen side charged the whole build (one run alone);
- ``runs_to_amortise_build``: after how many runs the build has paid for itself.

Each run is its own process (peak memory is per process), alternating full / frozen /
full / frozen ...; ratios are taken pair by pair and their median reported, so a machine
that drifts in speed affects both sides of a pair alike.

    python benchmarks/bench_freeze.py [--steps 15] [--repeats 2] [--freeze-layers 4] [--model minilm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import data_dir, peak_mb  # noqa: E402

BATCH = 32
MAX_LENGTH = 128
EVAL_LIMIT = 300
EVAL_BATCH = 128
TARGET = 3.0
#: the benchmark's own cache (token ids and activations), so emptying it touches nothing else
CACHE = ROOT / "runs" / "bench" / "freeze-cache"


def run(kind: str, steps: int, freeze_layers: int, model: str, threads: int | None) -> dict:
    """One training run; ``kind`` is 'full', 'frozen' or 'build' (frozen on an empty cache)."""
    from mtsearch.config import make_config
    from mtsearch.records import read_metrics
    from mtsearch.train import train

    os.environ.setdefault("MTSEARCH_RUNS", str(ROOT / "runs" / "bench" / "tmp"))
    os.environ["MTSEARCH_CACHE"] = str(CACHE)
    if kind == "build":
        shutil.rmtree(CACHE / "activations", ignore_errors=True)
    frozen = {"freeze_layers": freeze_layers} if kind != "full" else {}
    cfg = make_config(
        dict(
            model=model, data_dir=str(data_dir()), batch_size=BATCH, max_length=MAX_LENGTH, max_steps=steps,
            eval_every=steps, eval_limit=EVAL_LIMIT, eval_batch_size=EVAL_BATCH, final_eval=False, mlflow=False,
            save_checkpoint=False, progress=False, num_threads=threads, name=f"bench-freeze-{kind}-{os.getpid()}",
            **frozen,
        )
    )  # fmt: skip
    result = train(cfg)
    row = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"][-1]
    env = json.loads((result.run_dir / "env.json").read_text())["model"]
    cache = env.get("activation_cache") or {}
    shutil.rmtree(result.run_dir, ignore_errors=True)
    return {
        "train_examples": row["examples"],
        "train_seconds": row["train_seconds"],
        "train_examples_per_s": row["examples"] / row["train_seconds"],
        "eval_examples_per_s": row["eval_examples"] / row["eval_seconds"],
        "dev_overall": row["overall"],
        "trainable_parameters": env["trainable_parameters"],
        "cache_build_seconds": cache.get("build_seconds", 0.0),
        "cache_entries_built": len(cache.get("built", [])),
        "cache_entries_reused": len(cache.get("reused", [])),
        "cache_bytes": cache.get("bytes", 0),
        "peak_memory_mb": peak_mb(),
    }


def worker(kind: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(args.steps), "--freeze-layers",
           str(args.freeze_layers), "--model", args.model]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=15, help="rounds of one batch per task")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--freeze-layers", type=int, default=4)
    ap.add_argument("--model", default="minilm", help="'tiny' only to check that the script works")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--worker", choices=["full", "frozen", "build"])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "freeze.json"))
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        print(json.dumps(run(args.worker, args.steps, args.freeze_layers, args.model, args.threads)))
        return

    print("building the activation cache (frozen run on an empty cache) ...", flush=True)
    build = worker("build", args)
    print(f"  built {build['cache_entries_built']} entries in {build['cache_build_seconds']:.1f}s")
    pairs = []
    for i in range(args.repeats):
        print(f"[{i + 1}/{args.repeats}] full fine-tuning ...", flush=True)
        full = worker("full", args)
        print(f"[{i + 1}/{args.repeats}] freeze_layers {args.freeze_layers} + cache ...", flush=True)
        frozen = worker("frozen", args)
        if frozen["cache_entries_built"]:
            raise SystemExit("the timed frozen run rebuilt the cache: it should have reused the build run's")
        pairs.append({"full": full, "frozen": frozen})
        print(
            f"  full {full['train_examples_per_s']:.1f} ex/s, frozen {frozen['train_examples_per_s']:.1f} ex/s"
        )

    build_s = build["cache_build_seconds"]

    def one_run_with_build(p: dict) -> float:
        fz = p["frozen"]
        return (fz["train_examples"] / (fz["train_seconds"] + build_s)) / p["full"]["train_examples_per_s"]

    def runs_to_amortise(p: dict) -> float:
        # seconds one run of these examples saves, against the build's cost
        saved = p["full"]["train_examples"] / p["full"]["train_examples_per_s"] - p["frozen"]["train_seconds"]
        return build_s / saved if saved > 0 else float("inf")

    def med(side: str, key: str) -> float:
        return statistics.median(p[side][key] for p in pairs)

    keys = ["train_examples_per_s", "eval_examples_per_s", "peak_memory_mb", "trainable_parameters"]
    ratio = {k: statistics.median(p["frozen"][k] / p["full"][k] for p in pairs) for k in keys}
    ratio["with_build_one_run"] = statistics.median(one_run_with_build(p) for p in pairs)
    report = {
        "benchmark": "freeze",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "setup": {
            "model": args.model,
            "freeze_layers": args.freeze_layers,
            "activation_cache": True,
            "batch_size": BATCH,
            "max_length": MAX_LENGTH,
            "rounds": args.steps,
            "tasks": ["sst", "para", "sts"],
            "eval_examples_per_task": EVAL_LIMIT,
            "repeats": args.repeats,
            "threads": args.threads,
        },  # fmt: skip
        "cache_build": {
            "seconds": build_s,
            "entries": build["cache_entries_built"],
            "bytes": build["cache_bytes"],
            "what": "every usable train and dev row of the three files, embeddings + lower layers",
        },
        "full": {k: med("full", k) for k in keys},
        "frozen": {k: med("frozen", k) for k in keys},
        "ratio_frozen_over_full": ratio,
        "runs_to_amortise_build": statistics.median(runs_to_amortise(p) for p in pairs),
        "target_train_ratio": TARGET,
        "build_run": build,
        "pairs": pairs,
    }
    report["meets_target"] = ratio["train_examples_per_s"] >= TARGET
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"train examples/s: full {report['full']['train_examples_per_s']:.1f}, frozen+cache "
        f"{report['frozen']['train_examples_per_s']:.1f}, ratio {ratio['train_examples_per_s']:.2f} (target {TARGET})\n"
        f"cache build {build_s:.1f}s ({build['cache_bytes'] / 2**20:.0f} MiB); ratio with the build charged to "
        f"one run {ratio['with_build_one_run']:.2f}; the build pays for itself after "
        f"{report['runs_to_amortise_build']:.1f} runs\n"
        f"written to {out}"
    )


if __name__ == "__main__":
    main()
