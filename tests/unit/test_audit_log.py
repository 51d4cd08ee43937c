"""The audit writer (:class:`llmroute.router.audit.AuditLog`): lines reach the file descriptor whole and in order;
a blocked reader never blocks :meth:`emit` - past the buffer, lines are dropped and counted; close flushes."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import pytest

from llmroute.router import audit as audit_log
from llmroute.router.audit import AuditLog

pytestmark = pytest.mark.unit


@pytest.fixture()
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def dropped() -> float:
    return audit_log.DROPPED._value.get()


def test_lines_arrive_whole_and_in_order(pipe: tuple[int, int]) -> None:
    r, w = pipe
    log = AuditLog(fd=w)
    lines = [b'{"n":%d}\n' % i for i in range(2000)]
    reader = threading.Thread(target=lambda: out.append(read_all(r)))
    out: list[bytes] = []
    reader.start()
    assert all(log.emit(line) for line in lines)
    log.close()
    os.close(w)
    reader.join(5)
    assert out == [b"".join(lines)]


def test_a_blocked_reader_costs_lines_not_latency(pipe: tuple[int, int]) -> None:
    r, w = pipe
    log = AuditLog(fd=w, capacity=8)
    big = b"x" * (1 << 17) + b"\n"  # larger than the pipe's buffer: the writer blocks on the first one
    before = dropped()
    started = time.perf_counter()
    results = [log.emit(big) for _ in range(200)]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"emit blocked for {elapsed:.3f}s"
    kept = results.count(True)
    assert 8 <= kept <= 10 and dropped() - before == 200 - kept  # the buffer, plus what the writer already took
    reader_out: list[bytes] = []
    reader = threading.Thread(target=lambda: reader_out.append(read_all(r)))
    reader.start()
    log.close()
    os.close(w)
    reader.join(10)
    assert reader_out[0] == big * kept  # what was accepted is written, whole


def test_closing_a_log_that_never_wrote_is_a_no_op() -> None:
    AuditLog(fd=-1).close()


def test_a_line_that_could_not_be_made_is_counted_as_dropped() -> None:
    before = dropped()
    AuditLog(fd=-1).dropped()
    assert dropped() == before + 1
