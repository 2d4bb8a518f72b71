"""Does a cheap sweep's ranking hold at a higher fidelity? ``mtsearch verify SWEEP --profile long``.

A CPU sweep ranks configurations after a short, partly frozen training on a slice of the
data; a user needs to know whether that answer transfers to longer, full fine-tuning.
Verify re-trains the K best configurations of a finished sweep and the W worst (the
extremes span the sweep's range, so a ranking that does not even hold there does not hold
anywhere) under another profile of the same space file (``long``: only budget and
fidelity change), with the same seed indices and so the same derived seeds, and compares
the two rankings of those configurations with Kendall's tau.

Runs are the sweep's runs (:mod:`mtsearch.sweep.runner`): keyed by (config_hash, seed
index) under ``runs/sweeps/<sweep>/verify/<profile>/runs/<config_hash>/s<k>/``, trained
exactly once under the run's flock, so a killed verify resumes without retraining a
finished run, and two verify processes share the work. The configuration hash there is
the long configuration's (its settings differ); ``verify.json`` maps it to the sweep's.

The interval: seeds are resampled with replacement within each configuration, the cheap
and long scores of a seed index together (they share the seed), and tau recomputed on the
resampled means (:func:`rank_agreement`). It measures seed noise only: the configurations
are held fixed (chosen as extremes, which makes tau optimistic for the whole sweep) and so
are the dev subsets (evaluation-set noise is not in it); with few seeds it is coarse.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from mtsearch.errors import ConfigError, MtsearchError

BOOTSTRAP = 2000  # resamples for tau's interval
BOOTSTRAP_SEED = 0  # the interval is reproducible: same runs, same interval
ALPHA = 0.05
WAIT_SECONDS = 5.0  # while another process trains a run this one needs
#: Settings a fidelity profile may change: how long, on how much data, how much of the
#: encoder trains, how precisely it is evaluated, and bookkeeping. Anything else changes
#: what is compared, and verify says so.
FIDELITY_KEYS = frozenset({
    "max_steps", "max_examples", "max_epochs", "eval_every", "eval_every_epochs", "train_limit",
    "train_fraction", "eval_limit", "final_eval", "freeze_layers", "frozen_encoder", "max_length",
    "save_checkpoint", "num_threads", "eval_batch_size", "progress", "data_dir",
})  # fmt: skip
ASSUMES = (
    "seed noise only: seeds are resampled with replacement within each configuration (a seed's cheap and "
    "long scores together), the chosen configurations and the dev subsets are held fixed (evaluation-set "
    "noise is not in it), and the configurations are the sweep's extremes, which makes tau optimistic for "
    "the sweep as a whole; with n seeds a mean takes few values, so the interval is coarse"
)


# ------------------------------------------------------------------ rank agreement
@dataclass
class Agreement:
    """How two rankings of the same configurations agree (higher scores rank first)."""

    labels: list[str]
    cheap_means: list[float]
    long_means: list[float]
    tau: float
    p_value: float
    interval: tuple[float, float]  # bootstrap percentile interval of tau
    level: float
    n_boot: int
    boot_seed: int
    undefined: int  # resamples where tau was undefined (a ranking all ties)
    swapped: list[dict[str, Any]]  # pairs whose order differs, with how often resamples keep them swapped

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "interval": list(self.interval), "assumes": ASSUMES}


def rank_agreement(
    cheap: dict[str, np.ndarray],
    long: dict[str, np.ndarray],
    n_boot: int = BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    level: float = 1 - ALPHA,
) -> Agreement:
    """Kendall's tau between the mean scores of two fidelities, its bootstrap interval and the swapped pairs.

    ``cheap[c]`` and ``long[c]`` are configuration c's scores per seed, aligned: position i
    of both is the same seed index (the bootstrap draws seed positions and keeps the pair).
    A pair is swapped when the two means order it differently (a tie at either fidelity is
    not a swap); each swap carries the share of resamples in which it is swapped too.
    """
    from scipy.stats import kendalltau

    labels = list(cheap)
    if len(labels) < 2:
        raise ValueError("rank agreement needs at least 2 configurations")
    for c in labels:
        if len(cheap[c]) != len(long[c]) or len(cheap[c]) == 0:
            raise ValueError(
                f"configuration {c}: cheap and long scores must be aligned by seed and non-empty"
            )
    a = np.array([np.mean(cheap[c]) for c in labels])
    b = np.array([np.mean(long[c]) for c in labels])
    res = kendalltau(a, b)
    pairs = list(combinations(range(len(labels)), 2))

    rng = np.random.default_rng(seed)
    taus = np.empty(n_boot)
    flips = np.zeros(len(pairs))
    for r in range(n_boot):
        ra, rb = np.empty(len(labels)), np.empty(len(labels))
        for i, c in enumerate(labels):
            pick = rng.integers(0, len(cheap[c]), len(cheap[c]))
            ra[i], rb[i] = np.mean(np.asarray(cheap[c])[pick]), np.mean(np.asarray(long[c])[pick])
        taus[r] = kendalltau(ra, rb).statistic if np.ptp(ra) > 0 and np.ptp(rb) > 0 else np.nan
        for p, (i, j) in enumerate(pairs):
            flips[p] += (ra[i] - ra[j]) * (rb[i] - rb[j]) < 0
    ok = taus[~np.isnan(taus)]
    tail = 100 * (1 - level) / 2
    interval = (
        (float(np.percentile(ok, tail)), float(np.percentile(ok, 100 - tail))) if len(ok) else (math.nan,) * 2
    )
    swapped = []
    for p, (i, j) in enumerate(pairs):
        if (a[i] - a[j]) * (b[i] - b[j]) < 0:
            first, second = (i, j) if a[i] > a[j] else (j, i)  # cheap order: first ranked above second
            swapped.append({
                "cheap_above": labels[first], "cheap_below": labels[second],
                "cheap": [float(a[first]), float(a[second])], "long": [float(b[first]), float(b[second])],
                "share_of_resamples": float(flips[p] / n_boot),
            })  # fmt: skip
    return Agreement(labels, a.tolist(), b.tolist(), float(res.statistic), float(res.pvalue), interval,
                     level, n_boot, seed, int(np.isnan(taus).sum()), swapped)  # fmt: skip


# --------------------------------------------------------------------------- plan
@dataclass
class Chosen:
    """One configuration to verify: the sweep's runs of it and where its long runs go."""

    config_hash: str  # the sweep's
    long_hash: str
    params: dict[str, Any]
    role: str  # "top" or "worst"
    seeds: dict[int, int]  # seed index -> seed, from the sweep's run folders
    cheap: dict[int, float]  # seed index -> the sweep's score
    cheap_rank: int  # among the sweep's finished configurations

    @property
    def label(self) -> str:
        from mtsearch.sweep.runner import describe_params

        return describe_params(self.params)


@dataclass
class VerifyPlan:
    sweep: str
    sweep_dir: Path
    profile: str
    space: Any  # the long Space
    cheap_profile: str
    chosen: list[Chosen]
    finished_configs: int
    changes: dict[str, tuple[Any, Any]]  # setting -> (cheap, long)
    notes: list[str] = field(default_factory=list)
    estimate: dict[str, Any] = field(default_factory=dict)

    @property
    def verify_dir(self) -> Path:
        return self.sweep_dir / "verify" / self.profile

    def keys(self):
        from mtsearch.sweep.keys import RunKey

        return [RunKey(c.long_hash, k) for c in self.chosen for k in sorted(c.seeds)]


def plan_verify(
    sweep: str,
    profile: str,
    top: int,
    worst: int = 2,
    extra_set: dict[str, Any] | None = None,
    seeds: int | None = None,
):
    """Check the request and choose the runs, before anything trains; every bad input is one ConfigError.

    The runs are the chosen configurations' seed indices that all of them have (after a
    raced sweep the best have more seeds than the worst; comparing means over different seeds
    would mix seed luck into the ranking), or the first ``seeds`` of those.
    """
    from mtsearch.config import apply_overrides
    from mtsearch.sweep.keys import DONE
    from mtsearch.sweep.results import find_sweep
    from mtsearch.sweep.runner import load_runs, read_sweep_meta
    from mtsearch.sweep.space import load_space, recorded_source

    if not isinstance(top, int) or top < 1:
        raise ConfigError(
            f"--top is how many of the best configurations to verify, a whole number >= 1 (got {top})"
        )
    if seeds is not None and (not isinstance(seeds, int) or seeds < 1):
        raise ConfigError(f"--seeds is how many seed indices to re-run per configuration, a whole number >= 1 "
                          f"(got {seeds})")  # fmt: skip
    if not isinstance(worst, int) or worst < 0:
        raise ConfigError(f"--worst is how many of the worst configurations to verify, a whole number >= 0 "
                          f"(got {worst})")  # fmt: skip
    sweep_dir = find_sweep(sweep)
    meta = read_sweep_meta(sweep_dir)
    recorded = meta.get("space") or {}
    cheap_profile = recorded.get("profile") or "cpu"
    if profile == cheap_profile:
        raise ConfigError(f"--profile {profile} is the profile sweep '{sweep_dir.name}' ran with; verify re-runs "
                          "it at another fidelity (e.g. --profile long)")  # fmt: skip
    source = recorded_source(recorded, sweep_dir.name)
    long_space = load_space(
        source, profile, extra_set
    )  # an unknown profile fails here, naming the file's line
    cheap_now = load_space(source, cheap_profile)

    # The sweep's own base (as recorded: with its --set overrides) plus what the profile changes.
    changes = {
        k: (cheap_now.base.get(k), v) for k, v in long_space.base.items() if cheap_now.base.get(k) != v
    }
    base = apply_overrides(recorded.get("base") or cheap_now.base, {k: v for k, (_, v) in changes.items()})
    space = dataclasses.replace(long_space, base=base)
    notes = []
    if cheap_now.fingerprint() != meta.get("fingerprint"):
        notes.append(f"the space file {Path(str(source)).name} changed since the sweep (or the sweep ran with "
                     "--set): verify starts from the sweep's recorded base settings")  # fmt: skip
    other = sorted(k for k in changes if k not in FIDELITY_KEYS)
    if other:
        notes.append(f"profile '{profile}' also changes {', '.join(other)}, which are not budget or fidelity "
                     "settings: a swap may come from them, not from the longer training")  # fmt: skip
    if space.multi_objective:
        notes.append("a multi-objective sweep: configurations are ranked by overall")

    runs = load_runs(sweep_dir)
    if runs.empty:
        raise ConfigError(f"sweep '{sweep_dir.name}' has no runs yet")
    ok = runs[
        runs["status"].isin(("finished", "stopped_early")) & ~runs["pruned_config"] & runs["score"].notna()
    ]
    if (~runs["status"].isin(DONE)).any():
        notes.append(f"{int((~runs['status'].isin(DONE)).sum())} run(s) of the sweep are not done: "
                     "verify uses the finished ones")  # fmt: skip
    means = ok.groupby("config_hash", sort=False)["score"].mean().sort_values(ascending=False, kind="stable")
    if len(means) < 2:
        raise ConfigError(f"sweep '{sweep_dir.name}' has {len(means)} finished configuration(s); verify compares "
                          "rankings and needs at least 2")  # fmt: skip
    order = list(means.index)
    picked = [(h, "top") for h in order[:top]]
    picked += [(h, "worst") for h in order[::-1][:worst] if h not in order[:top]]
    shared = sorted(
        set.intersection(*(set(ok.loc[ok["config_hash"] == h, "seed_index"].astype(int)) for h, _ in picked))
    )
    if not shared:
        raise ConfigError("the chosen configurations share no finished seed index: verify compares them on the "
                          "same seeds")  # fmt: skip
    if seeds is not None and seeds > len(shared):
        raise ConfigError(f"--seeds {seeds}: the chosen configurations share only {len(shared)} finished seed "
                          f"indices ({', '.join(map(str, shared))})")  # fmt: skip
    use = shared[:seeds] if seeds is not None else shared
    chosen = []
    for h, role in picked:
        g = ok[(ok["config_hash"] == h) & ok["seed_index"].astype(int).isin(use)].sort_values("seed_index")
        params = g["params"].iloc[0]
        seeds = {int(k): int(s) for k, s in zip(g["seed_index"], g["seed"], strict=True)}
        for k, s in seeds.items():  # same base seed in the file: same derived seed per index
            if space.seed_for(k) != s:
                raise ConfigError(f"run {h}/s{k} trained with seed {s}, but the space now derives {space.seed_for(k)} "
                                  "for that index (base_seed changed): verify needs the sweep's seeds")  # fmt: skip
        chosen.append(Chosen(h, space.config_hash(params), params, role, seeds,
                             {int(k): float(v) for k, v in zip(g["seed_index"], g["score"], strict=True)},
                             order.index(h) + 1))  # fmt: skip
    if top + worst > len(order):
        notes.append(f"the sweep has {len(order)} finished configurations: verifying all of them")
    plan = VerifyPlan(
        sweep_dir.name, sweep_dir, profile, space, cheap_profile, chosen, len(order), changes, notes
    )
    plan.estimate = estimate(plan, ok)
    return plan


# ----------------------------------------------------------------------- estimate
def estimate(plan: VerifyPlan, ok) -> dict[str, Any]:
    """Seconds per long run, scaled from the sweep's runs: budget, trained layers and evaluated examples.

    From a cheap run's metrics: its training seconds, evaluation seconds per evaluated
    example, and the rest (loading, caches) as a fixed cost. Training scales by the budget:
    the long profile's max_examples over the examples the run saw, else its max_steps over
    the run's steps (a sampler's examples per step stay what they were); both training and
    evaluation by the encoder layers that run (frozen layers are cached, so they cost
    nothing); evaluation by how many evaluations of how many examples. A rough figure for
    planning, printed before anything trains.
    """
    from mtsearch.records import read_metrics
    from mtsearch.sweep.keys import DONE, RunKey, run_dir

    cheap_base, long_base = plan.space.base | {k: c for k, (c, _) in plan.changes.items()}, plan.space.base
    done = {k for k in plan.keys() if _status(run_dir(plan.verify_dir, k)) in DONE}
    todo = len(plan.keys()) - len(done)
    per = []
    for c in plan.chosen:
        for k in c.seeds:
            rows = [r for r in read_metrics(run_dir(plan.sweep_dir, RunKey(c.config_hash, k)) / "metrics.jsonl")
                    if r.get("kind") == "eval"]  # fmt: skip
            total = ok.loc[(ok["config_hash"] == c.config_hash) & (ok["seed_index"] == k), "seconds"]
            if rows and len(total) and total.iloc[0]:
                per.append((rows, float(total.iloc[0])))
    if not per:
        return {"runs": todo, "done": len(done), "seconds_per_run": None, "seconds": None}

    def budget_factor(last: dict[str, Any]) -> float:
        """The long run's training over this cheap run's: examples, else steps, else the same."""
        if long_base.get("max_examples") and last.get("examples"):
            return long_base["max_examples"] / last["examples"]
        if long_base.get("max_steps") and last.get("step"):
            return long_base["max_steps"] / last["step"]
        return 1.0

    factor = float(np.median([budget_factor(r[-1]) for r, _ in per]))
    train_long = np.median([r[-1]["train_seconds"] * budget_factor(r[-1]) for r, _ in per])
    eval_example = np.median(
        [r[-1]["eval_seconds"] / max(1, len(r) * r[-1].get("eval_examples", 1)) for r, _ in per]
    )
    fixed = np.median([max(0.0, s - r[-1]["train_seconds"] - r[-1]["eval_seconds"]) for r, s in per])
    steps_long = int(np.median([r[-1]["step"] * budget_factor(r[-1]) for r, _ in per]))
    layers = _layer_factor(cheap_base, long_base)
    evals_long = math.ceil(steps_long / (long_base.get("eval_every") or steps_long))
    ex_cheap = per[0][0][-1].get("eval_examples", 0)
    lim_c, lim_l = cheap_base.get("eval_limit"), long_base.get("eval_limit")
    ex_long = ex_cheap * (lim_l / lim_c) if lim_c and lim_l else ex_cheap
    seconds = fixed + layers * (train_long + eval_example * evals_long * ex_long)
    return {"runs": todo, "done": len(done), "seconds_per_run": float(seconds), "seconds": float(seconds * todo),
            "layer_factor": layers, "budget_factor": factor,
            "lower_bound": lim_l is None and lim_c is not None}  # fmt: skip


def _layer_factor(cheap: dict[str, Any], long: dict[str, Any]) -> float:
    """How many more encoder layers run per example (frozen lower layers are cached)."""
    n = _encoder_layers(long.get("model") or "minilm")
    if n is None:
        return 1.0
    fc, fl = (min(n, int(b.get("freeze_layers") or 0)) for b in (cheap, long))
    return (n - fl + 1) / (n - fc + 1)  # +1: embeddings and heads run either way


def _encoder_layers(model: str) -> int | None:
    try:
        from mtsearch.models.encoder import TINY, resolve_model

        source = resolve_model(model)
        if source.kind == "tiny":
            return int(TINY["num_hidden_layers"])
        if source.kind == "hub":
            return None
        return int(json.loads((Path(source.location) / "config.json").read_text())["num_hidden_layers"])
    except (MtsearchError, OSError, KeyError, ValueError):
        return None


def _status(rd: Path) -> str | None:
    try:
        return json.loads((rd / "result.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def format_plan(plan: VerifyPlan) -> str:
    e = plan.estimate
    lines = [f"verify {plan.sweep}: profile {plan.cheap_profile} -> {plan.profile}, "
             f"{len(plan.chosen)} of {plan.finished_configs} configurations "
             f"({sum(c.role == 'top' for c in plan.chosen)} best, {sum(c.role == 'worst' for c in plan.chosen)} worst), "
             f"the sweep's seed indices"]  # fmt: skip
    if plan.changes:
        lines.append("  changes: " + ", ".join(f"{k} {c} -> {v}" for k, (c, v) in plan.changes.items()))
    for c in plan.chosen:
        seeds = ", ".join(f"s{k}={s}" for k, s in sorted(c.seeds.items()))
        lines.append(f"  {c.role:5s} #{c.cheap_rank:<3d} {c.label}  ({seeds})")
    if e.get("seconds") is not None:
        bound = " (at least: full dev sets)" if e.get("lower_bound") else ""
        lines.append(f"estimate: {e['runs']} run(s) to train ({e['done']} already done), about "
                     f"{_duration(e['seconds_per_run'])} each, {_duration(e['seconds'])} in all{bound} "
                     f"(the sweep's run times x {e['budget_factor']:.1f} for the run's budget x "
                     f"{e['layer_factor']:.1f} for the layers that train)")  # fmt: skip
    else:
        lines.append(f"estimate: {e.get('runs')} run(s) to train (no timing in the sweep's runs to scale)")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


# ------------------------------------------------------------------------ execute
def run_verify(plan: VerifyPlan, mlflow: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train every verification run not done yet (exactly once, resumable), then compare and write verify.json."""
    from mtsearch.records import write_json
    from mtsearch.sweep.keys import DONE
    from mtsearch.sweep.runner import (
        RunLock,
        SweepContext,
        execute_run,
        file_lock,
        is_locked,
        register_configuration,
    )

    t0 = time.perf_counter()
    vdir = plan.verify_dir
    vdir.mkdir(parents=True, exist_ok=True)
    space = plan.space
    # A sweep.json of its own: the verify folder reads as a sweep (load_runs, `mtsearch results PATH`).
    with file_lock(vdir / ".sweep.lock"):
        write_json(vdir / "sweep.json", {"name": f"{plan.sweep}-verify-{plan.profile}", "space": space.describe(),
                                         "fingerprint": space.fingerprint(), "backend": "verify",
                                         "verify_of": plan.sweep, "profile": plan.profile})  # fmt: skip
    ctx = SweepContext(space, f"{plan.sweep}-verify-{plan.profile}", "verify", vdir, mlflow=mlflow)
    params = {}
    for c in plan.chosen:
        register_configuration(ctx, c.params)
        params[c.long_hash] = c.params
    pending, trained = list(plan.keys()), 0
    while pending:
        waiting = []
        for key in pending:
            rd = ctx.run_dir(key)
            if _status(rd) in DONE:
                continue
            lock = RunLock.try_acquire(rd)
            if lock is None:  # another verify process trains it
                waiting.append(key)
                continue
            try:
                if _status(rd) in DONE:  # finished between the check and the lock
                    continue
                if progress:
                    print(f"training {key} ({trained + 1} of {plan.estimate.get('runs', '?')})", flush=True)
                execute_run(ctx, key, params[key.config_hash])
                trained += 1
            finally:
                lock.release()
        pending = waiting
        if pending and all(is_locked(ctx.run_dir(k)) for k in pending):
            time.sleep(WAIT_SECONDS)
    return compare(plan, trained=trained, seconds=time.perf_counter() - t0)


def compare(plan: VerifyPlan, trained: int = 0, seconds: float = 0.0) -> dict[str, Any]:
    """The two rankings of the verified configurations, from the run folders; written to verify.json."""
    from mtsearch.records import write_json
    from mtsearch.sweep.keys import RunKey, run_dir
    from mtsearch.sweep.runner import read_sweep_meta, run_scores
    from mtsearch.tasks import overall_score

    objective = plan.space.objectives[0] if not plan.space.multi_objective else "overall"
    rows, cheap, long, failed = [], {}, {}, []
    for c in plan.chosen:
        got = {}
        for k in sorted(c.seeds):
            rd = run_dir(plan.verify_dir, RunKey(c.long_hash, k))
            res = json.loads((rd / "result.json").read_text()) if (rd / "result.json").exists() else {}
            scores = run_scores(res) if res.get("status") in ("finished", "stopped_early") else {}
            if scores:
                got[k] = float(overall_score(scores) if objective == "overall" else scores[objective])
            else:
                failed.append(f"{c.long_hash}/s{k} ({c.label}): {res.get('status') or 'not run'} "
                              f"{res.get('error') or ''}".strip())  # fmt: skip
        both = sorted(set(got) & set(c.cheap))
        row = {"config_hash": c.config_hash, "long_hash": c.long_hash, "label": c.label, "params": c.params,
               "role": c.role, "rank_in_sweep": c.cheap_rank,
               "seeds": [{"seed_index": k, "seed": c.seeds[k], "cheap": c.cheap[k], "long": got.get(k)}
                         for k in sorted(c.seeds)],
               "cheap": _mean_ci([c.cheap[k] for k in sorted(c.cheap)]), "long": _mean_ci(list(got.values()))}  # fmt: skip
        rows.append(row)
        if both:
            cheap[c.label] = np.array([c.cheap[k] for k in both])
            long[c.label] = np.array([got[k] for k in both])
    for key in ("cheap", "long"):
        means = {r["label"]: r[key]["mean"] for r in rows if r[key]["n"]}
        ranked = sorted(means, key=lambda lbl: -means[lbl])
        for r in rows:
            r[f"rank_{key}"] = ranked.index(r["label"]) + 1 if r["label"] in means else None
    agreement = rank_agreement(cheap, long) if len(cheap) >= 2 else None
    out = {"sweep": plan.sweep, "profile": plan.profile, "cheap_profile": plan.cheap_profile,
           "objective": objective, "changes": {k: list(v) for k, v in plan.changes.items()},
           "configurations": rows, "agreement": agreement.to_json() if agreement else None,
           "failed": failed, "notes": plan.notes, "estimate": plan.estimate, "trained": trained,
           "seconds": seconds, "space": read_sweep_meta(plan.verify_dir).get("space"), "created": time.time()}  # fmt: skip
    write_json(plan.verify_dir / "verify.json", out)
    return out


def _mean_ci(values: list[float]) -> dict[str, Any]:
    """Mean and the half-width of its 95% t-interval (NaN with fewer than 2 values)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return {"n": 0, "mean": None, "ci95": None}
    half = (
        float(stats.t.ppf(1 - ALPHA / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
        if len(v) > 1
        else None
    )
    return {"n": int(len(v)), "mean": float(v.mean()), "ci95": half}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def format_verify(out: dict[str, Any], path: Path | None = None) -> str:
    def cell(m: dict[str, Any]) -> str:
        if not m["n"]:
            return "-"
        return f"{m['mean']:.4f} ± {m['ci95']:.4f}" if m["ci95"] is not None else f"{m['mean']:.4f}"

    width = min(60, max(len("configuration"), *(len(r["label"]) for r in out["configurations"])))
    head = f"{'configuration':{width}s} {out['cheap_profile'] + ' mean ± 95% CI':>22s} " \
           f"{out['profile'] + ' mean ± 95% CI':>22s} {'rank ' + out['cheap_profile']:>9s} {'rank ' + out['profile']:>9s}"  # fmt: skip
    lines = [f"\n{out['objective']} of the verified configurations (seeds: the sweep's), best {out['cheap_profile']} first:",
             head]  # fmt: skip
    for r in sorted(out["configurations"], key=lambda r: r["rank_in_sweep"]):
        label = r["label"] if len(r["label"]) <= width else r["label"][: width - 3] + "..."
        lines.append(f"{label:{width}s} {cell(r['cheap']):>22s} {cell(r['long']):>22s} "
                     f"{r['rank_cheap'] or '-':>9} {r['rank_long'] or '-':>9}")  # fmt: skip
    a = out["agreement"]
    if a is None:
        lines.append("\nKendall's tau: not computed (fewer than 2 configurations have a finished long run)")
    else:
        lo, hi = a["interval"]
        lines.append(f"\nKendall's tau {a['tau']:.3f} (p = {a['p_value']:.3g}), {100 * a['level']:.0f}% bootstrap "
                     f"interval [{lo:.3f}, {hi:.3f}] over {a['n_boot']} resamples (numpy seed {a['boot_seed']}"
                     + (f"; {a['undefined']} resamples with a tied ranking left out" if a["undefined"] else "")
                     + ")")  # fmt: skip
        lines.append(f"the interval assumes {a['assumes']}")
        if a["swapped"]:
            lines.append("pairs that swap order:")
            for s in a["swapped"]:
                lines.append(f"  {s['cheap_above']} > {s['cheap_below']} at {out['cheap_profile']} "
                             f"({s['cheap'][0]:.4f} vs {s['cheap'][1]:.4f}), reversed at {out['profile']} "
                             f"({s['long'][0]:.4f} vs {s['long'][1]:.4f}); swapped in "
                             f"{100 * s['share_of_resamples']:.0f}% of resamples")  # fmt: skip
        else:
            lines.append("no pair swaps order")
    if out["failed"]:
        lines.append("runs without a score (left out):")
        lines += [f"  {f}" for f in out["failed"]]
    if path is not None:
        lines.append(f"\nwritten: {path}")
    return "\n".join(lines)
