"""The router process: ``serve()`` runs the application until SIGTERM/SIGINT, then drains in-flight requests.

Owns process concerns only: logging setup, the event loop (uvloop when installed), the file-descriptor limit (raised
to its hard limit; the connection cap is clamped to what it allows, :func:`llmroute.router.limits.connection_cap`),
the listening socket with its per-connection limits (:class:`llmroute.router.protocol.GuardedRunner`), signal
handling and the graceful drain (stop accepting, let in-flight requests - streams included - finish for up to
:data:`DRAIN_TIMEOUT_S`, then close the upstream client and exit 0). Called by ``llmroute router`` in
:mod:`llmroute.cli`; the application itself is :func:`llmroute.router.app.build_app`.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections.abc import Callable, Sequence

from aiohttp import web

from llmroute.router.app import build_app
from llmroute.router.limits import Limits, connection_cap
from llmroute.router.protocol import GuardedRunner

log = logging.getLogger("llmroute.router")

DRAIN_TIMEOUT_S = 30.0


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
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
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


async def _serve(host: str, port: int, config_paths: Sequence[str], limits: Limits) -> int:
    cap = connection_cap(limits.max_connections, _fd_limit())
    if cap < limits.max_connections:
        log.warning(
            "at most %d client connections (not %d): the process may open only %d files",
            cap,
            limits.max_connections,
            _fd_limit(),
        )
    runner = GuardedRunner(
        build_app(config_paths), limits, cap, handle_signals=False, access_log=None, shutdown_timeout=DRAIN_TIMEOUT_S
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        await runner.cleanup()
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: draining in-flight requests (up to %gs)", DRAIN_TIMEOUT_S)
    await runner.cleanup()
    log.info("router stopped")
    return 0
