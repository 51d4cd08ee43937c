"""Writing the audit trail: one JSON line per request on the router's stdout, never blocking the event loop.

Owns the process's audit writer. Records are built and sampled by :mod:`llmroute.core.audit` (called from
:mod:`llmroute.router.proxy` when the config has ``audit``); here a kept line goes into a bounded in-memory buffer
with a non-blocking put, and one writer thread moves lines from it to stdout (file descriptor 1) in batches. When the
buffer is full - stdout blocked by a stalled log pipeline, or a burst faster than it drains - the line is dropped and
counted in ``llmroute_audit_dropped_total``, so a slow log pipeline costs audit lines, never latency. The buffer
holds :data:`CAPACITY` lines unless ``LLMROUTE_AUDIT_BUFFER`` says otherwise. Lines written are counted in
``llmroute_audit_records_total``.

Why stdout: the router's logs go to stderr, so stdout carries audit lines only, each marked
``"kind":"llmroute.audit"``; cluster log agents (Fluent Bit, Vector) read both streams and can route on either the
stream or the marker (``docs/audit.md``). The writer starts with the first line (a router whose config does not audit
never starts it) and is flushed at exit, so a drained router's last lines are not lost. One log per process
(:func:`process_log`) serves the proxy and the access check, which records the callers it refuses
(:func:`refused_caller`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import threading
import time
from collections.abc import Mapping

from prometheus_client import Counter

from llmroute.core import audit
from llmroute.core.router_config import RouterConfig
from llmroute.router.metrics import REGISTRY

CAPACITY = 10_000
"""Lines buffered at most by default (a few MB); beyond, lines are dropped and counted."""
CAPACITY_ENV = "LLMROUTE_AUDIT_BUFFER"
"""Environment variable overriding :data:`CAPACITY` (a positive number of lines)."""
BATCH = 256
FLUSH_TIMEOUT_S = 5.0

DROPPED = Counter(
    "llmroute_audit_dropped", "Audit lines dropped because the buffer to stdout was full.", registry=REGISTRY
)
WRITTEN = Counter("llmroute_audit_records", "Audit lines written to stdout.", registry=REGISTRY)

_STOP = b""


def capacity_from(env: Mapping[str, str]) -> int:
    """The buffer size: ``LLMROUTE_AUDIT_BUFFER`` when it is a positive integer, else :data:`CAPACITY`."""
    raw = env.get(CAPACITY_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else CAPACITY


class AuditLog:
    """A bounded buffer of audit lines and the thread that writes them to ``fd``."""

    def __init__(self, fd: int = 1, capacity: int | None = None) -> None:
        self._fd = fd
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=capacity or capacity_from(os.environ))
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def emit(self, data: bytes) -> bool:
        """Queue one line without blocking; False (and counted) when the buffer is full."""
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(data)
        except queue.Full:
            DROPPED.inc()
            return False
        return True

    def dropped(self) -> None:
        """Count a line that could not be made."""
        DROPPED.inc()

    def close(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Write what is buffered (up to ``timeout_s``) and stop the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        thread.join(timeout_s)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            lines = [b for b in batch if b]
            if lines:
                self._write(b"".join(lines))
                WRITTEN.inc(len(lines))
            if stop:
                return

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except InterruptedError:
                continue
            except OSError:  # stdout closed: nothing more can be written, count the rest as dropped
                DROPPED.inc(data.count(b"\n", len(data) - len(view)))
                return
            view = view[n:]


_PROCESS: AuditLog | None = None


def process_log() -> AuditLog:
    """The process's audit log (stdout), shared by the proxy and the access check."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = AuditLog()
    return _PROCESS


def refused_caller(config: RouterConfig, config_hash: str, path: str, status: int, code: str) -> None:
    """Record a caller the route's access check refused (401/403), when the route audits: always kept, nothing of
    the request (its path only as one of the known endpoints, its credential never)."""
    if config.audit is None:
        return
    trace = audit.Trace(os.urandom(16).hex(), time.time(), 0.0, audit.endpoint(path))
    outcome = audit.UNAUTHENTICATED if status == 401 else audit.FORBIDDEN
    end = audit.End(status, outcome, code, None, 0.0)
    route = f"{config.origin.route_namespace}/{config.origin.route_name}"
    rec = audit.record(
        trace, end, route=route, config_hash=config_hash, identity=None, sample_rate=config.audit.sample_rate
    )
    process_log().emit(audit.line(rec))
