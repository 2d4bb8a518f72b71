"""tests/helpers.wait_until: the one way a test waits for a named point in another process."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import wait_until


class FakeProc:
    """A process that is running until ``ends_after`` polls, then exited with ``code``."""

    def __init__(self, ends_after: int | None = None, code: int = 3):
        self.polls, self.ends_after, self.code, self.killed = 0, ends_after, code, False

    def poll(self):
        self.polls += 1
        return self.code if self.ends_after is not None and self.polls > self.ends_after else None

    @property
    def returncode(self):
        return self.poll()

    def wait(self, timeout=None):
        if self.poll() is None:
            raise subprocess.TimeoutExpired("fake", timeout)
        return self.code

    def kill(self):
        self.killed = True


def test_the_first_truthy_answer_is_returned():
    answers = iter([None, 0, "", 42])
    assert wait_until(lambda: next(answers), FakeProc(), "the point", every=0) == 42


def test_a_process_that_ends_first_fails_at_once_with_the_detail():
    with pytest.raises(AssertionError, match=r"the point: the process ended first \(exit 3\) its log"):
        wait_until(lambda: None, FakeProc(ends_after=2), "the point", detail=lambda: "its log", every=0)


def test_a_hung_process_is_killed_at_the_bound():
    proc = FakeProc()
    with pytest.raises(AssertionError, match="the point: not reached in 0 s, the process hangs"):
        wait_until(lambda: None, proc, "the point", bound=0, every=0)
    assert proc.killed
