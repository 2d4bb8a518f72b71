"""mtsearch.paths: where things go, and which names may become a folder there."""

from __future__ import annotations

import pytest

from mtsearch.config import make_config
from mtsearch.errors import ConfigError
from mtsearch.paths import check_name


@pytest.mark.parametrize("name", ["smoke", "sampling-gpu", "run_1.2", "é-lauf", "a b"])
def test_plain_names_pass_unchanged(name):
    assert check_name(name, "--name") == name


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("../../x", "path separator"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("..", "'..'"),
        ("x..y", "'..'"),
        (".", "'.'"),
        ("", "empty"),
        ("   ", "empty"),
        ("a\nb", "control characters"),
        ("a\x1b[31mb", "control characters"),
        ("x" * 300, "at most 200 bytes"),
    ],
)
def test_names_that_could_escape_runs_or_garble_output_are_refused(name, fragment):
    with pytest.raises(ConfigError) as err:
        check_name(name, "sweep name")
    message = str(err.value)
    assert message.startswith("sweep name: ") and fragment in message
    assert "\n" not in message.replace(repr(name), "")  # one line (the repr escapes a newline)


def test_the_config_name_field_is_checked():
    assert make_config({"name": "ok"}).name == "ok"
    with pytest.raises(ConfigError, match="^name: .*path separator"):
        make_config({"name": "../escape"})
