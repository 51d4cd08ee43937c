"""When the emulator's bytes go out: headers first, then keep-alives while "queued", tokens at
``token_interval``, and the mid-response faults (stall, cut, idle close).

Owns the timing half of the wire: :func:`stream` (SSE with ``: keep-alive`` comments) and
:func:`respond` (JSON, preceded by blank lines when slow, as DeepSeek does). Connections end in two ways:
:func:`reset_transport` is abortive (TCP RST; ``refuse`` and listener outages), while cuts and idle closes
hang up (flush, then FIN without the terminating chunk, so the client keeps exactly the tokens sent).
Waits poll the transport, so a client that hangs up ends the handler even when aiohttp's handler
cancellation is off (as under pytest-aiohttp's test server).
Called by :mod:`llmroute.emulator.app`; what the bytes say comes from :mod:`llmroute.emulator.wire`.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from .faults import FaultPlan
from .stats import Outcome, Record
from .wire import BLANK_LINE, SSE_KEEPALIVE, Generation

_POLL = 0.05  # how often a waiting handler checks whether the client is still there
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


class _ClientGone(Exception):
    """The client closed the connection."""


class _IdleClosed(Exception):
    """``idle_close`` elapsed without a token."""


class _Cut(Exception):
    """``cut_after_tokens`` reached."""


def reset_transport(transport: asyncio.BaseTransport | None) -> None:
    """Close a connection abortively (SO_LINGER 0 -> RST), without flushing anything."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()


def reset_connection(request: web.BaseRequest) -> None:
    """Reset the connection ``request`` arrived on."""
    reset_transport(request.transport)


def _hang_up(request: web.BaseRequest) -> None:
    """Close mid-response: what was written is flushed, then FIN without the terminating chunk, so the
    client gets exactly the tokens sent so far and then a truncated body (unlike a reset, which may
    discard bytes still in flight)."""
    if request.transport is not None:
        request.transport.close()


class _Pacer:
    """Writes to one prepared response and sleeps between writes, keeping the connection warm."""

    def __init__(self, request: web.BaseRequest, response: web.StreamResponse, plan: FaultPlan,
                 keepalive: bytes) -> None:
        self._request, self._response, self._plan, self._keepalive = request, response, plan, keepalive
        self._loop = asyncio.get_running_loop()
        self._last_sent = self._last_token = self._loop.time()
        self.stalled = False

    async def write(self, data: bytes, *, token: bool = True) -> None:
        if self._request.transport is None or self._request.transport.is_closing():
            raise _ClientGone
        await self._response.write(data)
        self._last_sent = self._loop.time()
        if token:
            self._last_token = self._last_sent

    async def wait(self, seconds: float, *, keepalive: bool = True) -> None:
        deadline = self._loop.time() + seconds
        idle = self._plan.idle_close
        idle_deadline = self._last_token + idle if idle is not None else math.inf
        while True:
            now = self._loop.time()
            if now >= idle_deadline:
                raise _IdleClosed
            if now >= deadline:
                return
            if self._request.transport is None or self._request.transport.is_closing():
                raise _ClientGone
            next_ping = self._last_sent + self._plan.keepalive_interval if keepalive else math.inf
            if now >= next_ping:
                await self.write(self._keepalive, token=False)
                continue
            await asyncio.sleep(min(deadline, idle_deadline, next_ping, now + _POLL) - now)

    async def checkpoint(self, sent: int) -> None:
        """Apply the mid-response faults once ``sent`` tokens are out."""
        if sent == self._plan.cut_after_tokens:
            raise _Cut
        if sent == self._plan.stall_after_tokens:
            self.stalled = True
            await self.wait(math.inf, keepalive=False)


async def _finish(request: web.BaseRequest, pacer: _Pacer, record: Record,
                  body: Coroutine[Any, Any, None]) -> None:
    """Run the body writer and turn how it ended into the record's outcome."""
    try:
        await body
        record.outcome = Outcome.OK
    except _Cut:
        record.outcome = Outcome.CUT
        _hang_up(request)
    except _IdleClosed:
        record.outcome = Outcome.IDLE_CLOSED
        _hang_up(request)
    except (_ClientGone, ConnectionError, asyncio.CancelledError) as exc:
        record.outcome = Outcome.STALLED if pacer.stalled else Outcome.DISCONNECTED
        if isinstance(exc, asyncio.CancelledError):
            raise


async def stream(request: web.BaseRequest, gen: Generation, plan: FaultPlan, first_delay: float,
                 record: Record) -> web.StreamResponse:
    """Serve ``gen`` as SSE; HTTP 200 goes out before the first-token wait."""
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    record.status = 200
    pacer = _Pacer(request, response, plan, SSE_KEEPALIVE)

    async def body() -> None:
        await pacer.wait(first_delay)
        step = 0
        while step < gen.steps:
            await pacer.checkpoint(step)
            if step:
                await pacer.wait(plan.token_interval)
            # Unpaced tokens go out in one write (up to the next fault point): same bytes, less CPU.
            end = step + 1 if plan.token_interval else _next_stop(plan, step, gen.steps)
            await pacer.write(b"".join(gen.step_bytes(i) for i in range(step, end)))
            record.tokens = step = end
        await pacer.checkpoint(gen.steps)
        await pacer.write(gen.final_bytes())
        await response.write_eof()

    await _finish(request, pacer, record, body())
    return response


def _next_stop(plan: FaultPlan, step: int, steps: int) -> int:
    """The next token count after ``step`` at which a mid-response fault fires (or ``steps``)."""
    stops = (plan.cut_after_tokens, plan.stall_after_tokens)
    return min([n for n in stops if n is not None and step < n <= steps], default=steps)


def _slow(plan: FaultPlan, gen: Generation, first_delay: float) -> bool:
    return first_delay > 0 or (plan.token_interval > 0 and gen.steps > 1) or any(
        n is not None and n <= gen.steps for n in (plan.cut_after_tokens, plan.stall_after_tokens))


async def respond(request: web.BaseRequest, gen: Generation, plan: FaultPlan, first_delay: float,
                  record: Record) -> web.StreamResponse:
    """Serve ``gen`` as one JSON body. A slow one gets HTTP 200 at once and a blank line every
    ``keepalive_interval`` until the body is ready, like DeepSeek; a fast one is a plain response."""
    record.status = 200
    if not _slow(plan, gen, first_delay):
        record.tokens = gen.steps
        return web.json_response(gen.body())
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    pacer = _Pacer(request, response, plan, BLANK_LINE)
    stops = [n for n in (plan.cut_after_tokens, plan.stall_after_tokens) if n is not None and n <= gen.steps]
    produced = min(stops, default=gen.steps)

    async def body() -> None:
        await pacer.wait(first_delay + max(produced - 1, 0) * plan.token_interval)
        await pacer.checkpoint(produced)
        await pacer.write(json.dumps(gen.body()).encode())
        record.tokens = gen.steps
        await response.write_eof()

    await _finish(request, pacer, record, body())
    return response
