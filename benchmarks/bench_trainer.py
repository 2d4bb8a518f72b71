"""Trainer benchmark: mtsearch's training loop against the course starter's way of training.

Both sides train all-MiniLM-L6-v2 on the real SST, QQP and STS files with the same batch
size, model, heads and number of steps, then evaluate on the same dev examples. The
reference does what the course starter code does: the tokenizer is called on every batch
(padding to the batch maximum), tasks take turns one batch after another with an
optimizer step per task batch, plain (per-parameter loop) AdamW, unsorted evaluation.
mtsearch uses its token cache, length-bucketed batches, one summed-loss step per round
and the fused AdamW.

Each side runs in its own process (peak memory is per process), alternating
ours / reference / ours / reference ...; the ratio is taken pair by pair and its median
reported, so a machine that drifts in speed affects both sides of a pair alike.

    python benchmarks/bench_trainer.py [--steps 15] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
TASKS = ("sst", "para", "sts")


def run_ours(steps: int) -> dict:
    from mtsearch.config import make_config
    from mtsearch.records import read_metrics
    from mtsearch.train import train

    os.environ.setdefault("MTSEARCH_RUNS", str(ROOT / "runs" / "bench" / "tmp"))
    cfg = make_config(
        dict(
            model="minilm", data_dir=str(data_dir()), batch_size=BATCH, max_length=MAX_LENGTH, max_steps=steps,
            eval_every=steps, eval_limit=EVAL_LIMIT, eval_batch_size=EVAL_BATCH, final_eval=False, mlflow=False,
            save_checkpoint=False, progress=False, name=f"bench-ours-{os.getpid()}",
        )
    )  # fmt: skip
    result = train(cfg)
    row = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"][-1]
    return {
        "train_examples": row["examples"],
        "train_seconds": row["train_seconds"],
        "train_examples_per_s": row["examples"] / row["train_seconds"],
        "train_real_tokens_per_s": row["tokens"] / row["train_seconds"],
        "padding_efficiency": row["padding_efficiency"],
        "eval_examples": row["eval_examples"],
        "eval_examples_per_s": row["eval_examples"] / row["eval_seconds"],
        "peak_memory_mb": peak_mb(),
    }


def run_reference(steps: int) -> dict:
    """The course starter's loop, on the same model, data and dev examples."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from mtsearch.config import make_config
    from mtsearch.data import load_split
    from mtsearch.models.encoder import load_encoder, load_tokenizer, resolve_model
    from mtsearch.models.multitask import MultitaskModel, predictions, task_loss
    from mtsearch.train.runtime import seed_everything
    from mtsearch.train.trainer import EVAL_SUBSET_SEED

    seed_everything(0)
    cfg = make_config({"model": "minilm"})
    source = resolve_model("minilm")
    tok = load_tokenizer(source)
    model = MultitaskModel(load_encoder(source), cfg)
    ddir = data_dir()
    train_sets = {t: load_split(t, "train", ddir).examples for t in TASKS}
    dev_sets = {t: load_split(t, "dev", ddir).examples for t in TASKS}
    rng = np.random.default_rng(EVAL_SUBSET_SEED)
    dev_sets = {
        t: [ex[i] for i in np.sort(rng.choice(len(ex), EVAL_LIMIT, replace=False))]
        for t, ex in dev_sets.items()
    }
    stats = {"real": 0, "padded": 0}

    def collate(examples):
        # The starter tokenizes inside the DataLoader's collate: once per batch, every epoch.
        if examples[0].text_b is None:
            enc = tok([e.text_a for e in examples], padding=True, truncation=True, max_length=MAX_LENGTH,
                      return_tensors="pt")  # fmt: skip
        else:
            enc = tok([e.text_a for e in examples], [e.text_b for e in examples], padding=True, truncation=True,
                      max_length=MAX_LENGTH, return_tensors="pt")  # fmt: skip
        stats["real"] += int(enc["attention_mask"].sum())
        stats["padded"] += enc["attention_mask"].numel()
        labels = torch.tensor([e.label for e in examples], dtype=torch.float32)
        return [dict(enc)], labels

    gen = torch.Generator().manual_seed(0)
    loaders = {t: DataLoader(train_sets[t], batch_size=BATCH, shuffle=True, collate_fn=collate, generator=gen)
               for t in TASKS}  # fmt: skip
    iters = {t: iter(dl) for t, dl in loaders.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, foreach=False, fused=False)
    model.train()
    examples = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        for task in TASKS:  # one task batch after another, a step per task batch
            inputs, labels = next(iters[task])
            optimizer.zero_grad()
            loss = task_loss(task, model(task, inputs), labels)
            loss.backward()
            optimizer.step()
            examples += len(labels)
    train_seconds = time.perf_counter() - t0
    real, padded = stats["real"], stats["padded"]

    model.eval()
    t1 = time.perf_counter()
    n_eval = 0
    with torch.no_grad():
        for task in TASKS:
            for start in range(0, len(dev_sets[task]), EVAL_BATCH):
                inputs, labels = collate(dev_sets[task][start : start + EVAL_BATCH])
                predictions(task, model(task, inputs))
                n_eval += len(labels)
    eval_seconds = time.perf_counter() - t1
    return {
        "train_examples": examples,
        "train_seconds": train_seconds,
        "train_examples_per_s": examples / train_seconds,
        "train_real_tokens_per_s": real / train_seconds,
        "padding_efficiency": real / padded,
        "eval_examples": n_eval,
        "eval_examples_per_s": n_eval / eval_seconds,
        "peak_memory_mb": peak_mb(),
    }


def worker(kind: str, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=15, help="rounds of one batch per task")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", choices=["ours", "reference"])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "trainer.json"))
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        res = run_ours(args.steps) if args.worker == "ours" else run_reference(args.steps)
        print(json.dumps(res))
        return

    pairs = []
    for i in range(args.repeats):
        print(f"[{i + 1}/{args.repeats}] mtsearch ...", flush=True)
        ours = worker("ours", args.steps)
        print(f"[{i + 1}/{args.repeats}] reference ...", flush=True)
        ref = worker("reference", args.steps)
        pairs.append({"ours": ours, "reference": ref})
        print(
            f"  ours {ours['train_examples_per_s']:.1f} ex/s, reference {ref['train_examples_per_s']:.1f} ex/s"
        )

    def med(side: str, key: str) -> float:
        return statistics.median(p[side][key] for p in pairs)

    def ratio(key: str) -> float:
        return statistics.median(p["ours"][key] / p["reference"][key] for p in pairs)

    keys = ["train_examples_per_s", "train_real_tokens_per_s", "padding_efficiency", "eval_examples_per_s",
            "peak_memory_mb"]  # fmt: skip
    report = {
        "benchmark": "trainer",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "setup": {
            "model": "minilm",
            "batch_size": BATCH,
            "max_length": MAX_LENGTH,
            "rounds": args.steps,
            "tasks": list(TASKS),
            "eval_examples_per_task": EVAL_LIMIT,
            "repeats": args.repeats,
        },  # fmt: skip
        "ours": {k: med("ours", k) for k in keys},
        "reference": {k: med("reference", k) for k in keys},
        "ratio_ours_over_reference": {k: ratio(k) for k in keys},
        "target_train_ratio": 1.3,
        "pairs": pairs,
    }
    report["meets_target"] = report["ratio_ours_over_reference"]["train_examples_per_s"] >= 1.3
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    r = report["ratio_ours_over_reference"]
    print(
        f"train examples/s: ours {report['ours']['train_examples_per_s']:.1f}, reference "
        f"{report['reference']['train_examples_per_s']:.1f}, ratio {r['train_examples_per_s']:.2f} (target 1.3)\n"
        f"padding efficiency: ours {report['ours']['padding_efficiency']:.2f}, reference "
        f"{report['reference']['padding_efficiency']:.2f}\n"
        f"eval examples/s ratio {r['eval_examples_per_s']:.2f}; peak memory ratio {r['peak_memory_mb']:.2f}\n"
        f"written to {out}"
    )


if __name__ == "__main__":
    main()
