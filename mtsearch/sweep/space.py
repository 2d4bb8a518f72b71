"""Search spaces: one YAML file per question, checked against the config and registries.

A space file names a base run (a preset plus overrides), the dimensions to search
(categorical, int, float, log-scaled, each optionally conditional on another
dimension's value: a tree, not a flat box), the objective, the number of seeds per
configuration, the search algorithm, the pruner and a budget. Everything is checked
before any trial runs; an error names the file, the line and the valid names.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtsearch.config import RunConfig, apply_overrides, make_config, read_config_file
from mtsearch.errors import ConfigError
from mtsearch.paths import project_root
from mtsearch.registry import suggest

ALGORITHMS = ("grid", "random", "tpe", "cmaes", "nsga2")
PRUNERS = ("none", "median", "asha", "hyperband")
TOP_KEYS = (
    "name", "description", "base", "dimensions", "objective", "seeds", "algorithm", "pruner", "budget",
    "max_failures", "profiles",
)  # fmt: skip
DIM_KEYS = ("type", "choices", "values", "low", "high", "step", "log", "when", "bins")
BUDGET_KEYS = ("trials", "minutes", "steps")
PROFILE_KEYS = ("set", "budget", "seeds")


def spaces_dir() -> Path:
    return project_root() / "search_spaces"


def presets_dir() -> Path:
    return spaces_dir() / "presets"


def list_spaces() -> list[str]:
    return sorted(p.stem for p in spaces_dir().glob("*.yaml"))


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str  # categorical | int | float
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    bins: int = 3  # numeric dimensions are cut into this many levels in ablation tables

    def active(self, params: dict[str, Any]) -> bool:
        return all(params.get(k) in vals for k, vals in self.when.items())

    def grid_values(self) -> tuple[Any, ...]:
        if self.choices is not None:
            return self.choices
        if self.kind == "int" and self.step:
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step)))
        raise ConfigError(f"dimension '{self.name}': a grid needs 'values' or an int range with 'step'")

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial (or anything with its suggest_* API) for this dimension."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class Space:
    name: str
    path: Path
    description: str
    base: dict[str, Any]  # plain config values (preset + overrides), already validated
    dimensions: tuple[Dimension, ...]
    objectives: tuple[str, ...]  # "overall" or task names
    seeds: int
    algorithm: str
    pruner: str
    trials: int | None
    minutes: float | None
    max_failures: int
    profile: str

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

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

    def config_values(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        return apply_overrides(self.base, {**params, "seed": seed})

    def config(self, params: dict[str, Any], seed: int, **extra: Any) -> RunConfig:
        return make_config({**self.config_values(params, seed), **extra})

    def fingerprint(self) -> str:
        blob = json.dumps(
            {"base": self.base, "dims": [d.__dict__ for d in self.dimensions], "objectives": self.objectives},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "profile": self.profile,
            "description": self.description,
            "base": self.base,
            "dimensions": [
                {k: v for k, v in d.__dict__.items() if v not in (None, {}, False)} for d in self.dimensions
            ],
            "objectives": list(self.objectives),
            "seeds": self.seeds,
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


class _Lines:
    """Line numbers of the keys of a YAML file, for messages that point at the line."""

    def __init__(self, text: str):
        self.lines: dict[tuple[str, ...], int] = {}
        try:
            node = yaml.compose(text)
        except yaml.YAMLError:
            node = None
        if node is not None:
            self._walk(node, ())

    def _walk(self, node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (str(k.value),)
                self.lines[key] = k.start_mark.line + 1
                self._walk(v, key)

    def at(self, *path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


class _Checker:
    def __init__(self, path: Path, lines: _Lines):
        self.path = path
        self.lines = lines

    def fail(self, where: tuple[str, ...], message: str) -> typing.NoReturn:
        line = self.lines.at(*where)
        loc = f"{self.path.name}:{line}" if line else self.path.name
        raise ConfigError(f"{loc}: {message}")

    def keys(self, where: tuple[str, ...], mapping: dict, allowed: tuple[str, ...], what: str) -> None:
        for k in mapping:
            if k not in allowed:
                self.fail(
                    where + (str(k),),
                    f"unknown {what} '{k}'{suggest(str(k), list(allowed))}; valid: {', '.join(allowed)}",
                )


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
    path = resolve_space_path(name_or_path)
    text = path.read_text()
    lines = _Lines(text)
    chk = _Checker(path, lines)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path.name}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        chk.fail((), "a search space is a mapping of keys (name, base, dimensions, ...)")
    chk.keys((), raw, TOP_KEYS, "key")

    # Profiles adjust budgets and base settings for the machine (default: 2 CPU cores).
    profiles = raw.get("profiles") or {}
    if profile != "cpu":
        if profile not in profiles:
            chk.fail(
                ("profiles",),
                f"profile '{profile}' is not defined; defined: cpu, {', '.join(profiles) or '-'}",
            )
    for pname, prof in profiles.items():
        if not isinstance(prof, dict):
            chk.fail(("profiles", pname), "a profile is a mapping with set / budget / seeds")
        chk.keys(("profiles", pname), prof, PROFILE_KEYS, "profile key")
    prof = profiles.get(profile, {}) if profile != "cpu" else {}

    # Base: preset + overrides (+ profile overrides + command-line overrides).
    base_raw = raw.get("base") or {}
    if not isinstance(base_raw, dict):
        chk.fail(("base",), "base is a mapping: {preset: NAME, set: {key: value}}")
    chk.keys(("base",), base_raw, ("preset", "set"), "base key")
    values = load_preset(base_raw["preset"]) if base_raw.get("preset") else {}
    for where, overrides in (
        (("base", "set"), base_raw.get("set")),
        (("profiles", profile, "set"), prof.get("set")),
    ):
        if overrides:
            try:
                values = apply_overrides(values, overrides)
            except ConfigError as err:
                chk.fail(where, str(err))
    budget = {**(raw.get("budget") or {}), **(prof.get("budget") or {})}
    chk.keys(("budget",), budget, BUDGET_KEYS, "budget key")
    if budget.get("steps") is not None:
        # budget.steps is the per-run step budget: the base's max_steps.
        if not isinstance(budget["steps"], int) or budget["steps"] < 1:
            chk.fail(("budget", "steps"), f"steps must be a whole number >= 1 (got {budget['steps']!r})")
        values = apply_overrides(values, {"max_steps": budget["steps"]})
    if extra_set:
        values = apply_overrides(values, extra_set)
    values.pop("seed", None)  # seeds come from the space
    try:
        base_cfg = make_config(values)
    except ConfigError as err:
        chk.fail(("base",), f"the base config is invalid: {err}")

    dims = _dimensions(raw.get("dimensions"), chk, values)
    _objectives = raw.get("objective", "overall")
    objectives = tuple([_objectives] if isinstance(_objectives, str) else _objectives or ["overall"])
    for o in objectives:
        if o != "overall" and o not in base_cfg.tasks:
            valid = ["overall", *base_cfg.tasks]
            chk.fail(
                ("objective",), f"unknown objective '{o}'{suggest(str(o), valid)}; valid: {', '.join(valid)}"
            )
    seeds = prof.get("seeds", raw.get("seeds", 1))
    if not isinstance(seeds, int) or seeds < 1:
        chk.fail(("seeds",), f"seeds must be a whole number >= 1 (got {seeds!r})")
    algorithm = raw.get("algorithm", "tpe")
    if algorithm not in ALGORITHMS:
        chk.fail(("algorithm",), f"unknown algorithm '{algorithm}'{suggest(str(algorithm), list(ALGORITHMS))}; "
                 f"valid: {', '.join(ALGORITHMS)}")  # fmt: skip
    if len(objectives) > 1 and algorithm in ("cmaes",):
        chk.fail(("algorithm",), "cmaes optimises one objective; use nsga2, tpe or random for several")
    pruner = raw.get("pruner", "none")
    if pruner not in PRUNERS:
        chk.fail(
            ("pruner",),
            f"unknown pruner '{pruner}'{suggest(str(pruner), list(PRUNERS))}; valid: {', '.join(PRUNERS)}",
        )
    if pruner != "none" and len(objectives) > 1:
        chk.fail(
            ("pruner",), "pruning needs a single objective (Optuna cannot prune multi-objective studies)"
        )
    trials = budget.get("trials")
    minutes = budget.get("minutes")
    if trials is not None and (not isinstance(trials, int) or trials < 1):
        chk.fail(("budget", "trials"), f"trials must be a whole number >= 1 or null (got {trials!r})")
    if minutes is not None and (not isinstance(minutes, int | float) or minutes <= 0):
        chk.fail(("budget", "minutes"), f"minutes must be a positive number or null (got {minutes!r})")
    space = Space(
        name=str(raw.get("name") or path.stem),
        path=path,
        description=str(raw.get("description") or ""),
        base=values,
        dimensions=dims,
        objectives=objectives,
        seeds=seeds,
        algorithm=algorithm,
        pruner=pruner,
        trials=trials,
        minutes=minutes,
        max_failures=int(raw.get("max_failures", 3)),
        profile=profile,
    )
    if algorithm == "grid":
        try:
            points = space.grid()
        except ConfigError as err:
            chk.fail(("dimensions",), str(err))
        for p in points:  # every grid point must be a valid run config
            try:
                space.config(p, 0)
            except ConfigError as err:
                chk.fail(("dimensions",), f"the configuration {p} is invalid: {err}")
    elif trials is None and minutes is None:
        chk.fail(("budget",), f"algorithm '{algorithm}' needs a budget: budget.trials or budget.minutes")
    return space


def _field_kind(name: str) -> tuple[str, tuple | None]:
    return _annotation_kind(RunConfig.model_fields[name].annotation)


def _dimensions(raw: Any, chk: _Checker, base: dict[str, Any]) -> tuple[Dimension, ...]:
    from mtsearch.strategies import registries

    regs = registries()
    if not raw:
        chk.fail(("dimensions",), "a space needs at least one dimension")
    if not isinstance(raw, dict):
        chk.fail(("dimensions",), "dimensions is a mapping of dimension name to its definition")
    fields = [f for f in RunConfig.model_fields if not f.endswith("_args")]
    knobs = {
        f"{reg.field}_args.{k}": reg.field
        for reg in regs.values()
        for name in reg.names()
        for k in reg.get(name).Args.model_fields
    }
    valid_names = fields + sorted(knobs)
    out: list[Dimension] = []
    for name, spec in raw.items():
        where = ("dimensions", str(name))
        if name in ("seed", "name"):
            chk.fail(where, f"'{name}' cannot be searched: seeds come from the space's 'seeds'")
        if name not in valid_names:
            chk.fail(where, f"unknown dimension '{name}'{suggest(str(name), valid_names)}; "
                     "valid names: config keys (`mtsearch dims`) or <strategy>_args.<knob>")  # fmt: skip
        if isinstance(spec, list):
            spec = {"choices": spec}
        if not isinstance(spec, dict):
            chk.fail(
                where, "a dimension is a list of choices or a mapping (type, choices, low, high, log, when)"
            )
        chk.keys(where, spec, DIM_KEYS, "dimension key")
        when_raw = spec.get("when") or {}
        if not isinstance(when_raw, dict):
            chk.fail(where + ("when",), "when is a mapping: {other_dimension: value or [values]}")
        when: dict[str, tuple] = {}
        seen = [d.name for d in out]
        for parent, vals in when_raw.items():
            if parent not in seen:
                chk.fail(
                    where + ("when",),
                    f"condition on '{parent}', which is not a dimension listed above this one"
                    f"{suggest(str(parent), seen)}; dimensions so far: {', '.join(seen) or '-'}",
                )
            pdim = next(d for d in out if d.name == parent)
            vals = tuple(vals) if isinstance(vals, list) else (vals,)
            if pdim.choices is not None:
                for v in vals:
                    if v not in pdim.choices:
                        chk.fail(where + ("when",), f"'{parent}' never takes the value {v!r}; its choices: "
                                 f"{', '.join(map(str, pdim.choices))}")  # fmt: skip
            when[parent] = vals

        # What kind of values the config takes here.
        if name in knobs:
            field_name = knobs[name]
            reg = regs[field_name]
            knob = name.split(".", 1)[1]
            strategies = when.get(field_name) or (
                (base.get(field_name) or RunConfig.model_fields[field_name].default),
            )
            for strat in strategies:
                if strat not in reg or knob not in reg.get(strat).Args.model_fields:
                    has = [n for n in reg.names() if knob in reg.get(n).Args.model_fields]
                    chk.fail(where, f"'{name}' does not apply to {field_name} '{strat}' (only to: "
                             f"{', '.join(has)}); add `when: {{{field_name}: {has[0] if has else '...'}}}`")  # fmt: skip
            info = reg.get(strategies[0]).Args.model_fields[knob]
            kind, allowed = _annotation_kind(info.annotation)
        else:
            kind, allowed = _field_kind(name)
            if name in regs:
                kind, allowed = "categorical", tuple(regs[name].names())

        declared = spec.get("type")
        choices = spec.get("choices", spec.get("values"))
        if choices is not None:
            if not isinstance(choices, list) or not choices:
                chk.fail(where, "choices must be a non-empty list")
            if allowed is not None:
                for c in choices:
                    if c not in allowed:
                        chk.fail(where + ("choices",) if "choices" in spec else where + ("values",),
                                 f"'{name}' has no choice {c!r}{suggest(str(c), [str(a) for a in allowed])}; "
                                 f"valid: {', '.join(map(str, allowed))}")  # fmt: skip
            if len(set(map(repr, choices))) != len(choices):
                chk.fail(where, f"'{name}' lists a choice twice")
            dkind = "categorical" if declared in (None, "categorical") else declared
            out.append(Dimension(str(name), dkind, tuple(choices), when=when, bins=int(spec.get("bins", 3))))
            continue
        if kind == "categorical" or allowed is not None:
            chk.fail(where, f"'{name}' takes one of a set of values: give 'choices'"
                     + (f" from {', '.join(map(str, allowed))}" if allowed else ""))  # fmt: skip
        low, high = spec.get("low"), spec.get("high")
        if low is None or high is None:
            chk.fail(where, f"'{name}' needs 'low' and 'high' (or 'choices')")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (low, high)):
            chk.fail(where, f"'{name}': low and high must be numbers (got {low!r}, {high!r})")
        if not low < high:
            chk.fail(where, f"'{name}': empty range, low {low} must be below high {high}")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            chk.fail(where, f"'{name}': a log scale needs low > 0 (got {low})")
        dkind = declared or kind
        if dkind not in ("int", "float"):
            chk.fail(where, f"'{name}': type must be int or float for a range (got {dkind})")
        if kind == "int" and dkind == "float":
            chk.fail(where, f"'{name}' is a whole number in the config: use type int")
        step = spec.get("step")
        dim = Dimension(
            str(name), dkind, None, float(low), float(high), step, log, when, int(spec.get("bins", 3))
        )
        # Both ends must be acceptable config values (catches e.g. lr low: 0).
        for v in (low, high):
            try:
                trial_values = apply_overrides(base, {name: int(v) if dkind == "int" else float(v)})
                for parent, vals in when.items():
                    trial_values = apply_overrides(trial_values, {parent: vals[0]})
                make_config(trial_values)
            except ConfigError as err:
                chk.fail(where, f"'{name}' = {v} is not a valid value: {err}")
        out.append(dim)
    return tuple(out)


def _annotation_kind(ann: Any) -> tuple[str, tuple | None]:
    args = [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
    base = args[0]
    if typing.get_origin(base) is typing.Literal:
        return "categorical", typing.get_args(base)
    if base is bool:
        return "categorical", (False, True)
    if base is int:
        return "int", None
    if base is float:
        return "float", None
    return "categorical", None


def grid_size(space: Space) -> int:
    return len(space.grid())


def expected_runs(space: Space) -> int | None:
    n = grid_size(space) if space.algorithm == "grid" else space.trials
    return None if n is None else n * space.seeds


__all__ = ["Dimension", "Space", "load_space", "list_spaces", "params_key"]
