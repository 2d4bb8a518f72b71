"""Every searchable dimension, read from the config and the registries (never a second list)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pydantic.fields import FieldInfo

from mtsearch.config import RunConfig


@dataclass(frozen=True)
class Dimension:
    name: str  # config key or "<field>_args.<knob>"
    type: str
    choices: tuple[Any, ...] | None
    low: float | None
    high: float | None
    default: Any
    doc: str
    applies_to: str | None = None  # e.g. "sampler=rr_over" for a strategy's knob


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


def _type_name(annotation: Any) -> tuple[str, tuple | None]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", typing.get_args(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        name, choices = _type_name(args[0])
        return f"{name} | None", choices
    if annotation is bool:
        return "bool", (False, True)
    if isinstance(annotation, type):
        return annotation.__name__, None
    return str(annotation).replace("typing.", ""), None


def dimensions() -> list[Dimension]:
    from mtsearch.strategies import registries

    regs = registries()
    out = []
    for name, info in RunConfig.model_fields.items():
        if name.endswith("_args"):
            continue
        tname, choices = _type_name(info.annotation)
        if name in regs:
            tname, choices = "choice", tuple(regs[name].names())
        low, high = _bounds(info)
        default = info.get_default(call_default_factory=True)
        out.append(Dimension(name, tname, choices, low, high, default, (info.description or "").strip()))
    for field, reg in regs.items():
        for strat in reg.names():
            for knob, info in reg.get(strat).Args.model_fields.items():
                tname, choices = _type_name(info.annotation)
                low, high = _bounds(info)
                out.append(
                    Dimension(
                        f"{field}_args.{knob}",
                        tname,
                        choices,
                        low,
                        high,
                        info.get_default(call_default_factory=True),
                        (info.description or "").strip(),
                        applies_to=f"{field}={strat}",
                    )
                )
    return out


def strategies_table() -> list[tuple[str, str, str]]:
    from mtsearch.strategies import registries

    return [(field, name, reg.doc(name)) for field, reg in registries().items() for name in reg.names()]


def format_dims() -> str:
    rows = []
    for d in dimensions():
        if d.choices is not None:
            values = " | ".join(map(str, d.choices))
        elif d.low is not None or d.high is not None:
            values = f"[{'' if d.low is None else d.low}, {'' if d.high is None else d.high}]"
        else:
            values = ""
        where = f" (when {d.applies_to})" if d.applies_to else ""
        rows.append((d.name + where, d.type, values, repr(d.default), d.doc))
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
    return "\n".join(lines)
