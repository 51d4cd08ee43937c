"""One timer per connection for a succession of deadlines: what both of the router's HTTP/1.1 sides use.

A connection moves through deadlines all the time - the client side's head, body and idle deadlines
(:mod:`llmroute.router.http_server`), the upstream side's deadline of each read (:mod:`llmroute.router.http1`) -
and most of them pass without firing. Scheduling and cancelling a loop timer for each one cost more than the rest of
a fast request's bookkeeping, so a :class:`Deadline` keeps at most one timer: moving the deadline later leaves the
timer where it is (it fires, sees the later deadline and re-schedules itself for it), only an earlier one replaces
it, and clearing the deadline leaves the timer to fire into nothing. When the deadline it holds has passed, it calls
its owner's ``expired`` callback once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    """The deadline (loop time) a connection's current wait must end by, and the one timer that watches it.

    ``at`` is the deadline, 0.0 for none: set it through :meth:`arm` (to move it earlier, a timer must move too) or
    to 0.0 directly (cheap: the timer, if any, fires into nothing)."""

    __slots__ = ("_expired", "_loop", "_timer", "_timer_at", "at")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.at = 0.0

    def arm(self, at: float) -> None:
        """Watch ``at`` (loop time); the timer moves only if it would fire after it."""
        self.at = at
        if self._timer is not None:
            if self._timer_at <= at:
                return  # fires first, then re-schedules itself for the later deadline
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._on_timer)

    def cancel(self) -> None:
        """No deadline and no timer (the connection is closing)."""
        self.at = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        at = self.at
        if not at:
            return
        if self._loop.time() < at:
            self._timer_at = at
            self._timer = self._loop.call_at(at, self._on_timer)
            return
        self.at = 0.0
        self._expired()
