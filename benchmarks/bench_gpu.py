"""GPU benchmark (issue 17): how well mtsearch fills one GPU. Skips with one line without CUDA.

One command of a few minutes on one GPU; writes runs/bench/gpu.json after every stage (a
crash or a time-out keeps what was measured) and prints one table at the end:

- training examples/s of mtsearch and of a plain PyTorch loop (pre-tokenised batches
  padded per batch, fused AdamW, bf16 autocast, one summed-loss step per round), eager and
  compiled, for MiniLM and for a BERT-base-shaped random model (``BertConfig()`` with
  MiniLM's tokenizer, since no BERT-base checkpoint can be had offline); the rate is taken
  over the second half of each run, after CUDA (and the compiler) warmed up, and the first
  half's seconds are kept: compiling shows there;
- evaluation examples/s (MiniLM, the full dev sets);
- runs per hour at 1, 2, 4 and 8 short MiniLM runs at once on GPU 0 (the processes
  ``--jobs auto`` measures with, :class:`mtsearch.backends.packing.ProbePool`), with the
  GPU's utilisation sampled by nvidia-smi while they train, and what ``auto`` makes of them;
- what ``--jobs auto`` itself costs: the wall time of its measurement for the ``sampling``
  space's gpu profile.

The stages run in the order of what matters most, each under its own time cap (``--stage-minutes``)
and all within ``--minutes``: a stage that fails or runs out of time is recorded with why, and
the next one runs.

    python benchmarks/bench_gpu.py [--steps 160] [--bert-steps 100] [--run-steps 100] [--jobs 1,2,4,8]
                                   [--stages minilm-eager,eval,...] [--minutes 9]
                                   [--stage-minutes 2] [--compile-minutes 3] [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import data_dir  # noqa: E402

BATCH = 32
MAX_LENGTH = 128
TASKS = ("sst", "para", "sts")
#: The stages, most important first (a run out of time loses the last ones).
STAGES = ("minilm-eager", "eval", "jobs", "minilm-compiled", "bert-eager", "auto", "bert-compiled",
          "plain-compiled")  # fmt: skip


# ------------------------------------------------------------------------ measurements
def _config(model: str, steps: int, name: str, **extra):
    from mtsearch.config import make_config

    values = dict(model=model, data_dir=str(data_dir()), batch_size=BATCH, max_length=MAX_LENGTH, max_steps=steps,
                  eval_every=steps // 2, eval_limit=200, final_eval=False, mlflow=False, save_checkpoint=False,
                  progress=False, name=name)  # fmt: skip
    values.update(extra)
    return make_config(values)


def mtsearch_rate(model: str, steps: int, compile_: str, device: str = "cuda") -> dict:
    """An mtsearch run: training examples/s over its second half (after warm-up), the first half's
    seconds (compiling shows there) and the GPU's utilisation while it trained."""
    from mtsearch.records import read_metrics
    from mtsearch.train import train

    name = f"gpu-{Path(model).name}-{compile_}-{os.getpid()}"
    with UtilSampler() as util:
        result = train(_config(model, steps, name, compile=compile_, device=device))
    first, second = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"][-2:]
    seconds = second["train_seconds"] - first["train_seconds"]
    return {"rate": (second["examples"] - first["examples"]) / max(1e-9, seconds),
            "first_half_seconds": first["train_seconds"], "second_half_seconds": seconds,
            "gpu_util_mean": statistics.fmean(util.samples) if util.samples else None}  # fmt: skip


def plain_rate(model_dir: str, steps: int, compiled: bool, device: str = "cuda") -> dict:
    """A plain PyTorch loop on the same data: examples/s over its second half, first half's seconds."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mtsearch.data import load_split

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = AutoModel.from_pretrained(model_dir, dtype=torch.float32).to(dev)
    heads = torch.nn.ModuleDict({"sst": torch.nn.Linear(enc.config.hidden_size, 5),
                                 "para": torch.nn.Linear(enc.config.hidden_size, 1),
                                 "sts": torch.nn.Linear(enc.config.hidden_size, 1)}).to(dev)  # fmt: skip
    batches = {}
    for task in TASKS:  # pre-tokenised, padded per batch, on the device already
        rows = load_split(task, "train", data_dir(), limit=BATCH * 8).examples
        first = [r.text_a for r in rows]
        second = [r.text_b for r in rows] if rows[0].text_b is not None else None
        labels = torch.tensor([float(r.label) for r in rows])
        batches[task] = [
            (tok(first[i : i + BATCH], second[i : i + BATCH] if second else None, padding=True, truncation=True,
                 max_length=MAX_LENGTH, return_tensors="pt").to(dev), labels[i : i + BATCH].to(dev))
            for i in range(0, len(rows), BATCH)
        ]  # fmt: skip
    params = [*enc.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-5, fused=cuda)
    forward = torch.compile(enc) if compiled else enc

    def loss_of(task, inputs, y):
        cls = forward(**inputs).last_hidden_state[:, 0]
        out = heads[task](cls)
        if task == "sst":
            return torch.nn.functional.cross_entropy(out.float(), y.long())
        if task == "para":
            return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1).float(), y)
        return torch.nn.functional.mse_loss(out.squeeze(-1).float(), y)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    t_half = None
    for step in range(steps):
        if step == steps // 2:
            sync()
            t_half = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = sum(loss_of(t, *batches[t][step % len(batches[t])]) for t in TASKS)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    second = time.perf_counter() - t_half
    return {"rate": (steps - steps // 2) * BATCH * len(TASKS) / second, "first_half_seconds": t_half - t0,
            "second_half_seconds": second}  # fmt: skip


def eval_rate(device: str = "cuda") -> dict:
    """Evaluation examples/s of MiniLM on the full dev sets (the second of two passes)."""
    from mtsearch.train.evaluate import evaluate_examples
    from mtsearch.train.trainer import build_model, load_data, setup_run

    cfg = _config("minilm", 2, "gpu-eval", device=device)
    runtime = setup_run(cfg)
    data = load_data(cfg, runtime)
    model = build_model(cfg, runtime)
    rows = {t: None for t in cfg.tasks}
    args = (model, data.enc_dev, rows, runtime.device, runtime.precision, cfg.eval_batch_size, data.pad_id)
    t0 = time.perf_counter()
    evaluate_examples(*args)  # warm-up
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate_examples(*args)
    seconds = time.perf_counter() - t0
    examples = sum(len(e) for e in data.enc_dev.values())
    return {"rate": examples / seconds, "examples": examples, "seconds": seconds, "first_pass_seconds": first}


def bert_base_dir(tmp: Path) -> str:
    """A BERT-base-shaped model with random weights (seeded) and MiniLM's tokenizer, as a folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mtsearch.models.encoder import minilm_path

    path = tmp / "bert-base"
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        BertModel(BertConfig()).save_pretrained(path)
        AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(path)
    return str(path)


class UtilSampler:
    """GPU utilisation (%) from nvidia-smi, sampled every ``every`` seconds in a thread (none
    without nvidia-smi)."""

    def __init__(self, every: float = 0.5):
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True)  # fmt: skip
            except OSError:
                return
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


def auto_cost(device: str = "cuda") -> dict:
    """What ``--jobs auto`` costs before a ``sampling`` gpu-profile sweep: its measurement's wall time
    and answer (in a fresh folder, so nothing cached is read)."""
    from mtsearch.backends.packing import choose_jobs
    from mtsearch.sweep.space import load_space

    space = load_space("sampling", "gpu")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        choice = choose_jobs("auto", space, Path(tmp) / "sweep")
        seconds = time.perf_counter() - t0
        cached = Path(tmp) / "sweep" / "jobs-auto.json"  # none where nothing was measured (no CUDA)
        probes = json.loads(cached.read_text())["probes"] if cached.exists() else None
    return {"seconds": seconds, "jobs": choice.jobs, "per_gpu": choice.per_gpu, "line": choice.line(),
            "probes": probes}  # fmt: skip


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


def _rate(row: dict | None) -> float | None:
    return row.get("rate") if isinstance(row, dict) else None


def _training_line(row: dict) -> str:
    ours, plain = _rate(row.get("mtsearch")), _rate(row.get("plain"))
    parts = []
    if ours is not None:
        parts.append(f"mtsearch {ours:,.0f}")
        extra = []
        if row["mtsearch"].get("gpu_util_mean") is not None:
            extra.append(f"GPU busy {row['mtsearch']['gpu_util_mean']:.0f}%")
        if row["mode"] == "compiled":
            extra.append(f"first half {row['mtsearch']['first_half_seconds']:.0f} s")
        if extra:
            parts[-1] += f" ({', '.join(extra)})"
    if plain is not None:
        parts.append(f"plain loop {plain:,.0f}")
    ratio = f"; {ours / plain:.2f}x" if ours is not None and plain else ""
    missing = [f"{who}: {row[who]['error']}" for who in ("mtsearch", "plain")
               if isinstance(row.get(who), dict) and "error" in row[who]]  # fmt: skip
    text = " vs ".join(parts) + (" examples/s" if parts else "") + ratio
    return f"| training {row['model']}, {row['mode']} | {'; '.join([text, *missing]) if text else '; '.join(missing)} |"


def format_table(result: dict) -> str:
    """The one table of a result (``result['training']``, ``evaluation``, ``jobs``, ``auto``, ``auto_cost``)."""
    lines = [f"GPU benchmark on {result['device']}", "", "| measured | figure |", "|---|---|"]
    lines += [_training_line(row) for row in result.get("training", [])]
    ev = result.get("evaluation")
    if isinstance(ev, dict) and "rate" in ev:
        lines.append(
            f"| evaluation, MiniLM, full dev ({ev['examples']:,} examples) | {ev['rate']:,.0f} examples/s |"
        )
    elif isinstance(ev, dict):
        lines.append(f"| evaluation, MiniLM, full dev | {ev.get('error')} |")
    jobs = result.get("jobs") or []
    base = jobs[0]["runs_per_hour"] if jobs else None
    for row in jobs:
        util = f", GPU busy {row['gpu_util_mean']:.0f}%" if row["gpu_util_mean"] is not None else ""
        lines.append(f"| runs per hour at jobs {row['jobs']} | {row['runs_per_hour']:.1f} "
                     f"({row['runs_per_hour'] / base:.2f}x jobs 1){util} |")  # fmt: skip
    if result.get("auto"):
        lines.append(f"| `--jobs auto` would choose | {result['auto']['per_gpu']} run(s) a GPU: "
                     f"{result['auto']['reason']} |")  # fmt: skip
    cost = result.get("auto_cost")
    if isinstance(cost, dict) and "seconds" in cost:
        lines.append(
            f"| `--jobs auto` measurement, sampling gpu profile | {cost['seconds']:.0f} s: {cost['line']} |"
        )
    for stage, why in result.get("stages_not_measured", {}).items():
        lines.append(f"| stage {stage} | {why} |")
    return "\n".join(lines)


def write_result(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)  # a reader never sees half a file


class StageTimeout(Exception):
    pass


@contextlib.contextmanager
def time_cap(seconds: float):
    """Raise StageTimeout in this (main) thread after ``seconds`` (SIGALRM)."""

    def _raise(signum, frame):
        raise StageTimeout(f"over its {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _guarded(fn, *args) -> dict:
    """One measurement; its failure is recorded as {'error': ...} and the benchmark goes on."""
    try:
        return fn(*args)
    except (Exception, StageTimeout) as err:  # noqa: BLE001 - recorded, the next stage runs
        traceback.print_exc()
        first = str(err).splitlines()[0] if str(err) else ""
        return {"error": f"{type(err).__name__}: {first}"[:300]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--steps", type=int, default=160, help="training steps of each MiniLM examples/s measurement"
    )
    ap.add_argument("--bert-steps", type=int, default=100, help="the same for the BERT-base-shaped model")
    ap.add_argument("--run-steps", type=int, default=100, help="steps of each run of the jobs measurement")
    ap.add_argument("--jobs", default="1,2,4,8", help="runs at once to measure, comma-separated")
    ap.add_argument(
        "--stages", default=",".join(STAGES), help=f"which stages, comma-separated: {', '.join(STAGES)}"
    )
    ap.add_argument("--minutes", type=float, default=9.0, help="no stage starts after this many minutes")
    ap.add_argument("--stage-minutes", type=float, default=2.0, help="each stage's own time cap")
    ap.add_argument("--compile-minutes", type=float, default=3.0, help="the cap of a stage that compiles")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: take every code path on the CPU (a check of the script; its figures mean nothing)")  # fmt: skip
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "gpu.json"))
    args = ap.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(unknown)}: the stages are {', '.join(STAGES)}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: skipped, torch sees no CUDA device")
        return 0
    os.environ.setdefault("MTSEARCH_RUNS", str(ROOT / "runs" / "bench" / "tmp"))
    from mtsearch.backends.jobs import cores
    from mtsearch.models.encoder import minilm_path

    cuda = args.device == "cuda"
    props = torch.cuda.get_device_properties(0) if cuda else None
    out = Path(args.out)
    result = {"device": props.name if cuda else "cpu (a check of the code paths)",
              "gpus": torch.cuda.device_count() if cuda else 0, "torch": torch.__version__,
              "steps": args.steps, "bert_steps": args.bert_steps, "run_steps": args.run_steps,
              "training": [], "stage_seconds": {}, "stages_not_measured": {}}  # fmt: skip
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    minilm = str(minilm_path())

    def training(model_label, ours, plain_dir, mode, steps, with_plain=True):
        compiled = mode == "compiled"
        row = {"model": model_label, "mode": mode,
               "mtsearch": _guarded(mtsearch_rate, ours, steps, "on" if compiled else "off", args.device)}  # fmt: skip
        if with_plain:
            row["plain"] = _guarded(plain_rate, plain_dir, steps, compiled, args.device)
        result["training"].append(row)

    def jobs_stage():
        from mtsearch.backends.packing import ProbePool

        first_gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
        values = _config("minilm", args.run_steps, "gpu-jobs").model_dump(mode="json")
        rows = []
        with ProbePool(values, first_gpu, device=args.device) as pool:
            for j in args.jobs.split(","):
                rows.append(runs_per_hour(pool, int(j), args.run_steps))
                result["jobs"] = rows
                write_result(result, out)
        gpu_memory = props.total_memory / 2**30 if cuda else 0.0
        result["auto"] = packing_of(rows, gpu_memory, cores(), result["gpus"] or 1)

    def plain_compiled():
        for row in result["training"]:
            if row["mode"] == "compiled" and "plain" not in row:
                plain_dir = minilm if row["model"] == "MiniLM" else bert_base_dir(tmp)
                row["plain"] = _guarded(plain_rate, plain_dir, args.steps if row["model"] == "MiniLM"
                                        else args.bert_steps, True, args.device)  # fmt: skip
                write_result(result, out)

    actions = {
        "minilm-eager": lambda: training("MiniLM", "minilm", minilm, "eager", args.steps),
        "eval": lambda: result.__setitem__("evaluation", _guarded(eval_rate, args.device)),
        "jobs": jobs_stage,
        # mtsearch compiled first; the plain loop's compiled runs come last (plain-compiled)
        "minilm-compiled": lambda: training("MiniLM", "minilm", minilm, "compiled", args.steps, False),
        "bert-eager": lambda: training(
            "BERT-base shape", bert_base_dir(tmp), bert_base_dir(tmp), "eager", args.bert_steps
        ),  # fmt: skip
        "bert-compiled": lambda: training(
            "BERT-base shape", bert_base_dir(tmp), None, "compiled", args.bert_steps, False
        ),  # fmt: skip
        "auto": lambda: result.__setitem__("auto_cost", _guarded(auto_cost, args.device)),
        "plain-compiled": plain_compiled,
    }
    for stage in STAGES:
        if stage not in stages:
            continue
        elapsed = time.perf_counter() - start
        if elapsed > 60 * args.minutes:
            result["stages_not_measured"][stage] = (
                f"not started: {elapsed / 60:.1f} min had passed (--minutes)"
            )
            continue
        print(f"bench_gpu: stage {stage} ({elapsed:.0f} s so far)", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            with time_cap(60 * (args.compile_minutes if "compiled" in stage else args.stage_minutes)):
                actions[stage]()
        except (Exception, StageTimeout) as err:  # noqa: BLE001 - recorded, the next stage runs
            traceback.print_exc()
            result["stages_not_measured"][stage] = f"{type(err).__name__}: {err}"[:300]
        result["stage_seconds"][stage] = round(time.perf_counter() - t0, 1)
        write_result(result, out)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    write_result(result, out)
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
