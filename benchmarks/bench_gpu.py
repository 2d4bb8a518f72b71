"""GPU benchmark (issue 17): how well mtsearch fills one GPU. Skips with one line without CUDA.

One command, about 5 minutes on one GPU; writes runs/bench/gpu.json and prints one table:

- training examples/s of mtsearch and of a plain PyTorch loop (pre-tokenised batches
  padded per batch, fused AdamW, bf16 autocast, one summed-loss step per round), eager and
  compiled, for MiniLM and for a BERT-base-shaped random model (``BertConfig()`` with
  MiniLM's tokenizer, since no BERT-base checkpoint can be had offline); the rate is taken
  over the second half of each run, after CUDA (and the compiler) warmed up;
- evaluation examples/s (MiniLM, the full dev sets);
- runs per hour at 1, 2, 4 and 8 short MiniLM runs at once on GPU 0 (the processes
  ``--jobs auto`` measures with, :class:`mtsearch.backends.packing.ProbePool`), with the
  GPU's utilisation sampled by nvidia-smi while they train, and what ``auto`` makes of them.

    python benchmarks/bench_gpu.py [--steps 200] [--run-steps 150] [--jobs 1,2,4,8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import data_dir  # noqa: E402

BATCH = 32
MAX_LENGTH = 128
TASKS = ("sst", "para", "sts")


# ------------------------------------------------------------------------ measurements
def _config(model: str, steps: int, name: str, **extra):
    from mtsearch.config import make_config

    values = dict(model=model, data_dir=str(data_dir()), batch_size=BATCH, max_length=MAX_LENGTH, max_steps=steps,
                  eval_every=steps // 2, eval_limit=200, final_eval=False, mlflow=False, save_checkpoint=False,
                  progress=False, name=name)  # fmt: skip
    values.update(extra)
    return make_config(values)


def mtsearch_rate(model: str, steps: int, compile_: str) -> float:
    """Training examples/s of an mtsearch run over its second half (after warm-up)."""
    from mtsearch.records import read_metrics
    from mtsearch.train import train

    result = train(
        _config(model, steps, f"gpu-{Path(model).name}-{compile_}-{os.getpid()}", compile=compile_)
    )
    first, second = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"][-2:]
    return (second["examples"] - first["examples"]) / max(
        1e-9, second["train_seconds"] - first["train_seconds"]
    )


def plain_rate(model_dir: str, steps: int, compiled: bool) -> float:
    """Training examples/s of a plain PyTorch loop on the same data, over its second half."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mtsearch.data import load_split

    device = torch.device("cuda")
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = AutoModel.from_pretrained(model_dir).to(device)
    heads = torch.nn.ModuleDict({"sst": torch.nn.Linear(enc.config.hidden_size, 5),
                                 "para": torch.nn.Linear(enc.config.hidden_size, 1),
                                 "sts": torch.nn.Linear(enc.config.hidden_size, 1)}).to(device)  # fmt: skip
    batches = {}
    for task in TASKS:  # pre-tokenised, padded per batch, on the GPU already
        rows = load_split(task, "train", data_dir(), limit=BATCH * 8).examples
        first = [r.text_a for r in rows]
        second = [r.text_b for r in rows] if rows[0].text_b is not None else None
        labels = torch.tensor([float(r.label) for r in rows])
        batches[task] = [
            (tok(first[i : i + BATCH], second[i : i + BATCH] if second else None, padding=True, truncation=True,
                 max_length=MAX_LENGTH, return_tensors="pt").to(device), labels[i : i + BATCH].to(device))
            for i in range(0, len(rows), BATCH)
        ]  # fmt: skip
    params = [*enc.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-5, fused=True)
    forward = torch.compile(enc) if compiled else enc

    def loss_of(task, inputs, y):
        cls = forward(**inputs).last_hidden_state[:, 0]
        out = heads[task](cls)
        if task == "sst":
            return torch.nn.functional.cross_entropy(out.float(), y.long())
        if task == "para":
            return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1).float(), y)
        return torch.nn.functional.mse_loss(out.squeeze(-1).float(), y)

    t_half = None
    for step in range(steps):
        if step == steps // 2:
            torch.cuda.synchronize()
            t_half = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = sum(loss_of(t, *batches[t][step % len(batches[t])]) for t in TASKS)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return (steps - steps // 2) * BATCH * len(TASKS) / (time.perf_counter() - t_half)


def eval_rate() -> float:
    """Evaluation examples/s of MiniLM on the full dev sets (the second of two passes)."""
    from mtsearch.train.evaluate import evaluate_examples
    from mtsearch.train.trainer import build_model, load_data, setup_run

    cfg = _config("minilm", 2, "gpu-eval")
    runtime = setup_run(cfg)
    data = load_data(cfg, runtime)
    model = build_model(cfg, runtime)
    rows = {t: None for t in cfg.tasks}
    args = (model, data.enc_dev, rows, runtime.device, runtime.precision, cfg.eval_batch_size, data.pad_id)
    evaluate_examples(*args)  # warm-up
    t0 = time.perf_counter()
    evaluate_examples(*args)
    return sum(len(e) for e in data.enc_dev.values()) / (time.perf_counter() - t0)


def bert_base_dir(tmp: Path) -> str:
    """A BERT-base-shaped model with random weights (seeded) and MiniLM's tokenizer, as a folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mtsearch.models.encoder import minilm_path

    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(tmp / "bert-base")
    AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(tmp / "bert-base")
    return str(tmp / "bert-base")


class UtilSampler:
    """GPU utilisation (%) from nvidia-smi, sampled every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.5):
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True)  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def runs_per_hour(pool, jobs: int, run_steps: int) -> dict:
    """``jobs`` short MiniLM runs at once on one GPU: runs/h, utilisation, memory.

    The processes of ``pool`` (:class:`mtsearch.backends.packing.ProbePool`, what ``--jobs auto``
    measures with) each train ``run_steps`` steps; runs per hour come from their summed training
    steps/s over the second half of the steps (start-up and evaluation apart), as ``auto``'s do.
    """
    from mtsearch.backends.jobs import threads_per_job

    with UtilSampler() as util:
        t0 = time.perf_counter()
        row = pool.round(jobs, run_steps, threads=threads_per_job(jobs))
        wall = time.perf_counter() - t0
    return {"jobs": jobs, "wall_seconds": wall, "runs_per_hour": 3600 * row["steps_per_second"] / run_steps,
            "gpu_util_mean": statistics.fmean(util.samples) if util.samples else None,
            "run_memory_gib": row["run_memory_gib"]}  # fmt: skip


# ------------------------------------------------------------------------ report
def packing_of(jobs_rows: list[dict], gpu_memory_gib: float, cores: int, gpus: int) -> dict:
    """What ``--jobs auto`` makes of the jobs measurements (the same choice, from these rows)."""
    from mtsearch.backends.jobs import PackProbe
    from mtsearch.backends.packing import Measurement
    from mtsearch.backends.packing import packing_of as choose

    probes = [PackProbe(r["jobs"], r["runs_per_hour"]) for r in jobs_rows]
    memory = max((r["run_memory_gib"] or 0.0) for r in jobs_rows) if jobs_rows else 0.0
    packing = choose(Measurement(probes, memory, gpu_memory_gib), cores, gpus)
    return {"per_gpu": packing.per_gpu, "jobs": packing.jobs, "reason": packing.reason}


def format_table(result: dict) -> str:
    """The one table of a result (``result['training']``, ``evaluation``, ``jobs``, ``auto``)."""
    lines = [f"GPU benchmark on {result['device']}", "", "| measured | figure |", "|---|---|"]
    for row in result["training"]:
        ratio = row["mtsearch"] / row["plain"] if row["plain"] else float("nan")
        lines.append(f"| training {row['model']}, {row['mode']}: mtsearch vs plain loop | "
                     f"{row['mtsearch']:,.0f} vs {row['plain']:,.0f} examples/s ({ratio:.2f}x) |")  # fmt: skip
    lines.append(f"| evaluation, MiniLM, full dev | {result['evaluation']:,.0f} examples/s |")
    base = result["jobs"][0]["runs_per_hour"] if result["jobs"] else None
    for row in result["jobs"]:
        util = f", GPU busy {row['gpu_util_mean']:.0f}%" if row["gpu_util_mean"] is not None else ""
        lines.append(f"| runs per hour at jobs {row['jobs']} | {row['runs_per_hour']:.1f} "
                     f"({row['runs_per_hour'] / base:.2f}x jobs 1){util} |")  # fmt: skip
    if result.get("auto"):
        lines.append(f"| `--jobs auto` would choose | {result['auto']['per_gpu']} run(s) a GPU: "
                     f"{result['auto']['reason']} |")  # fmt: skip
    return "\n".join(lines)


def write_result(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="training steps of each examples/s measurement")
    ap.add_argument("--run-steps", type=int, default=150, help="steps of each run of the jobs measurement")
    ap.add_argument("--jobs", default="1,2,4,8", help="runs at once to measure, comma-separated")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "gpu.json"))
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: skipped, torch sees no CUDA device")
        return 0
    os.environ.setdefault("MTSEARCH_RUNS", str(ROOT / "runs" / "bench" / "tmp"))
    from mtsearch.models.encoder import minilm_path

    props = torch.cuda.get_device_properties(0)
    result = {"device": props.name, "gpus": torch.cuda.device_count(), "steps": args.steps, "training": []}
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "MiniLM": ("minilm", str(minilm_path())),
            "BERT-base shape": (bert_base_dir(Path(tmp)),) * 2,
        }
        for label, (ours, plain_dir) in models.items():
            for mode in ("eager", "compiled"):
                result["training"].append({
                    "model": label, "mode": mode,
                    "mtsearch": mtsearch_rate(ours, args.steps, "on" if mode == "compiled" else "off"),
                    "plain": plain_rate(plain_dir, args.steps, mode == "compiled"),
                })  # fmt: skip
    result["evaluation"] = eval_rate()
    from mtsearch.backends.jobs import cores
    from mtsearch.backends.packing import ProbePool

    first_gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    with ProbePool(_config("minilm", args.run_steps, "gpu-jobs").model_dump(mode="json"), first_gpu) as pool:
        result["jobs"] = [runs_per_hour(pool, int(j), args.run_steps) for j in args.jobs.split(",")]
    result["auto"] = packing_of(result["jobs"], props.total_memory / 2**30, cores(), result["gpus"])
    write_result(result, Path(args.out))
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
