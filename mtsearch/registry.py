"""One registry per strategy family.

A registry maps a name to a strategy class. Each strategy declares its own typed knobs
as a pydantic model ``Args`` (empty when it has none) and a one-line ``doc``. The CLI,
the config validation, search spaces, the dashboard and the tests all read the same
registry, so adding a strategy is one module with one ``@REGISTRY.register`` line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mtsearch.errors import ConfigError


class NoArgs(BaseModel):
    """Arguments of a strategy that has no knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


T = TypeVar("T")


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    def __init__(self, family: str, field: str):
        self.family = family  # e.g. "samplers"
        self.field = field  # the config field that picks one, e.g. "sampler"
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items:
                raise RuntimeError(f"{self.family}: '{name}' registered twice")
            if not hasattr(cls, "Args"):
                cls.Args = NoArgs  # type: ignore[attr-defined]
            cls.name = name  # type: ignore[attr-defined]
            self._items[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str) -> type[T]:
        if name not in self._items:
            raise ConfigError(
                f"{self.field}: unknown {self.family[:-1]} '{name}'{suggest(name, self.names())}; "
                f"choose one of {', '.join(self.names())}"
            )
        return self._items[name]

    def doc(self, name: str) -> str:
        cls = self.get(name)
        doc = getattr(cls, "doc", None) or (cls.__doc__ or "").strip().splitlines()[0]
        return doc

    def parse_args(self, name: str, args: dict[str, Any] | None, args_field: str) -> BaseModel:
        """Validate a strategy's knobs, naming both the strategy field and the knob."""
        cls = self.get(name)
        args = dict(args or {})
        arg_model: type[BaseModel] = cls.Args  # type: ignore[attr-defined]
        known = list(arg_model.model_fields)
        for key in args:
            if key not in known:
                takes = ", ".join(known) if known else "no arguments"
                raise ConfigError(
                    f"{args_field}.{key} does not apply to {self.field} '{name}' "
                    f"(it takes {takes}){suggest(key, known)}"
                )
        try:
            return arg_model(**args)
        except ValidationError as err:
            e = err.errors()[0]
            loc = ".".join(str(p) for p in e["loc"])
            raise ConfigError(
                f"{args_field}.{loc} for {self.field} '{name}': {e['msg']} (got {e.get('input')!r})"
            ) from None

    def create(self, name: str, args: BaseModel, **context: Any) -> T:
        return self.get(name)(args, **context)  # type: ignore[call-arg]
