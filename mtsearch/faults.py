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

``MTSEARCH_HOLD=<point>:<n>[:<peers>]`` holds a process at the same points instead of
killing it, so that a test interrupts or overlaps work at a named moment rather than after
some seconds: the n-th time a process reaches the point it writes
``<runs>/.holds/<point>-<n>-<pid>`` (what the test waits for), then, with ``peers``, waits
until that many processes have held there (a rendezvous: runs that must be in flight
together), without, stays until a signal ends it (Ctrl-C: the KeyboardInterrupt is raised
at the point, as it would be anywhere in the run).
``<point>:<n>:sigint`` interrupts instead of killing: the process sends itself SIGINT, as a
user's Ctrl-C would (Python raises KeyboardInterrupt in the main thread), so a test can
press Ctrl-C at a named moment rather than after a guessed delay.
"""

from __future__ import annotations

import os
import signal
import time

_seen: dict[str, int] = {}
#: How often a held process looks for its peers' markers (a rendezvous waits on files, not on time).
HOLD_POLL_SECONDS = 0.05


def fault_point(name: str) -> None:
    spec = os.environ.get("MTSEARCH_FAULT")
    hold = os.environ.get("MTSEARCH_HOLD")
    if not (spec or hold):
        return
    _seen[name] = _seen.get(name, 0) + 1
    for item in (spec or "").split(","):
        point, _, rest = item.strip().partition(":")
        count, _, how = rest.partition(":")
        if point == name and _seen[name] == int(count or 1):
            _die(f"{point}-{int(count or 1)}", signal.SIGINT if how == "sigint" else signal.SIGKILL)
    for item in (hold or "").split(","):
        point, count, peers = (item.strip().split(":") + ["", ""])[:3]
        if point == name and _seen[name] == int(count or 1):
            _hold(f"{point}-{int(count or 1)}", int(peers) if peers else None)


def _hold(marker: str, peers: int | None) -> None:
    from mtsearch.paths import runs_dir

    folder = runs_dir() / ".holds"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{marker}-{os.getpid()}").touch()
    if peers is None:
        while True:  # until a signal's handler raises (SIGINT: KeyboardInterrupt) or kills the process
            signal.pause()
    while len(list(folder.glob(f"{marker}-*"))) < peers:
        time.sleep(HOLD_POLL_SECONDS)


def held(runs: os.PathLike | str, point: str) -> dict[int, str]:
    """The processes that held at ``point`` (any count): pid -> marker name."""
    folder = os.path.join(runs, ".holds")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return {int(n.rsplit("-", 1)[1]): n for n in names if n.startswith(point + "-")}


def _die(marker: str, sig: int = signal.SIGKILL) -> None:
    from mtsearch.paths import runs_dir

    folder = runs_dir() / ".faults"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes reaching the point at once, one dies.
        os.close(os.open(folder / marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    if sig == signal.SIGINT:
        # As a terminal's Ctrl-C: KeyboardInterrupt at this point. raise_signal runs Python's handler
        # before it returns (main thread, default handler); where it cannot (the point reached in
        # another thread, a handler some library replaced: a CI run saw an in-process test's Ctrl-C
        # missed and the sweep finish) the interrupt is raised here directly.
        signal.raise_signal(signal.SIGINT)
        raise KeyboardInterrupt
    os.kill(os.getpid(), sig)
