"""What a racing sweep prints while it runs: each round's tables, marked provisional.

A raced sweep (``seeds: {min, max}``) can take its whole budget; its first answer exists as
soon as every configuration has its minimum seeds. After each racing round the command
prints the ranked table and the verdicts as they stand, read from the run folders like the
final tables (:func:`mtsearch.sweep.results.compute`, limited to the seed indices the round
saw), then what the next round is for: which configurations get the next seed index and why,
and which left the race. The closing output says which verdicts more seeds would settle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARK = "PROVISIONAL"


def format_round(sweep_dir: Path | str, level: int, decision: Any, extend: list[str]) -> str:
    """The tables after the racing round on seed indices ``0 .. level-1`` and what round ``level`` is for."""
    from mtsearch.sweep.racing import RaceSpec
    from mtsearch.sweep.results import compute, format_results
    from mtsearch.sweep.runner import describe_params, read_configurations

    res = compute(str(sweep_dir), below_seed_index=level)
    configs = read_configurations(Path(sweep_dir))
    why = dict(getattr(decision, "why", {}) or {})

    def label(h: str) -> str:
        return describe_params(configs.get(h, {}).get("params", {})) if h in configs else h

    out = [f"==== {MARK}: racing round after {level} seed(s) per configuration; the race goes on, so these "
           "verdicts may change ===="]  # fmt: skip
    out.append(format_results(res))
    out.append("")
    drop = RaceSpec.from_space(res.meta.get("space", {})).drop_alpha
    out.append(f"next round ({MARK}): seed index {level} for {len(extend)} configuration(s) still in the race (none "
               f"below another at the race's level {drop:.4g}; the verdicts above are at {res.confidence}); another "
               "seed narrows their intervals:")  # fmt: skip
    out += [f"  {label(h)}: {why.get(h, 'still in the race')}" for h in extend]
    left = [h for h, text in why.items() if h not in extend and str(text).startswith("out after")]
    if left:
        out.append("out of the race (no further seeds):")
        out += [f"  {label(h)}: {why[h]}" for h in left]
    out.append(f"==== end of the {MARK} tables of the round after {level} seed(s) ====")
    return "\n".join(out)


def format_unsettled(res: Any) -> str:
    """What more time would settle: the best-set members still undecided and the seeds that would decide them."""
    from mtsearch.sweep import stats
    from mtsearch.sweep.results import _missing

    if res.ablation is None or res.ablation.empty:
        return ""
    rows = res.ablation[(res.ablation["metric"] == "overall") & (res.ablation["decided"] == stats.UNDECIDED)]
    if rows.empty:
        return "more time would settle: nothing (no best-set member is undecided against the best)"
    lines = [f"more time would settle (best-set members undecided against the best; seeds per configuration that "
             f"would decide each at {stats.POWER:.0%} power):"]  # fmt: skip
    for _, r in rows.iterrows():
        n = r["seeds_needed"]
        if _missing(n):
            needed = "more than the race allows"
        else:  # a number, or "> 100" when MAX_SEEDS seeds are not enough
            needed = f"about {n} seeds" if isinstance(n, int) else f"{str(n).replace('>', 'more than')} seeds"
        lines.append(f"  {r['dimension']} = {r['level']}: {needed} (has {r['seeds']})")
    return "\n".join(lines)


def format_not_run(space: Any, sweep_dir: Path | str) -> str:
    """A grid's configurations with no run (the budget ended first): untested, so they get no verdict.

    Without this line a budget that ends mid-grid would leave them out of every table in
    silence, as if they had been compared. Empty when every configuration has a run, and for
    spaces that are not grids (a sampler's proposals have no fixed list).
    """
    from mtsearch.sweep.runner import describe_params, read_configurations
    from mtsearch.sweep.space import params_key

    if not space.exhaustive:
        return ""
    grid = space.planned_grid()
    seen = {info.get("params_key") for info in read_configurations(Path(sweep_dir)).values()}
    missing = [params for params in grid if params_key(params) not in seen]
    if not missing:
        return ""
    lines = [f"not run: {len(missing)} of the {len(grid)} configurations (the budget ended first; untested, so "
             "no verdict, not 'no difference'; the same command with more --minutes runs them):"]  # fmt: skip
    return "\n".join(lines + [f"  {describe_params(params)}" for params in missing])


def recorded_space(meta: dict[str, Any], sweep_dir: Path | str) -> Any:
    """The space a finished sweep ran (its sweep.json ``meta``), for reading its folder later
    (``mtsearch results``); None if unknown.

    Loaded from the space file recorded in sweep.json at the recorded profile, with the
    recorded budget and seeds, and only where that file still defines the dimensions the
    sweep recorded: a grid read from an edited file would name configurations the sweep
    never had. A verify folder (its "sweep" is the configurations verify chose) has none.
    """
    import dataclasses
    import json

    from mtsearch.errors import MtsearchError
    from mtsearch.sweep.space import load_space, recorded_source

    recorded = meta.get("space") or {}
    if not recorded or meta.get("verify_of"):
        return None
    try:
        space = load_space(recorded_source(recorded, Path(sweep_dir).name), recorded.get("profile") or "cpu")
    except (MtsearchError, OSError):
        return None

    def canon(dims: Any) -> str:
        return json.dumps(dims, sort_keys=True, default=str)

    if canon(space.describe()["dimensions"]) != canon(recorded.get("dimensions")):
        return None
    return dataclasses.replace(
        space, trials=recorded.get("trials"), seeds=int(recorded.get("seeds") or space.seeds),
        max_seeds=int(recorded.get("max_seeds") or recorded.get("seeds") or space.max_seeds),
    )  # fmt: skip


def format_closing(res: Any, space: Any) -> list[str]:
    """The lines after a sweep's tables, in its closing output and in ``mtsearch results``.

    What more seeds would settle (racing), configurations that are one computation, and a
    grid's configurations with no run. ``space`` None (the space file no longer defines the
    sweep's dimensions): the untested configurations cannot be listed, and the line says so.
    """
    from mtsearch.sweep.racing import RaceSpec

    recorded = res.meta.get("space") or {}
    lines = []
    if RaceSpec.of(space if space is not None else recorded).interim_looks:
        lines.append(format_unsettled(res))
    lines.append(format_identical(res.runs))
    if space is not None:
        lines.append(format_not_run(space, res.sweep_dir))
    elif not res.meta.get("verify_of") and _grid_algorithm(recorded.get("algorithm")):
        lines.append("not run: unknown (the sweep's space file is gone or no longer defines its dimensions): the "
                     "tables cover the configurations that ran, nothing is said of any other")  # fmt: skip
    return [line for line in lines if line]


def _grid_algorithm(name: Any) -> bool:
    """Whether a recorded algorithm runs a fixed list of configurations (only then can one be missing)."""
    from mtsearch.sweep.algorithms import ALGORITHMS

    algorithm = ALGORITHMS.get(str(name))
    return bool(algorithm and algorithm.grid)


def format_identical(runs: Any, describe: Any = None) -> str:
    """Configurations whose runs came out the same at every seed they share: one computation.

    Two settings can be the same schedule under a budget (round robin and rr_over with more
    steps per epoch than the run takes never reach the step where they differ): their runs
    then agree to the last digit in every task's score, and more seeds can never separate
    them, whatever the ablation's "needs N seeds" says. Groups of two or more are named,
    with the seeds compared; scores equal in every task at every shared seed is the test (a
    correlation such as STS-B's Pearson r does not repeat by chance).
    """
    from mtsearch.sweep.runner import describe_params
    from mtsearch.tasks import TASKS

    if runs is None or runs.empty:
        return ""
    done = runs[runs["status"] == "finished"]
    metrics = [c for c in ("overall", *TASKS) if c in done.columns]
    by_config: dict[str, dict[int, tuple]] = {}
    params: dict[str, dict] = {}
    for _, r in done.iterrows():
        by_config.setdefault(r["config_hash"], {})[int(r["seed_index"])] = tuple(r[m] for m in metrics)
        params[r["config_hash"]] = r["params"]
    groups: list[list[str]] = []
    for h in by_config:
        for g in groups:
            other = by_config[g[0]]
            shared = set(other) & set(by_config[h])
            if shared and all(other[k] == by_config[h][k] for k in shared):
                g.append(h)
                break
        else:
            groups.append([h])
    same = [g for g in groups if len(g) > 1]
    if not same:
        return ""
    lines = ["identical runs (every task's score the same at every shared seed: one computation under this "
             "budget, so more seeds cannot separate them and their comparison says nothing):"]  # fmt: skip
    for g in same:
        seeds = sorted(set.intersection(*(set(by_config[h]) for h in g)))
        names = "; ".join((describe or describe_params)(params[h]) for h in g)
        lines.append(f"  {names} (seeds {', '.join(map(str, seeds))})")
    return "\n".join(lines)
