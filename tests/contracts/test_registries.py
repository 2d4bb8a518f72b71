"""Contracts of every registered strategy of every family: documented, typed, checked by the config.

Parametrised over the registries at collection time, so a strategy module dropped into
its family's folder is covered without editing this file.
"""

import pytest

from mtsearch.config import make_config
from mtsearch.errors import ConfigError
from mtsearch.registry import Registry, Strategy
from mtsearch.strategies import registries

STRATEGIES = [(reg, name) for reg in registries().values() for name in reg.names()]


def _id(value):
    return value.family if isinstance(value, Registry) else value


def test_registries_are_keyed_by_their_config_field():
    regs = registries()
    assert set(regs) == {"sampler", "update", "pooling", "head"}
    for field, reg in regs.items():
        assert isinstance(reg, Registry) and reg.field == field and reg.names()


@pytest.mark.parametrize("reg, name", STRATEGIES, ids=_id)
def test_every_strategy_is_documented_and_has_default_args(reg, name):
    cls = reg.get(name)
    assert issubclass(cls, Strategy) and cls.name == name
    assert reg.doc(name), f"{reg.family}/{name} has no doc line"
    args = reg.args_model(name)()  # every knob has a default
    for knob, info in type(args).model_fields.items():
        assert info.description, f"{reg.family}/{name} knob {knob} has no docstring"


@pytest.mark.parametrize("reg, name", STRATEGIES, ids=_id)
def test_every_strategy_runs_under_the_default_config(reg, name):
    # Its default knobs pass its own check against a default run (three tasks, default budget).
    config = make_config({reg.field: name})
    assert getattr(config, reg.field) == name
    assert config.args(reg.field) == reg.args_model(name)()


@pytest.mark.parametrize("reg, name", STRATEGIES, ids=_id)
def test_a_knob_of_another_strategy_is_refused_naming_both_fields(reg, name):
    knobs = list(reg.args_model(name).model_fields)
    takes = ", ".join(knobs) if knobs else "no arguments"
    with pytest.raises(ConfigError) as err:
        make_config({reg.field: name, f"{reg.field}_args": {"bogus": 1}})
    assert f"{reg.field}_args.bogus does not apply to {reg.field} '{name}' (it takes {takes})" in str(
        err.value
    )


@pytest.mark.parametrize("reg", list(registries().values()), ids=_id)
def test_a_strategy_missing_an_abstract_method_is_refused_when_registered(reg):
    base = next(b for b in reg.get(reg.names()[0]).__mro__ if b.__dict__.get("__abstractmethods__"))
    incomplete = type("Incomplete", (base,), {"__doc__": "Forgot its method."})
    with pytest.raises(TypeError, match="does not implement"):
        reg.register("zz_incomplete")(incomplete)
    assert "zz_incomplete" not in reg
