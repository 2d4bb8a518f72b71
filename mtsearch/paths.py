"""Where mtsearch reads and writes by default.

The project root is the checkout that holds ``pyproject.toml`` next to the package when
installed editable (the Makefile does that); otherwise the current directory. Every
location can be overridden by an environment variable so a user can keep runs and data
elsewhere.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from pathlib import Path

from mtsearch.errors import ConfigError

#: A name becomes one directory (``runs/<name>``, ``runs/sweeps/<name>``); most file systems
#: allow 255 bytes, and a little is left for suffixes such as ``.part``.
_NAME_MAX_BYTES = 200


def project_root() -> Path:
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd()


def runs_dir() -> Path:
    """Root of all outputs: ``MTSEARCH_RUNS`` or ``<project>/runs``."""
    env = os.environ.get("MTSEARCH_RUNS")
    return Path(env).expanduser() if env else project_root() / "runs"


def default_data_dir() -> Path:
    """Data folder used when neither ``--data-dir`` nor ``MTSEARCH_DATA`` is given."""
    return project_root() / "data" / "cs224n"


def cache_dir() -> Path:
    """Derived artefacts that are safe to delete (token ids, cached activations)."""
    env = os.environ.get("MTSEARCH_CACHE")
    return Path(env).expanduser() if env else runs_dir() / "cache"


def require_writable(path: Path, what: str) -> Path:
    """``path`` as a folder this process can write into (created if missing), else ConfigError.

    ``what`` names the folder and the setting behind it ("runs folder (MTSEARCH_RUNS)").
    Writing is tried, not inferred from permission bits: a read-only file system, an
    immutable folder or a file in the way all fail here, in one line, before any work.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder: point it at a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"{what} {path} is not writable ({reason}): point it at a folder you can write to"
        ) from None
    return path


def require_output_dirs() -> None:
    """The runs and cache folders can be written: checked before a run or sweep starts."""
    require_writable(runs_dir(), "runs folder (MTSEARCH_RUNS)")
    require_writable(cache_dir(), "cache folder (MTSEARCH_CACHE, default <runs>/cache)")


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it can be one directory under runs/, else raise ConfigError.

    Run and sweep names become folder names, so a name with a path separator or ``..``
    would write outside ``runs/`` (``--name ../../x``); control characters (a newline, an
    escape) would garble logs and file listings. ``what`` names the culprit in the
    message ("--name", "name", "sweep name").
    """
    if not isinstance(name, str):
        raise ConfigError(f"{what}: a name is text (got {name!r})")
    if not name.strip():
        raise ConfigError(f"{what}: a name may not be empty (got {name!r})")
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if any(c in name for c in seps):
        raise ConfigError(
            f"{what}: a name is one folder under runs/, without a path separator (got {name!r}; "
            "drop the '/' or '\\')"
        )
    if ".." in name or name == ".":
        raise ConfigError(f"{what}: a name may not be '.' or contain '..' (got {name!r})")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ConfigError(f"{what}: a name may not contain control characters (got {name!r})")
    if len(name.encode("utf-8")) > _NAME_MAX_BYTES:
        raise ConfigError(f"{what}: a name has at most {_NAME_MAX_BYTES} bytes (got {len(name.encode())})")
    return name
