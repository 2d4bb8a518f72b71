"""Every searchable dimension, read from the config and the registries (never a second list).

One model, :class:`Dimension`, serves ``mtsearch dims``, search spaces and the dashboard.
:func:`config_dimensions` lists what the config accepts: each field, and each knob of
each registered strategy (``sampler_args.sigma`` when sampler is rr_over), with its
kind, allowed choices, bounds, default and documentation. A search space narrows one of
them (:meth:`Dimension.narrow`) to the values or range it searches, and says ``when`` it
applies; :meth:`Dimension.record` is what a sweep stores of it (and the dashboard reads).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

from mtsearch.config import RunConfig
from mtsearch.errors import ConfigError

#: What a search draws: one of a set of values, a whole number or a real number.
Kind = Literal["categorical", "int", "float"]
#: The keys a sweep records of a searched dimension (sweep.json and its fingerprint).
RECORD_KEYS = ("name", "kind", "choices", "low", "high", "step", "log", "when", "bins")

#: What every user of the default encoder should know before reading a score (README and the presets say it too).
ENCODER_NOTE = (
    "note: model 'minilm' (all-MiniLM-L6-v2, the default) was trained on QQP duplicate pairs and NLI, so on it "
    "QQP and STS start far ahead of a plain BERT and effects of pair inputs can invert; the published systems "
    "used BERT-base (presets' gpu profile: model bert-base-uncased)."
)


class Dimension(BaseModel):
    """One name a search may vary: what the config accepts there, or what a space searches."""

    model_config = ConfigDict(frozen=True)

    name: str  # config key or "<field>_args.<knob>"
    kind: Kind
    choices: tuple[Any, ...] | None = None
    low: int | float | None = None
    high: int | float | None = None
    # --- how a space searches it
    step: int | float | None = None
    log: bool = False
    when: dict[str, tuple[Any, ...]] = {}
    bins: int = 3  # numeric dimensions are cut into this many levels in ablation tables
    # --- what the config says of it
    annotation: str = ""  # the config's type, as `mtsearch dims` prints it
    default: Any = None
    doc: str = ""
    applies_to: str | None = None  # e.g. "sampler=rr_over" for a strategy's knob

    @property
    def strategy_field(self) -> str | None:
        """'sampler' for 'sampler_args.sigma'; None for a plain config field."""
        head, dot, _ = self.name.partition("_args.")
        return head if dot else None

    def narrow(self, **search: Any) -> Dimension:
        """This dimension as a space searches it (choices or a range, step, log, when, bins)."""
        return self.model_copy(update=search)

    def record(self) -> dict[str, Any]:
        """What a sweep stores of a searched dimension (the space's fingerprint hashes it)."""
        return {k: getattr(self, k) for k in RECORD_KEYS}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Dimension:
        """A searched dimension back from a sweep's ``space.describe()`` (the dashboard's view)."""
        return cls.model_validate({k: v for k, v in record.items() if k in RECORD_KEYS})

    def active(self, params: dict[str, Any]) -> bool:
        return all(params.get(k) in vals for k, vals in self.when.items())

    def grid_values(self) -> tuple[Any, ...]:
        if self.choices is not None:
            return self.choices
        if self.kind == "int" and self.step:
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step)))  # type: ignore[arg-type]
        raise ConfigError(f"dimension '{self.name}': a grid needs 'values' or an int range with 'step'")

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial (or anything with its suggest_* API) for this dimension."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name,
                int(self.low),  # type: ignore[arg-type]
                int(self.high),  # type: ignore[arg-type]
                step=int(self.step or 1),
                log=self.log,
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def annotation_kind(annotation: Any) -> tuple[Kind, str, tuple[Any, ...] | None]:
    """(kind, printed type, allowed values) of a config annotation: the one mapping there is."""
    origin = typing.get_origin(annotation)
    inner = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(inner) == 1:
        kind, label, choices = annotation_kind(inner[0])
        return kind, f"{label} | None", choices
    if origin is typing.Literal:
        return "categorical", "choice", typing.get_args(annotation)
    if annotation is bool:
        return "categorical", "bool", (False, True)
    if annotation is int:
        return "int", "int", None
    if annotation is float:
        return "float", "float", None
    label = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
    return "categorical", label, None


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for m in info.metadata:
        for attr in ("ge", "gt"):
            if getattr(m, attr, None) is not None:
                low = getattr(m, attr)
        for attr in ("le", "lt"):
            if getattr(m, attr, None) is not None:
                high = getattr(m, attr)
    return low, high


def _from_field(name: str, info: FieldInfo, applies_to: str | None = None) -> Dimension:
    kind, label, choices = annotation_kind(info.annotation)
    low, high = _bounds(info)
    return Dimension(
        name=name, kind=kind, choices=choices, low=low, high=high, annotation=label,
        default=info.get_default(call_default_factory=True), doc=(info.description or "").strip(),
        applies_to=applies_to,
    )  # fmt: skip


def config_dimensions() -> list[Dimension]:
    """Every config field (but the ``*_args`` holders), then every knob of every strategy."""
    from mtsearch.strategies import registries

    regs = registries()
    out = []
    for name, info in RunConfig.model_fields.items():
        if name.endswith("_args"):
            continue
        dim = _from_field(name, info)
        if name in regs:  # a strategy field takes the names its registry holds
            dim = dim.model_copy(
                update={"kind": "categorical", "annotation": "choice", "choices": tuple(regs[name].names())}
            )
        out.append(dim)
    for field, reg in regs.items():
        for strat in reg.names():
            for knob, info in reg.args_model(strat).model_fields.items():
                out.append(_from_field(f"{field}_args.{knob}", info, applies_to=f"{field}={strat}"))
    return out


def knob_dimensions(name: str) -> dict[str, Dimension]:
    """A strategy knob's dimension per strategy that has it ({'rr_over': ...} for 'sampler_args.sigma')."""
    return {d.applies_to.split("=", 1)[1]: d for d in config_dimensions() if d.name == name and d.applies_to}


def strategies_table() -> list[tuple[str, str, str]]:
    from mtsearch.strategies import registries

    return [(field, name, reg.doc(name)) for field, reg in registries().items() for name in reg.names()]


def format_dims() -> str:
    rows = []
    for d in config_dimensions():
        if d.choices is not None:
            values = " | ".join(map(str, d.choices))
        elif d.low is not None or d.high is not None:
            values = f"[{'' if d.low is None else d.low}, {'' if d.high is None else d.high}]"
        else:
            values = ""
        where = f" (when {d.applies_to})" if d.applies_to else ""
        rows.append((d.name + where, d.annotation, values, repr(d.default), d.doc))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    widths = [min(w, 40) for w in widths]
    head = ("dimension", "type", "choices/range", "default", "doc")
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head[:4], widths, strict=True)) + "  " + head[4]]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    lines.append("")
    lines.append("strategies:")
    for field, name, doc in strategies_table():
        lines.append(f"  {field}={name}: {doc}")
    lines.append("")
    lines.append(ENCODER_NOTE)
    return "\n".join(lines)
