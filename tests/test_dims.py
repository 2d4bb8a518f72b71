"""The one dimension model: what `mtsearch dims` lists, what a space narrows, what a sweep records."""

from typing import Literal

import pytest

from mtsearch.config import RunConfig
from mtsearch.dims import Dimension, annotation_kind, config_dimensions, format_dims
from mtsearch.strategies import registries
from mtsearch.sweep.space import load_space


def test_every_field_and_every_knob_of_every_strategy_is_a_dimension():
    dims = config_dimensions()
    fields = [d.name for d in dims if not d.applies_to]
    assert fields == [f for f in RunConfig.model_fields if not f.endswith("_args")]
    knobs = {(d.name, d.applies_to) for d in dims if d.applies_to}
    expected = {
        (f"{field}_args.{knob}", f"{field}={name}")
        for field, reg in registries().items()
        for name in reg.names()
        for knob in reg.args_model(name).model_fields
    }
    assert knobs == expected
    by_name = {d.name: d for d in dims if not d.applies_to}
    assert by_name["sampler"].kind == "categorical" and by_name["sampler"].choices == tuple(
        registries()["sampler"].names()
    )
    assert (by_name["lr"].kind, by_name["lr"].low, by_name["lr"].high, by_name["lr"].default) == (
        "float",
        0.0,
        1.0,
        5e-5,
    )
    assert all(d.doc for d in dims)


@pytest.mark.parametrize(
    "annotation, expected",
    [
        (int, ("int", "int", None)),
        (float | None, ("float", "float | None", None)),
        (bool, ("categorical", "bool", (False, True))),
        (Literal["a", "b"], ("categorical", "choice", ("a", "b"))),
        (Literal["a", "b"] | None, ("categorical", "choice | None", ("a", "b"))),
        (str, ("categorical", "str", None)),
        (dict[str, float], ("categorical", "dict[str, float]", None)),
    ],
)
def test_one_mapping_from_annotation_to_kind(annotation, expected):
    assert annotation_kind(annotation) == expected


def test_a_space_narrows_the_config_dimension_and_records_it():
    space = load_space("lr")
    for dim in space.dimensions:
        accepted = next(d for d in config_dimensions() if d.name == dim.name and not d.applies_to)
        assert dim.doc == accepted.doc and dim.default == accepted.default  # the config's own facts
        if dim.choices is None:
            assert accepted.low <= dim.low < dim.high <= accepted.high
        again = Dimension.from_record(space.describe()["dimensions"][space.dimensions.index(dim)])
        assert again.record() == dim.record()  # what the dashboard reads back from sweep.json


def test_format_dims_lists_every_dimension_and_strategy():
    text = format_dims()
    assert "sampler_args.sigma (when sampler=rr_over)" in text
    for field, reg in registries().items():
        for name in reg.names():
            assert f"  {field}={name}: {reg.doc(name)}" in text
