"""A time limit for the work of one question, visible to everything it calls.

The runner opens ``question_deadline(seconds)`` around each question; code
deep below (the agent's steps, a backend about to send a request) reads
``remaining()`` to shorten its own waits and ``check()`` to stop between
steps. A context variable carries it, so worker threads each see only their
own question's deadline and no signature has to thread it through.

The same object carries cancellation: after a Ctrl-C the runner cancels the
questions in flight, and their next ``check()`` stops them.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator

from sleuth.errors import DeadlineExceeded


class Deadline:
    """An end time (monotonic clock) and a cancel flag."""

    def __init__(self, seconds: float | None, what: str = "question"):
        self.seconds = seconds
        self.what = what
        self.ends_at = None if seconds is None else time.monotonic() + seconds
        self._cancelled = threading.Event()

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a limit."""
        if self.ends_at is None:
            return None
        return max(0.0, self.ends_at - time.monotonic())

    def expired(self) -> bool:
        return self._cancelled.is_set() or (self.ends_at is not None and time.monotonic() >= self.ends_at)

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise ``DeadlineExceeded`` once the time is up or the work was cancelled."""
        if self._cancelled.is_set():
            raise DeadlineExceeded(f"the {self.what} was cancelled (the run is stopping)")
        if self.ends_at is not None and time.monotonic() >= self.ends_at:
            raise DeadlineExceeded(f"the {self.what} ran past its {self.seconds:g}s limit (--question-timeout)")


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("sleuth_deadline", default=None)


def current() -> Deadline | None:
    return _current.get()


def remaining() -> float | None:
    """Seconds left for the current question, or None (no deadline set)."""
    deadline = _current.get()
    return None if deadline is None else deadline.remaining()


def check() -> None:
    deadline = _current.get()
    if deadline is not None:
        deadline.check()


def clamp_timeout(timeout_s: float) -> float:
    """``timeout_s`` shortened to what is left of the current deadline (at least a moment, so the
    request itself reports the timeout)."""
    left = remaining()
    return timeout_s if left is None else max(0.05, min(timeout_s, left))


@contextlib.contextmanager
def use(deadline: Deadline) -> Iterator[Deadline]:
    """Make ``deadline`` the current one for this thread's work."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
