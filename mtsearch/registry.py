"""One registry per strategy family, filled by discovering the family's modules.

A registry maps a name to a strategy class. Each strategy declares its own typed knobs
as a pydantic model ``Args`` (empty when it has none), a one-line ``doc`` and a
``check_config(args, config)`` that refuses a run it cannot work with. The CLI, the
config validation, search spaces, the dashboard and the tests all read the same
registry. A family's package calls :func:`discover` on itself, which imports every
module in its folder: adding a strategy is one module with one ``@REGISTRY.register``
line, and no list elsewhere can forget it (base and helper modules register nothing).
"""

from __future__ import annotations

import abc
import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mtsearch.errors import ConfigError

if TYPE_CHECKING:
    from mtsearch.config import RunConfig


class NoArgs(BaseModel):
    """Arguments of a strategy that has no knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Strategy(abc.ABC):  # noqa: B024  (no abstract method of its own: each family declares them)
    """What every registered strategy has: typed knobs, a name, and a check against the run."""

    Args: ClassVar[type[BaseModel]] = NoArgs
    name: ClassVar[str]

    @classmethod
    def check_config(cls, args: BaseModel, config: RunConfig) -> None:
        """Refuse a run this strategy cannot work with (raise ValueError naming the fields).

        Called by the run config's last validator with this strategy's parsed ``args`` and
        the whole config (every other field already valid), before any data or model is
        touched. The default accepts every run.
        """
        return None


T = TypeVar("T")


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def discover(package: str, path: Iterable[str]) -> None:
    """Import every module of a family's package (``discover(__name__, __path__)`` in its ``__init__``).

    Importing a strategy module runs its ``@REGISTRY.register``; a module that fails to
    import fails loudly here instead of leaving its strategy silently unregistered.
    """
    for info in pkgutil.iter_modules(list(path)):
        importlib.import_module(f"{package}.{info.name}")


class Registry(Generic[T]):
    def __init__(self, family: str, field: str):
        self.family = family  # e.g. "samplers"
        self.field = field  # the config field that picks one, e.g. "sampler"
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items:
                raise RuntimeError(f"{self.family}: '{name}' registered twice")
            if inspect.isabstract(cls):
                # A missing method is a bug of the module, not of the run that picks it.
                missing = ", ".join(sorted(cls.__abstractmethods__))  # type: ignore[attr-defined]
                raise TypeError(f"{self.family}: '{name}' ({cls.__name__}) does not implement {missing}")
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

    def args_model(self, name: str) -> type[BaseModel]:
        """The strategy's typed knobs (``NoArgs`` when it has none)."""
        return self.get(name).Args  # type: ignore[attr-defined]

    def parse_args(self, name: str, args: dict[str, Any] | None, args_field: str) -> BaseModel:
        """Validate a strategy's knobs, naming both the strategy field and the knob."""
        args = dict(args or {})
        arg_model = self.args_model(name)
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
