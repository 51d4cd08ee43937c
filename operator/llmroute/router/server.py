"""The router process: ``serve()`` runs the application until SIGTERM/SIGINT, then drains in-flight requests.

Owns process concerns only: logging setup, the event loop (uvloop when installed), the listening socket, signal
handling and the graceful drain (stop accepting, let in-flight requests - streams included - finish for up to
:data:`DRAIN_TIMEOUT_S`, then close the upstream client and exit 0). Called by ``llmroute router`` in
:mod:`llmroute.cli`; the application itself is :func:`llmroute.router.app.build_app`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

from aiohttp import web

from llmroute.router.app import build_app

log = logging.getLogger("llmroute.router")

DRAIN_TIMEOUT_S = 30.0


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f'--listen must be HOST:PORT, got "{listen}"')
    return host.strip("[]"), int(port)


def serve(listen: str, config_paths: list[str], log_level: str = "info") -> int:
    """Run the router on ``listen`` with ``config_paths`` until SIGTERM/SIGINT; returns the exit code."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(host, port, config_paths))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return None
    return uvloop.new_event_loop


async def _serve(host: str, port: int, config_paths: Sequence[str]) -> int:
    runner = web.AppRunner(build_app(config_paths), handle_signals=False, access_log=None,
                           shutdown_timeout=DRAIN_TIMEOUT_S, keepalive_timeout=75)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        await runner.cleanup()
        return 1
    log.info("router listening on http://%s:%d", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: draining in-flight requests (up to %gs)", DRAIN_TIMEOUT_S)
    await runner.cleanup()
    log.info("router stopped")
    return 0
