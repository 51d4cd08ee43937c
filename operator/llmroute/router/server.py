"""The router process: ``serve()`` runs the application until SIGTERM/SIGINT, then drains in-flight requests.

Owns process concerns only: logging setup, the event loop (uvloop when installed), the file-descriptor limit (raised
to its hard limit; the connection cap is clamped to what it allows, :func:`llmroute.router.limits.connection_cap`),
the listening socket with its per-connection limits (:class:`llmroute.router.http_server.HttpServer`), signal
handling and the graceful drain. On the first SIGTERM/SIGINT ``/readyz`` answers 503 at once (a load balancer stops
sending), the router keeps serving for ``$LLMROUTE_DRAIN_DELAY`` seconds (default 0: in a cluster the pod's preStop
sleep has already covered the endpoints' propagation; a second signal ends the wait), then stops accepting
(new connections are refused), lets in-flight requests - streams included - finish for up to
``$LLMROUTE_DRAIN_TIMEOUT`` seconds (:data:`DRAIN_TIMEOUT_S`), cuts what is left, closes the upstream client and
exits 0. Called by ``llmroute router`` in
:mod:`llmroute.cli`; the application itself is :class:`llmroute.router.app.RouterApp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
from collections.abc import Callable, Mapping, Sequence

from llmroute.core import pii_numbers
from llmroute.router.app import RouterApp
from llmroute.router.http_server import HttpServer
from llmroute.router.limits import Limits, connection_cap

log = logging.getLogger("llmroute.router")

DRAIN_TIMEOUT_S = 30.0
"""Default time in-flight requests get to finish after the listener closes (``$LLMROUTE_DRAIN_TIMEOUT``)."""
DRAIN_ENV = ("LLMROUTE_DRAIN_DELAY", "LLMROUTE_DRAIN_TIMEOUT")


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f'--listen must be HOST:PORT, got "{listen}"')
    return host.strip("[]"), int(port)


def serve(listen: str, config_paths: list[str], log_level: str = "info", limits: Limits | None = None) -> int:
    """Run the router on ``listen`` with ``config_paths`` until SIGTERM/SIGINT; returns the exit code.

    ``limits``: per-connection deadlines and sizes (default: :meth:`Limits.from_env`)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(host, port, config_paths, limits or Limits.from_env()))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return None
    return uvloop.new_event_loop


def _fd_limit() -> int:
    """Raise the soft limit on open files to the hard one (as Go's runtime does) and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def drain_timings(env: Mapping[str, str]) -> tuple[float, float]:
    """(delay, timeout) of the drain from ``env`` (:data:`DRAIN_ENV`); an unusable value is named and the default
    kept."""
    out = []
    for name, default in zip(DRAIN_ENV, (0.0, DRAIN_TIMEOUT_S), strict=True):
        try:
            value = float(env.get(name, default))
        except ValueError:
            value = -1.0
        if not 0 <= value < 3600:
            log.warning("%s must be seconds in [0, 3600): using %g", name, default)
            value = default
        out.append(value)
    return out[0], out[1]


async def _serve(host: str, port: int, config_paths: Sequence[str], limits: Limits) -> int:
    cap = connection_cap(limits.max_connections, _fd_limit())
    if cap < limits.max_connections:
        log.warning(
            "at most %d client connections (not %d): the process may open only %d files",
            cap,
            limits.max_connections,
            _fd_limit(),
        )
    delay, timeout = drain_timings(os.environ)
    app = RouterApp(config_paths)
    await app.runtime.open()
    http = HttpServer(app, limits, cap, body_limit=app.body_limit)
    try:
        listener = await asyncio.get_running_loop().create_server(http, host, port, backlog=2048,
                                                                  reuse_address=True)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        await app.runtime.close()
        return 1
    log.info(
        "router listening on http://%s:%d (head %gs, body %gs, idle %gs, at most %d connections)",
        host,
        port,
        limits.head_timeout_s,
        limits.body_timeout_s,
        limits.idle_timeout_s,
        cap,
    )
    note = detector_build_note()
    if note:
        log.warning("%s", note)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    app.runtime.draining = True
    if delay > 0:
        log.info("signal received: not ready; serving %gs more before draining", delay)
        stop.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    log.info("signal received: draining in-flight requests (up to %gs)", timeout)
    listener.close()
    await http.shutdown(timeout)
    await app.runtime.close()
    log.info("router stopped")
    return 0


def detector_build_note() -> str | None:
    """What to warn about at start when the PII detector runs without its compiled part (``_pii_clusters``, built
    by ``pip install`` where a C compiler is at hand; the image always has it): the same findings, slower."""
    if pii_numbers.COMPILED:
        return None
    return (
        "the PII detector's compiled part (llmroute.core._pii_clusters) is not built here: detection finds the same, "
        "in Python, 1.6-4 times slower; reinstall llmroute where a C compiler is present"
    )
