"""Named kill points for fault-injection tests: ``MTSEARCH_FAULT=<point>:<n>``.

The sweep calls :func:`fault_point` at the moments where a crash is hardest to recover
from (a run started, a result written but not yet told to the study, between runs, a
cache being written, ...). When the variable names a point, the n-th time this process
reaches it the process kills itself with SIGKILL: nothing is flushed, no ``finally``
runs, exactly like ``kill -9`` or a power loss.

A point fires once per runs folder: before dying the process leaves a marker
``<runs>/.faults/<point>-<n>``, so a resume started with the same environment (or a Ray
worker restarted by Ray) goes on instead of dying at the same place again. Several
points may be given, separated by commas. Unset (always, outside tests), this is a dict
lookup.

``<point>:<n>:sigint`` interrupts instead of killing: the process sends itself SIGINT, as a
user's Ctrl-C would (Python raises KeyboardInterrupt in the main thread), so a test can
press Ctrl-C at a named moment rather than after a guessed delay.
"""

from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def fault_point(name: str) -> None:
    spec = os.environ.get("MTSEARCH_FAULT")
    if not spec:
        return
    _seen[name] = _seen.get(name, 0) + 1
    for item in spec.split(","):
        point, _, rest = item.strip().partition(":")
        count, _, how = rest.partition(":")
        if point == name and _seen[name] == int(count or 1):
            _die(f"{point}-{int(count or 1)}", signal.SIGINT if how == "sigint" else signal.SIGKILL)


def _die(marker: str, sig: int = signal.SIGKILL) -> None:
    from mtsearch.paths import runs_dir

    folder = runs_dir() / ".faults"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes reaching the point at once, one dies.
        os.close(os.open(folder / marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), sig)
