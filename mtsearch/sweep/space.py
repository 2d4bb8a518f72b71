"""Search spaces: one YAML file per question, checked against the config and registries.

A space file names a base run (a preset plus overrides), the dimensions to search
(categorical, int, float, log-scaled, each optionally conditional on another
dimension's value: a tree, not a flat box), the objective, the number of seeds per
configuration, the search algorithm, the pruner and a budget. Everything is checked
before any trial runs; an error names the file, the line and the valid names.

The file's shape is typed in :mod:`mtsearch.sweep.space_file`; here each dimension is
checked against what the config accepts there (:func:`mtsearch.dims.config_dimensions`)
and becomes a :class:`~mtsearch.dims.Dimension` narrowed to what the space searches. A
strategy field may list ``choices: all``: every strategy its registry holds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtsearch.config import RunConfig, apply_overrides, make_config, read_config_file
from mtsearch.dims import Dimension, config_dimensions
from mtsearch.errors import ConfigError
from mtsearch.paths import project_root
from mtsearch.registry import suggest
from mtsearch.sweep.algorithms import ALGORITHMS, PRUNERS
from mtsearch.sweep.space_file import DimensionSpec, Profile, Source
from mtsearch.sweep.stats import DELTA


def spaces_dir() -> Path:
    return project_root() / "search_spaces"


def presets_dir() -> Path:
    return spaces_dir() / "presets"


def list_spaces() -> list[str]:
    return sorted(p.stem for p in spaces_dir().glob("*.yaml"))


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


@dataclass(frozen=True)
class Space:
    name: str
    path: Path
    description: str
    base: dict[str, Any]  # plain config values (preset + overrides), already validated
    dimensions: tuple[Dimension, ...]
    objectives: tuple[str, ...]  # "overall" or task names
    seeds: int  # seed indices every configuration gets (racing: the minimum)
    algorithm: str
    pruner: str
    trials: int | None
    minutes: float | None
    max_failures: int
    profile: str
    max_seeds: int = 0  # racing: the most seed indices a configuration may get; 0: as many as seeds
    base_seed: int = 0
    vary_data: bool = True
    delta: float = DELTA  # the equivalence margin of the verdicts and of racing

    def __post_init__(self):
        if self.max_seeds < self.seeds:
            object.__setattr__(self, "max_seeds", self.seeds)

    @property
    def racing(self) -> bool:
        """Seeds are added to undecided configurations between rounds (``seeds: {min, max}``)."""
        return self.max_seeds > self.seeds

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def exhaustive(self) -> bool:
        """The algorithm runs every point of :meth:`grid` (no trial budget)."""
        return ALGORITHMS[self.algorithm].grid

    def seed_for(self, seed_index: int) -> int:
        """The training seed of a seed index."""
        from mtsearch.sweep.keys import derive_seed

        return derive_seed(self.base_seed, seed_index)

    @property
    def data_seed(self) -> int | None:
        """The data-subset seed of every run: None (each run's own seed) unless vary_data is false."""
        return None if self.vary_data else self.seed_for(0)

    def dim(self, name: str) -> Dimension:
        return next(d for d in self.dimensions if d.name == name)

    def sample(self, trial) -> dict[str, Any]:
        """Define-by-run: parents before children, inactive branches never asked."""
        params: dict[str, Any] = {}
        for d in self.dimensions:
            if d.active(params):
                params[d.name] = d.suggest(trial)
        return params

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of the tree (conditional dimensions only where they apply)."""
        points: list[dict[str, Any]] = [{}]
        for d in self.dimensions:
            nxt = []
            for p in points:
                if d.active(p):
                    nxt.extend({**p, d.name: v} for v in d.grid_values())
                else:
                    nxt.append(p)
            points = nxt
        return points

    def planned_grid(self) -> list[dict[str, Any]]:
        """The grid's points a grid sweep runs: every one, or the first ``trials`` (--trials N)."""
        grid = self.grid()
        return grid if self.trials is None else grid[: self.trials]

    def finite_grid(self, limit: int = 100_000) -> list[dict[str, Any]] | None:
        """Every distinct configuration when the space has finitely many (at most ``limit``), else None.

        A sampler over such a space (random, TPE) must stop once all of them are done,
        whatever its trial budget says; int ranges without a step count every integer.
        """
        points: list[dict[str, Any]] = [{}]
        for d in self.dimensions:
            if d.choices is not None:
                values: tuple[Any, ...] = d.choices
            elif d.kind == "int":
                values = tuple(range(int(d.low), int(d.high) + 1, int(d.step or 1)))  # type: ignore[arg-type]
            else:
                return None
            nxt = []
            for p in points:
                nxt.extend([{**p, d.name: v} for v in values] if d.active(p) else [p])
                if len(nxt) > limit:
                    return None
            points = nxt
        return points

    def config_values(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        return apply_overrides(self.base, {**params, "seed": seed})

    def config(self, params: dict[str, Any], seed: int, **extra: Any) -> RunConfig:
        return make_config({**self.config_values(params, seed), **extra})

    def run_config(self, params: dict[str, Any], seed_index: int, **extra: Any) -> RunConfig:
        """The run of seed index ``seed_index`` of configuration ``params``: its derived seeds set."""
        values = self.config_values(params, self.seed_for(seed_index))
        if self.data_seed is not None:
            values["data_seed"] = self.data_seed
        return make_config({**values, **extra})

    def config_hash(self, params: dict[str, Any]) -> str:
        """The configuration's identity in the sweep (the same for every seed index)."""
        return self.run_config(params, 0).config_hash()

    def fingerprint(self) -> str:
        record: dict[str, Any] = {
            "base": self.base, "dims": [d.record() for d in self.dimensions], "objectives": self.objectives
        }  # fmt: skip
        # Only when not the default, so sweeps from before these settings keep their fingerprint.
        if self.base_seed:
            record["base_seed"] = self.base_seed
        if not self.vary_data:
            record["vary_data"] = False
        blob = json.dumps(record, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "profile": self.profile,
            "description": self.description,
            "base": self.base,
            "dimensions": [
                # Unset keys left out; a bound of 0.0 is kept (0.0 == False, so `in (None, {}, False)` lost it).
                {k: v for k, v in d.record().items() if not (v is None or v is False or v == {})}
                for d in self.dimensions
            ],
            "objectives": list(self.objectives),
            "seeds": self.seeds,
            "max_seeds": self.max_seeds,
            "base_seed": self.base_seed,
            "vary_data": self.vary_data,
            "delta": self.delta,
            "algorithm": self.algorithm,
            "pruner": self.pruner,
            "trials": self.trials,
            "minutes": self.minutes,
            "max_failures": self.max_failures,
        }


def params_key(params: dict[str, Any]) -> str:
    """Identity of a configuration within a sweep (what 'run twice' means)."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- loading


def resolve_space_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    cand = spaces_dir() / f"{name_or_path}.yaml"
    if cand.is_file():
        return cand
    names = list_spaces()
    raise ConfigError(
        f"no search space '{name_or_path}'{suggest(name_or_path, names)}; shipped spaces: {', '.join(names)} "
        f"(or give a path to a .yaml file)"
    )


def load_preset(name: str) -> dict[str, Any]:
    path = presets_dir() / f"{name}.yaml"
    if not path.is_file():
        names = list_presets()
        raise ConfigError(f"no preset '{name}'{suggest(name, names)}; presets: {', '.join(names)}")
    return read_config_file(path)


def load_space(name_or_path: str, profile: str = "cpu", extra_set: dict[str, Any] | None = None) -> Space:
    """Read, type and check a space file; every configuration it can produce is a valid run."""
    src = Source(resolve_space_path(name_or_path))
    spec = src.spec
    prof = _profile(src, profile)
    budget = {**spec.budget.model_dump(exclude_unset=True), **prof.budget.model_dump(exclude_unset=True)}
    values = _base_values(src, prof, profile, budget.get("steps"), extra_set or {})
    with src.blame(("base",), "the base config is invalid: "):
        tasks = make_config(values).tasks
    objectives = _objectives(src, tasks)
    seeds = prof.seeds if prof.seeds is not None else spec.seeds
    space = Space(
        name=spec.name or src.path.stem, path=src.path, description=spec.description or "", base=values,
        dimensions=_dimensions(src, values), objectives=objectives,
        seeds=seeds.min, max_seeds=seeds.max, base_seed=spec.base_seed, vary_data=spec.vary_data,
        delta=spec.delta, algorithm=spec.algorithm, pruner=spec.pruner, trials=budget.get("trials"), minutes=budget.get("minutes"),
        max_failures=spec.max_failures, profile=profile,
    )  # fmt: skip
    _check_search(src, space)
    return space


def _profile(src: Source, profile: str) -> Profile:
    """Profiles adjust budgets and base settings for the machine (default 'cpu': 2 CPU cores)."""
    if profile == "cpu":
        return Profile()
    if profile not in src.spec.profiles:
        defined = ", ".join(src.spec.profiles) or "-"
        src.fail(("profiles",), f"profile '{profile}' is not defined; defined: cpu, {defined}")
    return src.spec.profiles[profile]


def _base_values(
    src: Source, prof: Profile, profile: str, steps: int | None, extra_set: dict[str, Any]
) -> dict[str, Any]:
    """Preset, then the base's overrides, the profile's, budget.steps and the command line's."""
    base = src.spec.base
    values = load_preset(base.preset) if base.preset else {}
    for where, overrides in ((("base", "set"), base.set), (("profiles", profile, "set"), prof.set)):
        with src.blame(where):
            values = apply_overrides(values, overrides or {})
    if steps is not None:  # budget.steps is the per-run step budget: the base's max_steps
        values = apply_overrides(values, {"max_steps": steps})
    values = apply_overrides(values, extra_set)
    values.pop("seed", None)  # seeds come from the space
    return values


def _objectives(src: Source, tasks: tuple[str, ...]) -> tuple[str, ...]:
    valid = ["overall", *tasks]
    for o in src.spec.objective:
        if o not in valid:
            src.fail(
                ("objective",), f"unknown objective '{o}'{suggest(str(o), valid)}; valid: {', '.join(valid)}"
            )
    return src.spec.objective


def _check_search(src: Source, space: Space) -> None:
    """The algorithm and pruner fit the objectives; a grid's every point is a valid run, else a budget."""
    algorithm, several = ALGORITHMS[space.algorithm], space.multi_objective
    if algorithm.single_objective and several:
        others = [n for n, a in ALGORITHMS.items() if not (a.single_objective or a.grid)]
        src.fail(
            ("algorithm",), f"{space.algorithm} optimises one objective; use {', '.join(others)} for several"
        )
    if PRUNERS[space.pruner].prunes and several:
        src.fail(
            ("pruner",), "pruning needs a single objective (Optuna cannot prune multi-objective studies)"
        )
    if not algorithm.grid:
        if space.trials is None and space.minutes is None:
            src.fail(
                ("budget",), f"algorithm '{space.algorithm}' needs a budget: budget.trials or budget.minutes"
            )
        return
    with src.blame(("dimensions",)):
        points = space.grid()
    for p in points:  # every grid point must be a valid run config
        with src.blame(("dimensions",), f"the configuration {p} is invalid: "):
            space.run_config(p, 0)


# ------------------------------------------------------------------------ dimensions


class _Catalog:
    """What the config accepts under each searchable name (config fields, and knobs per strategy)."""

    def __init__(self):
        from mtsearch.strategies import registries

        self.registries = registries()
        self.fields: dict[str, Dimension] = {}
        self.knobs: dict[str, dict[str, Dimension]] = {}  # name -> {strategy: its knob}
        for d in config_dimensions():
            if d.applies_to:
                self.knobs.setdefault(d.name, {})[d.applies_to.split("=", 1)[1]] = d
            else:
                self.fields[d.name] = d

    def names(self) -> list[str]:
        return [*self.fields, *sorted(self.knobs)]


def _dimensions(src: Source, base: dict[str, Any]) -> tuple[Dimension, ...]:
    """Each dimension, in file order; a condition may only name a dimension above it."""
    catalog = _Catalog()
    out: list[Dimension] = []
    for name, spec in src.spec.dimensions.items():
        where = ("dimensions", name)
        _known(src, where, catalog, name)
        when = _conditions(src, where, spec, out)
        accepted = _accepted(src, where, catalog, name, when, base)
        if spec.listed is not None:
            out.append(_categorical(src, where, catalog, accepted, spec, when))
        else:
            out.append(_numeric(src, where, accepted, spec, when, base))
    return tuple(out)


def _conditions(src: Source, where: tuple[str, ...], spec: DimensionSpec, above: list[Dimension]) -> dict:
    seen = {d.name: d for d in above}
    when: dict[str, tuple] = {}
    for parent, vals in spec.when.items():
        if parent not in seen:
            src.fail(where + ("when",), f"condition on '{parent}', which is not a dimension listed above this one"
                     f"{suggest(str(parent), list(seen))}; dimensions so far: {', '.join(seen) or '-'}")  # fmt: skip
        vals = tuple(vals) if isinstance(vals, list) else (vals,)
        choices = seen[parent].choices
        for v in vals if choices is not None else ():
            if v not in choices:
                src.fail(where + ("when",), f"'{parent}' never takes the value {v!r}; its choices: "
                         f"{', '.join(map(str, choices))}")  # fmt: skip
        when[parent] = vals
    return when


def _known(src: Source, where: tuple[str, ...], catalog: _Catalog, name: str) -> None:
    if name in ("seed", "data_seed", "name"):
        src.fail(where, f"'{name}' cannot be searched: seeds come from the space's 'seeds', 'base_seed' and "
                 "'vary_data'")  # fmt: skip
    if name not in catalog.fields and name not in catalog.knobs:
        src.fail(where, f"unknown dimension '{name}'{suggest(name, catalog.names())}; "
                 "valid names: config keys (`mtsearch dims`) or <strategy>_args.<knob>")  # fmt: skip


def _accepted(
    src: Source, where: tuple[str, ...], catalog: _Catalog, name: str, when: dict, base: dict[str, Any]
) -> Dimension:
    """What the config accepts under ``name``; a knob must belong to every strategy it can meet."""
    if name in catalog.fields:
        return catalog.fields[name]
    field = name.split("_args.", 1)[0]
    per_strategy = catalog.knobs[name]
    strategies = when.get(field) or ((base.get(field) or RunConfig.model_fields[field].default),)
    for strat in strategies:
        if strat not in per_strategy:
            has = list(per_strategy)
            src.fail(where, f"'{name}' does not apply to {field} '{strat}' (only to: {', '.join(has)}); "
                     f"add `when: {{{field}: {has[0]}}}`")  # fmt: skip
    return per_strategy[strategies[0]]


def _categorical(
    src: Source,
    where: tuple[str, ...],
    catalog: _Catalog,
    accepted: Dimension,
    spec: DimensionSpec,
    when: dict,
) -> Dimension:
    name, listed = accepted.name, spec.listed
    if listed == "all":
        if name not in catalog.registries:
            src.fail(where + ("choices",), f"choices: all lists every strategy of a registry, and '{name}' is "
                     f"not a strategy field ({', '.join(catalog.registries)})")  # fmt: skip
        listed = catalog.registries[name].names()
    assert isinstance(listed, list)
    allowed = accepted.choices
    for c in listed if allowed is not None else ():
        if c not in allowed:
            src.fail(where + (spec.listed_key,), f"'{name}' has no choice {c!r}"
                     f"{suggest(str(c), [str(a) for a in allowed])}; valid: {', '.join(map(str, allowed))}")  # fmt: skip
    if len(set(map(repr, listed))) != len(listed):
        src.fail(where, f"'{name}' lists a choice twice")
    kind = spec.type if spec.type in ("int", "float") else "categorical"
    return accepted.narrow(kind=kind, choices=tuple(listed), low=None, high=None, step=None, log=False,
                           when=when, bins=spec.bins)  # fmt: skip


def _numeric(
    src: Source,
    where: tuple[str, ...],
    accepted: Dimension,
    spec: DimensionSpec,
    when: dict,
    base: dict[str, Any],
) -> Dimension:
    name, low, high = accepted.name, spec.low, spec.high
    if accepted.kind == "categorical" or accepted.choices is not None:
        src.fail(where, f"'{name}' takes one of a set of values: give 'choices'"
                 + (f" from {', '.join(map(str, accepted.choices))}" if accepted.choices else ""))  # fmt: skip
    if low is None or high is None:
        src.fail(where, f"'{name}' needs 'low' and 'high' (or 'choices')")
    if not low < high:
        src.fail(where, f"'{name}': empty range, low {low} must be below high {high}")
    if spec.log and low <= 0:
        src.fail(where, f"'{name}': a log scale needs low > 0 (got {low})")
    kind = spec.type or accepted.kind
    if kind not in ("int", "float"):
        src.fail(where, f"'{name}': type must be int or float for a range (got {kind})")
    if accepted.kind == "int" and kind == "float":
        src.fail(where, f"'{name}' is a whole number in the config: use type int")
    # Both ends must be acceptable config values (catches e.g. lr low: 0).
    for v in (low, high):
        overrides = {name: int(v) if kind == "int" else float(v), **{p: vals[0] for p, vals in when.items()}}
        with src.blame(where, f"'{name}' = {v} is not a valid value: "):
            make_config(apply_overrides(base, overrides))
    return accepted.narrow(kind=kind, choices=None, low=float(low), high=float(high), step=spec.step,
                           log=spec.log, when=when, bins=spec.bins)  # fmt: skip


def recorded_source(recorded: dict[str, Any], fallback: str) -> str:
    """The space file a sweep recorded (sweep.json's ``space``): its path while that file is there, else
    its name among the project's spaces, else ``fallback`` (the sweep folder's name)."""
    path = recorded.get("path")
    if path and Path(str(path)).is_file():
        return str(path)
    return recorded.get("name") or fallback


def expected_runs(space: Space) -> int | None:
    """Runs of a sweep without racing (racing: at least this many)."""
    n = len(space.planned_grid()) if space.exhaustive else space.trials
    finite = space.finite_grid()
    if n is not None and finite is not None:
        n = min(n, len(finite))
    return None if n is None else n * space.seeds


__all__ = ["Dimension", "Space", "load_space", "list_spaces", "params_key"]
