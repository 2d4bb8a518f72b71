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


def test_require_writable_creates_a_folder_or_names_what_is_in_the_way(tmp_path):
    from mtsearch.paths import require_writable

    made = require_writable(tmp_path / "a" / "b", "runs folder")
    assert made.is_dir() and list(made.iterdir()) == []  # the probe file is gone
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="^runs folder .*file is a file, not a folder"):
        require_writable(blocker, "runs folder")
    with pytest.raises(ConfigError, match="^cache folder .*not writable"):
        require_writable(blocker / "below", "cache folder")
