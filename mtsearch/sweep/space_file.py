"""A search-space YAML file as typed models, with errors that point at the file's line.

:class:`SpaceFile` is the file's shape (top-level keys, base, dimensions, budget,
profiles); pydantic checks it and the location of its first error is mapped back to a
line of the file (:class:`Lines`). What needs the config, the registries or other
dimensions is checked in :mod:`mtsearch.sweep.space`, through the same :class:`Source`.
"""

from __future__ import annotations

import contextlib
import math
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mtsearch.errors import ConfigError
from mtsearch.registry import suggest
from mtsearch.sweep.algorithms import ALGORITHMS, PRUNERS
from mtsearch.sweep.stats import DELTA


class _Section(BaseModel):
    """A mapping of known keys; ``what`` names its keys and ``shape`` says what it should be."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    what: ClassVar[str] = "key"
    shape: ClassVar[str] = "a mapping"

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        return _as_mapping(cls, data)


def _as_mapping(cls: type[_Section], data: Any) -> Any:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(cls.shape)
    return data


def _whole(value: Any, message: str) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"{message} (got {value!r})")


def _finite(value: Any, what: str) -> None:
    # YAML reads .nan and .inf as floats: a NaN choice would pass every check and then
    # make every run (and every rerun) fail; an infinite bound makes an empty search.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number (got {value!r})")


SEEDS_SHAPE = (
    "seeds is a whole number >= 1, or a range {min: N, max: M} (racing: seeds are added while undecided)"
)


class SeedRange(BaseModel):
    """Seeds per configuration: ``min`` each; racing adds seeds to undecided ones up to ``max``.

    ``seeds: 3`` is the range {min: 3, max: 3} (fixed); ``seeds: {min: 2, max: 10}`` races.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: int
    max: int


def _seed_spec(value: Any) -> Any:
    """A whole number (fixed seeds) or a {min, max} range, as a SeedRange."""
    if isinstance(value, SeedRange):
        return value
    if isinstance(value, dict):
        if set(value) != {"min", "max"}:
            raise ValueError(f"{SEEDS_SHAPE} (got {value!r})")
        low = _whole(value["min"], "seeds.min must be a whole number >= 1")
        high = _whole(value["max"], "seeds.max must be a whole number >= 1")
        if high < low:
            raise ValueError(f"seeds.max ({high}) is below seeds.min ({low})")
        return SeedRange(min=low, max=high)
    n = _whole(value, SEEDS_SHAPE)
    return SeedRange(min=n, max=n)


class BaseSection(_Section):
    what: ClassVar[str] = "base key"
    shape: ClassVar[str] = "base is a mapping: {preset: NAME, set: {key: value}}"

    preset: str | None = None
    set: dict[str, Any] | None = None


class Budget(_Section):
    what: ClassVar[str] = "budget key"
    shape: ClassVar[str] = "budget is a mapping: {trials: N, minutes: M, steps: S}"

    trials: int | None = None
    minutes: int | float | None = None
    steps: int | None = None  # the per-run step budget: the base's max_steps

    @field_validator("trials", mode="before")
    @classmethod
    def _trials(cls, value: Any) -> Any:
        return None if value is None else _whole(value, "trials must be a whole number >= 1 or null")

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        return None if value is None else _whole(value, "steps must be a whole number >= 1")

    @field_validator("minutes", mode="before")
    @classmethod
    def _minutes(cls, value: Any) -> Any:
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
            return value
        raise ValueError(f"minutes must be a positive number or null (got {value!r})")


class Profile(_Section):
    what: ClassVar[str] = "profile key"
    shape: ClassVar[str] = "a profile is a mapping with set / budget / seeds"

    set: dict[str, Any] | None = None
    budget: Budget = Budget()
    seeds: SeedRange | None = None

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        return _seed_spec(value)


class DimensionSpec(_Section):
    """One dimension as written: a list of choices, or a mapping."""

    what: ClassVar[str] = "dimension key"
    shape: ClassVar[str] = (
        "a dimension is a list of choices or a mapping (type, choices, low, high, log, when)"
    )

    type: Literal["categorical", "int", "float"] | None = None
    choices: list[Any] | Literal["all"] | None = None
    values: list[Any] | None = None  # another name for choices
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    log: bool = False
    when: dict[str, Any] = {}
    bins: int = 3  # numeric dimensions are cut into this many levels in ablation tables

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        return {"choices": data} if isinstance(data, list) else _as_mapping(cls, data)

    @field_validator("choices", "values", mode="before")
    @classmethod
    def _choices(cls, value: Any, info) -> Any:
        if value is None or (info.field_name == "choices" and value == "all"):
            return value
        if isinstance(value, list) and value:
            for v in value:
                _finite(v, f"every {info.field_name[:-1] if info.field_name == 'values' else 'choice'}")
            return value
        raise ValueError("choices must be a non-empty list (or all: every strategy of a registry)")

    @field_validator("low", "high", "step", mode="before")
    @classmethod
    def _number(cls, value: Any, info) -> Any:
        # YAML reads 1e-5 (no dot) as a string: refuse it rather than guess.
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            _finite(value, info.field_name)
            return value
        raise ValueError(f"{info.field_name} must be a number (got {value!r})")

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("when is a mapping: {other_dimension: value or [values]}")
        return value

    @property
    def listed(self) -> list[Any] | Literal["all"] | None:
        """The choices, under either name (``choices`` wins)."""
        return self.choices if self.choices is not None else self.values

    @property
    def listed_key(self) -> str:
        return "choices" if self.choices is not None else "values"


class SpaceFile(_Section):
    shape: ClassVar[str] = "a search space is a mapping of keys (name, base, dimensions, ...)"

    name: str | None = None
    description: str | None = None
    base: BaseSection = BaseSection()
    dimensions: dict[str, DimensionSpec] = Field(None, validate_default=True)  # type: ignore[arg-type]
    objective: tuple[str, ...] = ("overall",)
    seeds: SeedRange = SeedRange(min=1, max=1)
    base_seed: int = 0  # seed index k trains with derive_seed(base_seed, k)
    vary_data: bool = True  # false: every seed trains on the same data subset (that of seed index 0)
    # Equivalence margin on the objective's scale: a level within delta of the best (95% confidence)
    # is `equivalent`; racing stops when every best-set member is.
    delta: float = DELTA
    algorithm: str = "tpe"
    pruner: str = "none"
    budget: Budget = Budget()
    max_failures: int = 3
    profiles: dict[str, Profile] = {}

    @field_validator("name", "description", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @field_validator("dimensions", mode="before")
    @classmethod
    def _dimensions(cls, value: Any) -> Any:
        if not value:
            raise ValueError("a space needs at least one dimension")
        if not isinstance(value, dict):
            raise ValueError("dimensions is a mapping of dimension name to its definition")
        return value

    @field_validator("objective", mode="before")
    @classmethod
    def _objective(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else tuple(value or ("overall",))

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        return _seed_spec(value)

    @field_validator("base_seed", mode="before")
    @classmethod
    def _base_seed(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
            return value
        raise ValueError(f"base_seed must be a whole number from 0 to 2**32 - 1 (got {value!r})")

    @field_validator("vary_data", mode="before")
    @classmethod
    def _vary_data(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        raise ValueError(f"vary_data is true or false (got {value!r})")

    @field_validator("delta", mode="before")
    @classmethod
    def _delta(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1:
            return float(value)
        raise ValueError(f"delta is a margin on the score's scale, from 0 to 1 (got {value!r})")

    @field_validator("algorithm", "pruner", mode="before")
    @classmethod
    def _known(cls, value: Any, info) -> Any:
        table = ALGORITHMS if info.field_name == "algorithm" else PRUNERS
        if value not in table:
            raise ValueError(
                f"unknown {info.field_name} '{value}'{suggest(str(value), list(table))}; valid: {', '.join(table)}"
            )
        return value

    @field_validator("profiles", mode="before")
    @classmethod
    def _profiles(cls, value: Any) -> Any:
        return value or {}


class Lines:
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


class Source:
    """A space file read and typed; :meth:`fail` names the file and the line of a key path."""

    def __init__(self, path: Path):
        self.path = path
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{path}: not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x})"
            ) from None
        self.lines = Lines(text)
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path.name}: not valid YAML: {err}") from None
        try:
            self.spec = SpaceFile.model_validate(raw)
        except ValidationError as err:
            self.fail(*_explain(err))

    def fail(self, where: tuple[str, ...], message: str) -> NoReturn:
        line = self.lines.at(*where)
        loc = f"{self.path.name}:{line}" if line else self.path.name
        raise ConfigError(f"{loc}: {message}")

    @contextlib.contextmanager
    def blame(self, where: tuple[str, ...], prefix: str = "") -> Iterator[None]:
        """Re-raise a ConfigError from the block as one at ``where`` in this file."""
        try:
            yield
        except ConfigError as err:
            self.fail(where, f"{prefix}{err}")


def _explain(err: ValidationError) -> tuple[tuple[str, ...], str]:
    """The key path and message of a validation error, in the words of the old hand-written checks."""
    e = err.errors()[0]
    loc = tuple(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        section = _section_at(loc[:-1])
        valid = list(section.model_fields)
        return loc, f"unknown {section.what} '{loc[-1]}'{suggest(loc[-1], valid)}; valid: {', '.join(valid)}"
    if e["type"] == "value_error":
        message = e["msg"].removeprefix("Value error, ")
        # Inside a dimension, say which one (the line points at the key that is wrong).
        return loc, (f"'{loc[1]}': {message}" if loc[0] == "dimensions" and len(loc) > 2 else message)
    return loc, f"{'.'.join(loc)}: {e['msg']} (got {e.get('input')!r})"


def _section_at(loc: tuple[str, ...]) -> type[_Section]:
    """The model a key path leads to (``('profiles', 'gpu', 'budget')`` -> Budget)."""
    node: Any = SpaceFile
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            node = node.model_fields[part].annotation
        else:  # dict[str, Model]: any key leads to the model
            node = typing.get_args(node)[-1]
        if typing.get_origin(node) in (typing.Union, types.UnionType):  # Model | None
            node = next(a for a in typing.get_args(node) if a is not type(None))
    return node
