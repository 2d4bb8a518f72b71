"""Decision cost: racing (seeds 2..10) against a fixed grid of 10 seeds, on sweeps simulated from a real one.

The real sweep is the `sampling` sweep (10 samplers x 2 seeds): runs/sweeps/sampling when it
exists, else the committed benchmarks/data/sampling-runs.json (the runs table of such a sweep,
see its provenance). From it:
- the level means and their covariance (sweep/stats.py's model), from which each simulated
  sweep draws its true effects (so the truths vary around the real estimates);
- the seed noise: the residual sd of the seed-blocked model and the sd of the shared seed
  effects, where the runs' seed pairing is known; otherwise the pooled within-configuration
  sd and no shared seed effect.

Each simulated sweep draws every configuration's 10 seeds once (common random numbers); the
fixed grid analyses all of them, racing (mtsearch.sweep.racing.decide with its default policy,
futility stop included, round by round as a sweep calls it) only the runs it asks for.
Reported: racing's runs over the grid's (target <= 0.5) and how often the two reach the same
verdict per configuration (target >= 95%) and per sweep, each with its Monte-Carlo standard
error over the simulated sweeps (the configurations of one sweep are not independent); also
the same decision (worse / equivalent / open: the observed best and an undecided member differ
only in which open member has the highest mean) and the verdicts that differ. A configuration's
verdict here is the analysis' verdict with, for a best-set member, where it stands against the
best ('in best set: equivalent', 'in best set: undecided', 'in best set: observed best', 'worse').

    python benchmarks/bench_decision.py [--sims 100] [--futility 0.1] [--out runs/bench/decision.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIXTURE = ROOT / "benchmarks" / "data" / "sampling-runs.json"
GRID_SEEDS = 10
RACE = {"min": 2, "max": 10}
TARGET_RATIO = 0.5
TARGET_AGREEMENT = 0.95  # same verdict per configuration as the fixed grid
SEED = 20240


def real_runs():
    """(runs with config, seed_index, score; where they come from; whether seed indices pair runs)."""
    import pandas as pd

    sweep = ROOT / "runs" / "sweeps" / "sampling"
    if (sweep / "sweep.json").exists():
        from mtsearch.sweep.results import load_runs

        runs, _ = load_runs(sweep)
        ok = runs[
            runs["status"].isin(["finished", "stopped_early"])
            & runs["score"].notna()
            & ~runs["pruned_config"]
        ]
        ok = ok.assign(config=ok["config_hash"], score=ok["score"].astype(float))
        return ok[["config", "seed_index", "score"]], str(sweep), True
    doc = json.loads(FIXTURE.read_text())
    runs = pd.DataFrame(doc["runs"])
    return (
        runs[["config", "seed_index", "score"]],
        f"{FIXTURE.relative_to(ROOT)} ({doc['provenance'][:60]}...)",
        bool(doc["seed_pairing_known"]),
    )


def fitted(runs, paired: bool) -> dict:
    """Means, their covariance, the seed noise and the shared seed-effect sd of the real sweep."""
    from mtsearch.sweep import stats

    if paired:
        a = stats.analyse(runs, "config", details=False)
        t = a.table.set_index("level")
        levels = list(a.design.levels)
        mean = t.loc[levels, "mean"].to_numpy()
        cov = a.sigma**2 * a.design.W
        sigma = a.sigma
        block = runs.groupby("seed_index")["score"].mean() - runs["score"].mean()
        # the seed means' spread beyond what the noise alone gives them
        tau = math.sqrt(max(0.0, float(block.var(ddof=1)) - sigma**2 / runs["config"].nunique()))
    else:
        g = runs.groupby("config")["score"]
        levels = list(g.mean().index)
        mean = g.mean().to_numpy()
        sigma = math.sqrt(float(g.var(ddof=1).mean()))
        cov = np.diag(sigma**2 / g.size().to_numpy())
        tau = 0.0
    return {"levels": levels, "mean": mean, "cov": cov, "sigma": sigma, "tau": tau}


def simulate(fit: dict, sims: int, spec, delta: float) -> dict:
    import pandas as pd

    from mtsearch.sweep import racing, stats

    rng = np.random.default_rng(SEED)
    levels, k = fit["levels"], len(fit["levels"])
    agree, same_sweep, worse_agree, decision_agree, race_runs = [], [], [], [], []
    kept_true_best = {"race": 0, "grid": 0}
    reasons: dict[str, int] = {}
    differ: dict[str, int] = {}
    labels: dict[str, int] = {}
    for _ in range(sims):
        truth = rng.multivariate_normal(fit["mean"], fit["cov"])
        scores = (
            truth[:, None]
            + rng.normal(0, fit["tau"], GRID_SEEDS)[None]
            + rng.normal(0, fit["sigma"], (k, GRID_SEEDS))
        )
        table = pd.DataFrame([{"config_hash": c, "config": c, "seed_index": s, "status": "finished",
                               "score": float(scores[i, s])} for i, c in enumerate(levels) for s in range(GRID_SEEDS)])  # fmt: skip
        grid = _verdicts(stats.analyse(table, "config", delta=delta, details=False))
        done = table[table["seed_index"] < 0]
        while True:
            d = racing.decide(done, spec)
            if d.stop:
                break
            asked = table["config_hash"].isin(d.extend) & (table["seed_index"] == d.next_seed_index)
            done = pd.concat([done, table[asked]]) if len(done) else table[asked]
            if d.next_seed_index == 0 and not len(d.extend):  # the sweep starts every configuration
                done = table[table["seed_index"] == 0]
        reason = d.reason.split(" (")[0]  # the futility threshold is in the policy, not per sweep
        reasons[reason] = reasons.get(reason, 0) + 1
        race = _verdicts(stats.analyse(done, "config", delta=delta, alpha=spec.final_alpha, details=False))
        race_runs.append(len(done))
        same = [race[c] == grid[c] for c in levels]
        agree.append(sum(same) / k)
        same_sweep.append(all(same))
        worse_agree.append(sum((race[c] == stats.WORSE) == (grid[c] == stats.WORSE) for c in levels) / k)
        decision_agree.append(sum(_decision(race[c]) == _decision(grid[c]) for c in levels) / k)
        for c in levels:
            if race[c] != grid[c]:
                key = f"race {race[c]}, grid {grid[c]}"
                labels[key] = labels.get(key, 0) + 1
            if _decision(race[c]) != _decision(grid[c]):
                key = f"race {_decision(race[c])}, grid {_decision(grid[c])}"
                differ[key] = differ.get(key, 0) + 1
        best = levels[int(np.argmax(truth))]
        kept_true_best["race"] += race[best] != stats.WORSE
        kept_true_best["grid"] += grid[best] != stats.WORSE
    grid_runs = k * GRID_SEEDS
    runs = np.asarray(race_runs, dtype=float)
    return {
        "sims": sims,
        "grid_runs": grid_runs,
        "racing_runs_mean": float(runs.mean()),
        "racing_runs_max": int(runs.max()),
        "ratio": float(runs.mean() / grid_runs),
        "ratio_mc_se": _se(runs / grid_runs),
        "agreement_per_configuration": float(np.mean(agree)),
        # the configurations of one sweep share its truth and noise: the error is over sweeps
        "agreement_per_configuration_mc_se": _se(agree),
        "agreement_per_sweep": float(np.mean(same_sweep)),
        "agreement_per_sweep_mc_se": _se(same_sweep),
        "agreement_on_worse": float(np.mean(worse_agree)),
        "agreement_on_decision": float(np.mean(decision_agree)),
        "agreement_on_decision_mc_se": _se(decision_agree),
        "true_best_kept": {m: v / sims for m, v in kept_true_best.items()},
        "stop_reasons": reasons,
        "verdicts_that_differ": labels,
        "decisions_that_differ": differ,
    }


def _se(values) -> float:
    """Monte-Carlo standard error of a mean over the simulated sweeps."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def _decision(verdict: str) -> str:
    """worse, equivalent or open: the observed best and an undecided member differ only in which open
    member happens to have the highest mean, which is chance among near-ties in either design."""
    from mtsearch.sweep import stats

    if verdict == stats.WORSE:
        return verdict
    return stats.EQUIVALENT if verdict.endswith(stats.EQUIVALENT) else "open"


def _verdicts(a) -> dict[str, str]:
    """Per level: the verdict, and for a best-set member its standing ('in best set: undecided')."""
    from mtsearch.sweep import stats

    return {
        lvl: f"{v}: {d}" if v == stats.IN_SET else v
        for lvl, v, d in zip(a.table["level"], a.table["verdict"], a.table["decided"], strict=True)
    }


def main() -> None:
    from mtsearch.sweep import stats
    from mtsearch.sweep.racing import FUTILITY, RaceSpec

    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=100, help="simulated sweeps (a smoke check: --sims 2)")
    ap.add_argument("--delta", type=float, default=stats.DELTA)
    ap.add_argument("--futility", type=float, default=None,
                    help=f"the futility threshold (default {FUTILITY}, the racing policy's; 0: no futility stop)")  # fmt: skip
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "decision.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs, source, paired = real_runs()
    fit = fitted(runs, paired)
    spec = RaceSpec(RACE["min"], RACE["max"], args.delta)
    if args.futility is not None:
        spec = dataclasses.replace(spec, futility=args.futility)
    out = {
        "source": source,
        "seed_pairing_known": paired,
        "levels": dict(zip(fit["levels"], np.round(fit["mean"], 4).tolist(), strict=True)),
        "seed_sd": fit["sigma"],
        "seed_block_sd": fit["tau"],
        "racing": {"min": spec.min, "max": spec.max, "delta": spec.delta, "futility": spec.futility},
        **simulate(fit, args.sims, spec, args.delta),
        "target_ratio": TARGET_RATIO,
        "target_agreement": TARGET_AGREEMENT,
    }
    out["met"] = out["ratio"] <= TARGET_RATIO and out["agreement_per_configuration"] >= TARGET_AGREEMENT
    out["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"{out['sims']} simulated sweeps, {out['seconds']} s: racing used {out['ratio']:.3f} +- "
          f"{out['ratio_mc_se']:.3f} of the fixed grid's runs (target <= {TARGET_RATIO}); same verdict for "
          f"{out['agreement_per_configuration']:.1%} +- {out['agreement_per_configuration_mc_se']:.1%} of "
          f"configurations (target >= {TARGET_AGREEMENT:.0%}), {out['agreement_per_sweep']:.1%} +- "
          f"{out['agreement_per_sweep_mc_se']:.1%} of sweeps entirely; same decision (worse / equivalent / open) "
          f"for {out['agreement_on_decision']:.1%} (+- is one Monte-Carlo standard error)")  # fmt: skip


if __name__ == "__main__":
    main()
