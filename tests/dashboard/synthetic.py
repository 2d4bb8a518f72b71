"""Sweep folders written directly (no training): known effects, and damaged sweeps for edge cases.

``write_sweep`` lays out what a real Optuna sweep leaves behind (sweep.json, study.db with
the study named after the sweep and one trial per run, runs/<config_hash>/config.json and
runs/<config_hash>/s<k>/ with run.json, result.json and metrics.jsonl) with scores built
from a known formula:

- ``lr`` drives SST up and STS down (a trade-off) and dominates ``overall``;
- ``pooling`` 'mean' adds a little QQP accuracy;
- ``sampler`` does nothing; ``sampler_args.temperature`` applies only to 'temperature'.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mtsearch.sweep.space import params_key
from mtsearch.tasks import overall_score

LRS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
DIMENSIONS = [
    {"name": "lr", "kind": "float", "low": 1e-5, "high": 1e-3, "log": True, "bins": 3},
    {"name": "pooling", "kind": "categorical", "choices": ["cls", "mean"], "bins": 3},
    {"name": "sampler", "kind": "categorical", "choices": ["round_robin", "temperature"], "bins": 3},
    {"name": "sampler_args.temperature", "kind": "categorical", "choices": [1.0, 2.0],
     "when": {"sampler": ["temperature"]}, "bins": 3},
]  # fmt: skip


def configurations() -> list[dict]:
    out = []
    rng = np.random.default_rng(1)
    for i, lr in enumerate(LRS * 3):
        p = {
            "lr": lr,
            "pooling": ["cls", "mean"][i % 2],
            "sampler": ["round_robin", "temperature"][(i // 2) % 2],
        }
        if p["sampler"] == "temperature":
            p["sampler_args.temperature"] = float(rng.choice([1.0, 2.0]))
        out.append(p)
    return out


def scores_of(p: dict, seed: int) -> dict[str, float]:
    x = (math.log10(p["lr"]) + 5) / 2  # 0 .. 1
    noise = np.random.default_rng(int(params_key(p), 16) % 2**32 + seed).normal(0, 0.004, 3)
    return {
        "sst": 0.25 + 0.20 * x + noise[0],
        "para": 0.62 + (0.02 if p["pooling"] == "mean" else 0.0) + noise[1],
        "sts": 0.30 - 0.10 * x + noise[2],
    }


def run_path(sweep_dir: Path, config_index: int, seed: int) -> Path:
    """The run folder of configuration ``config_index`` (of :func:`configurations`) and seed ``seed``."""
    return sweep_dir / "runs" / params_key(configurations()[config_index])[:10] / f"s{seed}"


def write_sweep(root: Path, name: str = "synthetic", *, failed: bool = False, seeds: int = 2) -> Path:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState

    sd = root / "sweeps" / name
    (sd / "runs").mkdir(parents=True)
    space = {"name": name, "profile": "cpu", "description": "written by tests/dashboard/synthetic.py",
             "base": {"model": "tiny", "tasks": ["sst", "para", "sts"], "max_steps": 4, "num_threads": 1},
             "dimensions": DIMENSIONS, "objectives": ["overall"], "seeds": seeds, "algorithm": "tpe",
             "pruner": "none", "trials": 15, "minutes": None, "max_failures": 3}  # fmt: skip
    meta = {"name": name, "space": space, "fingerprint": "synthetic", "backend": "optuna", "created": 0.0,
            "mlflow_parent": None, "sessions": [{"wall_seconds": 120.0, "runs": 30}]}  # fmt: skip
    (sd / "sweep.json").write_text(json.dumps(meta))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{sd / 'study.db'}", direction="maximize")
    dists = {"lr": FloatDistribution(1e-5, 1e-3, log=True), "pooling": CategoricalDistribution(["cls", "mean"]),
             "sampler": CategoricalDistribution(["round_robin", "temperature"]),
             "sampler_args.temperature": CategoricalDistribution([1.0, 2.0])}  # fmt: skip
    for t, p in enumerate(configurations()):
        key = params_key(p)
        h = key[:10]
        (sd / "runs" / h).mkdir()
        (sd / "runs" / h / "config.json").write_text(json.dumps({"config_hash": h, "params": p, "params_key": key,
                                                                 "created": float(t)}))  # fmt: skip
        used = {k: dists[k] for k in p}
        for seed in range(seeds):
            rd = sd / "runs" / h / f"s{seed}"
            rd.mkdir()
            attrs = {"config_hash": h, "seed_index": seed, "seed": seed, "run": f"{h}/s{seed}"}
            (rd / "run.json").write_text(json.dumps({"sweep": name, "trial": t * seeds + seed, "seed": seed,
                                                     "seed_index": seed, "params": p, "params_key": key,
                                                     "config_hash": h}))  # fmt: skip
            if failed:
                (rd / "result.json").write_text(
                    json.dumps({"status": "failed", "error": "RuntimeError: boom"})
                )
                study.add_trial(optuna.trial.create_trial(params=p, distributions=used, state=TrialState.FAIL,
                                                          user_attrs={**attrs, "error": "RuntimeError: boom"}))  # fmt: skip
                continue
            s = scores_of(p, seed)
            ov = overall_score(s)
            rows = []
            for step, frac in ((2, 0.9), (4, 1.0)):
                sc = {k: v * frac for k, v in s.items()}
                rows.append({"kind": "eval", "step": step, "examples": step * 48, "scores": sc,
                             "overall": overall_score(sc), "grad_cosine": {"sst|para": 0.1 * frac,
                             "sst|sts": -0.2 * frac, "para|sts": 0.05}})  # fmt: skip
            (rd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (rd / "result.json").write_text(json.dumps({"status": "finished", "seconds": 3.0, "overall": ov,
                                                        "best": {"step": 4, "scores": s, "overall": ov},
                                                        "final": None, "mlflow_run_id": None}))  # fmt: skip
            study.add_trial(optuna.trial.create_trial(params=p, distributions=used, value=ov,
                                                      user_attrs={**attrs, **s, "overall": ov},
                                                      intermediate_values={2: overall_score({k: v * 0.9 for k, v in s.items()}), 4: ov}))  # fmt: skip
    return sd
