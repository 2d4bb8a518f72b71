"""mtsearch/faults.py: the named points' own behaviour (the sweep's fault chain is tests/sweep/test_faults.py)."""

from __future__ import annotations

import signal

import pytest

from mtsearch import faults


def test_a_sigint_point_interrupts_even_where_sigint_is_ignored(tmp_path, monkeypatch):
    """The Ctrl-C of ``<point>:<n>:sigint`` lands at the point whatever the process's SIGINT state:
    with the default handler (raise_signal runs it) and with SIGINT ignored (raised directly)."""
    monkeypatch.setenv("MTSEARCH_RUNS", str(tmp_path))
    monkeypatch.setenv("MTSEARCH_FAULT", "here:1:sigint,there:1:sigint")
    with pytest.raises(KeyboardInterrupt):
        faults.fault_point("here")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt):
            faults.fault_point("there")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sorted(p.name for p in (tmp_path / ".faults").iterdir()) == ["here-1", "there-1"]
    faults.fault_point("here")  # fired once for this runs folder: quiet now
