"""One timer for a succession of deadlines: it fires once a held deadline has passed, never for one that was cleared
or moved later, and only an earlier deadline costs a new timer (a fake loop: time passes only when the test says)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from llmroute.router.deadline import Deadline

pytestmark = pytest.mark.unit


class _Handle:
    def __init__(self, at: float, callback: Any) -> None:
        self.at, self.callback, self.cancelled = at, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, at: float, callback: Any) -> _Handle:
        handle = _Handle(at, callback)
        self.handles.append(handle)
        return handle

    def advance(self, to: float) -> None:
        """Run every timer due by ``to`` in order, as the loop would."""
        while True:
            due = sorted((h for h in self.handles if not h.cancelled and h.at <= to), key=lambda h: h.at)
            if not due:
                break
            handle = due[0]
            self.handles.remove(handle)
            self.now = max(self.now, handle.at)
            handle.callback()
        self.now = to

    @property
    def pending(self) -> list[float]:
        return [h.at for h in self.handles if not h.cancelled]


def make() -> tuple[FakeLoop, Deadline, list[float]]:
    loop, fired = FakeLoop(), []
    deadline = Deadline(cast(asyncio.AbstractEventLoop, loop), lambda: fired.append(loop.now))
    return loop, deadline, fired


def test_fires_once_when_the_deadline_passes() -> None:
    loop, d, fired = make()
    d.arm(5.0)
    loop.advance(4.9)
    assert fired == []
    loop.advance(20.0)
    assert fired == [5.0] and d.at == 0.0 and loop.pending == []


def test_a_later_deadline_keeps_the_timer_which_reschedules_itself() -> None:
    loop, d, fired = make()
    d.arm(5.0)
    d.arm(8.0)  # the request moved on: same timer
    assert loop.pending == [5.0]
    loop.advance(6.0)
    assert fired == [] and loop.pending == [8.0]
    loop.advance(9.0)
    assert fired == [8.0]


def test_an_earlier_deadline_replaces_the_timer() -> None:
    loop, d, fired = make()
    d.arm(5.0)
    d.arm(2.0)
    assert loop.pending == [2.0]
    loop.advance(10.0)
    assert fired == [2.0]


def test_a_cleared_deadline_fires_into_nothing_and_cancel_drops_the_timer() -> None:
    loop, d, fired = make()
    d.arm(5.0)
    d.at = 0.0  # the phase ended without a deadline
    loop.advance(10.0)
    assert fired == [] and loop.pending == []
    d.arm(12.0)
    d.cancel()
    assert loop.pending == []
    loop.advance(20.0)
    assert fired == []


def test_armed_again_after_firing() -> None:
    loop, d, fired = make()
    d.arm(1.0)
    loop.advance(1.0)
    d.arm(3.0)
    loop.advance(3.0)
    assert fired == [1.0, 3.0]
