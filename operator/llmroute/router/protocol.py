"""The router's HTTP/1.1 server connections under :class:`llmroute.router.limits.Limits`: deadlines, caps, errors.

aiohttp's server has a keep-alive timer but no deadline for a request head or body, no connection cap, and answers
what its parser refuses with a ``text/plain`` 400 that echoes the offending bytes (a header value, perhaps a key)
and logs them with a traceback. This module puts the missing parts where aiohttp builds connections:

* :class:`GuardedRunner` - an ``AppRunner`` whose server (:class:`GuardedServer`) makes a :class:`GuardedHandler`
  per connection, counts the open ones and keeps those waiting for a request head (accepted, or idle after a
  response) in the order they began waiting. A connection past ``max_connections`` closes the one waiting longest
  (:func:`llmroute.router.limits.evictee`); when none may be closed (every open connection is busy) it gets a fixed
  503 and is closed in ``connection_made``: no task, no parser, no timer; busy connections are not touched.
* :class:`GuardedHandler` - aiohttp's ``RequestHandler`` with one timer per connection, re-armed lazily (an
  attribute write per request; the timer fires at most once per deadline and re-schedules itself when the
  deadline moved). A connection is in one of three phases: HEAD (from ``accept``, or from the first byte after the
  previous request's body, until a head is parsed), BODY (until the body's last byte) and IDLE (the handler runs,
  then aiohttp's keep-alive timer, ``idle_timeout_s``, applies). The head deadline closes the connection; the
  body deadline makes the body read raise :class:`BodyTimeout` (the handler answers 408; the connection is closed
  after it) or closes the connection when no handler reads it. A head larger than ``max_head_bytes`` in total is
  answered 431 and closed.
* Errors: what the parser refuses (smuggling shapes, bad chunk sizes, obs-fold, bare LF, NUL, long lines, too many
  headers) and any ``HTTPException`` aiohttp raises are answered in OpenAI's error shape with ``Server: llmroute``,
  naming the rule broken, never the bytes; parse errors are logged at debug level by class name only.
* Metrics: each refusal and deadline counts once in ``llmroute_client_rejections_total{reason}``
  (:class:`llmroute.router.metrics.Rejection`), where it happens; the open connections are read at scrape time.

Relies on these ``RequestHandler`` internals of aiohttp 3.14 (``tests/router/test_hostile.py`` fails if they
change): ``_request_count`` (messages parsed), ``_messages`` (their queue), ``_request_in_progress``,
``_lingering_time``, ``_ErrInfo`` (a queued parse error), ``_process_keepalive`` (the idle timer's callback) and
``log_access`` being called once each response is written; and on ``Server._kwargs`` to copy the handler
settings. Built by :mod:`llmroute.router.server`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Coroutine
from http import HTTPStatus
from itertools import islice
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from llmroute.router import metrics
from llmroute.router.limits import (
    Limits,
    body_timeout,
    evictee,
    head_too_large,
    http_status,
    internal_error,
    malformed,
    too_many_connections,
    undecodable_body,
    url_too_long,
)
from llmroute.router.metrics import Rejection
from llmroute.router.openai_errors import RouterError

log = logging.getLogger("llmroute.router.protocol")

SERVER_NAME = "llmroute"
_IDLE, _HEAD, _BODY = 0, 1, 2
WARN_EVERY_S = 60.0
_TOO_MANY_HEADERS = "Too many headers received"
_REASON_END = re.compile(r":\s|:$|\n")
_QUOTED_TAIL = re.compile(r"\s+b?(['\"]).*\1\.?$")  # the offending input, quoted at the end
_STATUS_REJECTIONS = {400: Rejection.BAD_REQUEST, 413: Rejection.BODY_TOO_LARGE, 417: Rejection.EXPECTATION_FAILED}
"""What an error aiohttp raised by status counts as (others, e.g. 404 for a path not in origin form, are routing)."""


class BodyTimeout(Exception):
    """The request body did not arrive within ``body_timeout_s`` of its head; raised by the body read."""

    def __init__(self, error: RouterError) -> None:
        super().__init__(error.message)
        self.error = error


_CLIENT_FAULTS = (ConnectionError, RequestPayloadError, BodyTimeout)


def raw_response(error: RouterError) -> bytes:
    """``error`` as a whole HTTP/1.1 response that closes the connection, for when no handler can answer."""
    body = error.body()
    extra = "".join(f"{k}: {v}\r\n" for k, v in error.headers.items())
    head = (
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nServer: {SERVER_NAME}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


def json_response(error: RouterError) -> web.Response:
    return web.Response(
        status=error.status,
        body=error.body(),
        content_type="application/json",
        headers={**error.headers, "Server": SERVER_NAME},
    )


def _reason(exc: BaseException | None) -> str:
    """The rule a parse error names (``Duplicate Content-Length``), cut before any quoted input."""
    message = exc.message if isinstance(exc, HttpProcessingError) else ""
    reason = _QUOTED_TAIL.sub("", _REASON_END.split(str(message), maxsplit=1)[0]).strip(" .")
    return reason[:80] or "malformed request"


def _head_size(msg: RawRequestMessage) -> int:
    """The bytes of a parsed request head, give or take the spaces around header values."""
    line = len(msg.method) + len(msg.path) + len("  HTTP/1.1\r\n\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in msg.raw_headers)


class GuardedServer(web.Server):
    """aiohttp's ``Server`` making :class:`GuardedHandler` connections, counting the open ones."""

    def __init__(self, *args: Any, limits: Limits, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.max_connections = max_connections
        self.open = 0
        self.waiting: OrderedDict[GuardedHandler, float] = OrderedDict()  # waiting for a head, since; oldest first
        self.refused = 0  # connections refused since the last warning
        self.evicted = 0  # waiting connections closed to admit new ones since the last warning
        self._warned_at: float | None = None
        self.refusal = raw_response(too_many_connections(max_connections))
        metrics.track_client_connections(lambda: self.open)

    def make_room(self, now: float) -> bool:
        """At the cap: close the connection waiting longest for a request head (True), or count a refusal (False).
        ``waiting`` is in the order connections began waiting, so its first entry decides."""
        victim = evictee(islice(self.waiting.items(), 1), now)
        if victim is not None:
            victim.evict()
            self.evicted += 1
            metrics.client_rejected(Rejection.EVICTED)
        else:
            self.refused += 1
            metrics.client_rejected(Rejection.CONNECTION_CAP)
        self._warn(now)
        return victim is not None

    def _warn(self, now: float) -> None:
        """Warn on the first eviction or refusal, then at most every :data:`WARN_EVERY_S` (a flood must not become a
        flood of log lines)."""
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
            log.warning(
                "at the limit of %d open connections: closed %d waiting for a request to admit new ones, "
                "refused %d new ones (503) while all were busy",
                self.max_connections,
                self.evicted,
                self.refused,
            )
            self._warned_at, self.refused, self.evicted = now, 0, 0

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """``AppRunner`` whose connections are :class:`GuardedHandler`; the head limits go to aiohttp's parser."""

    __slots__ = ("_limits", "_max_connections")

    def __init__(self, app: web.Application, limits: Limits, max_connections: int, **kwargs: Any) -> None:
        super().__init__(
            app,
            keepalive_timeout=limits.idle_timeout_s,
            max_line_size=limits.max_url_bytes,
            max_field_size=limits.max_head_bytes,
            max_headers=limits.max_headers,
            **kwargs,
        )
        self._limits = limits
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        return GuardedServer(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=asyncio.get_running_loop(),
            limits=self._limits,
            max_connections=self._max_connections,
            **base._kwargs,
        )


class GuardedHandler(RequestHandler):
    """One client connection with head/body deadlines and a head size limit (see the module docstring)."""

    __slots__ = (
        "_body",
        "_deadline",
        "_evicted",
        "_guard",
        "_head_bytes",
        "_max_head",
        "_parsed",
        "_phase",
        "_refused",
        "_timer",
        "_timer_at",
    )

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._phase = _HEAD
        self._deadline = 0.0  # loop time the current phase must end by; 0: none
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._parsed = 0  # messages parsed so far (aiohttp's _request_count when last seen)
        self._body: StreamReader | None = None
        self._head_bytes = 0
        self._refused = False
        self._evicted = False
        self._max_head = manager.limits.max_head_bytes

    # --- connection lifecycle -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        now = self._loop.time()
        if guard.open >= guard.max_connections and not guard.make_room(now):
            self._refused = True
            cast(asyncio.Transport, transport).write(guard.refusal)
            transport.close()
            return
        guard.open += 1
        guard.waiting[self] = now
        super().connection_made(transport)
        self._start_head(now)

    def evict(self) -> None:
        """Close this connection (waiting for a request head) to admit a new one; its slot is free at once."""
        log.debug("closing a connection waiting for a request head to admit a new one at the connection cap")
        self._evicted = True
        self._guard.open -= 1
        self._guard.waiting.pop(self, None)
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        guard = self._guard
        if not self._evicted:
            guard.open -= 1
        guard.waiting.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._body = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase != _BODY and data:  # aiohttp re-parses its buffer with b"" after a pause: not a new head
            if self._phase == _IDLE:
                self._start_head(self._loop.time())
            self._head_bytes += len(data)
        super().data_received(data)
        if self._request_count != self._parsed:
            if self._head_bytes > self._max_head:
                self._check_head_sizes(self._request_count - self._parsed)
            self._parsed = self._request_count
            self._on_head(self._messages[-1][1])
        elif self._phase == _HEAD:
            if self._head_bytes > self._max_head:
                self._refuse_head()
        elif self._phase == _BODY and self._body is not None and self._body.is_eof():
            self._phase, self._deadline, self._body = _IDLE, 0.0, None

    # --- phases ---------------------------------------------------------------------------------------------------

    def _start_head(self, now: float) -> None:
        self._phase, self._head_bytes = _HEAD, 0
        self._arm(now + self._guard.limits.head_timeout_s)

    def _on_head(self, payload: StreamReader) -> None:
        self._guard.waiting.pop(self, None)
        if payload.is_eof():
            self._phase, self._deadline, self._body = _IDLE, 0.0, None
        else:
            self._phase, self._body = _BODY, payload
            self._arm(self._loop.time() + self._guard.limits.body_timeout_s)

    def _arm(self, deadline: float) -> None:
        self._deadline = deadline
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # fires first, then re-schedules itself for the later deadline
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if not deadline or self.transport is None:
            return
        if self._loop.time() < deadline:
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self._deadline = 0.0
        if self._phase == _HEAD:
            log.debug(
                "closing a connection whose request head did not arrive within %gs", self._guard.limits.head_timeout_s
            )
            metrics.client_rejected(Rejection.HEAD_TIMEOUT)
            self.force_close()
        elif self._phase == _BODY and self._body is not None and not self._body.is_eof():
            self._expire_body(self._body)

    def _expire_body(self, body: StreamReader) -> None:
        log.debug("request body did not arrive within %gs", self._guard.limits.body_timeout_s)
        metrics.client_rejected(Rejection.BODY_TIMEOUT)
        self._phase, self._body = _IDLE, None
        if self._request_in_progress:
            self._lingering_time = 0.0  # nothing more is read from this connection: close it after the 408
            body.set_exception(BodyTimeout(body_timeout(self._guard.limits.body_timeout_s)))
        else:
            self.force_close()

    def _process_keepalive(self) -> None:
        """aiohttp's idle timer: counted when it closes the connection (a head begun late in the idle time is cut
        by it too, and counted as a head timeout)."""
        open_before = not self._force_close
        super()._process_keepalive()
        if open_before and self._force_close:
            metrics.client_rejected(Rejection.HEAD_TIMEOUT if self._phase == _HEAD else Rejection.IDLE_TIMEOUT)

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse, time: float | None) -> None:
        """A response was written: unless another request is queued, the connection waits for one from now."""
        super().log_access(request, response, time)
        if not self._messages:
            waiting = self._guard.waiting
            waiting.pop(self, None)
            waiting[self] = self._loop.time()

    def _check_head_sizes(self, parsed: int) -> None:
        """Heads parsed from a read larger than ``max_head_bytes`` (which may hold body bytes too): each one over the
        limit becomes a 431 in the queue, in its place."""
        limit = self._guard.limits.max_head_bytes
        queue = self._messages
        for i in range(max(0, len(queue) - parsed), len(queue)):
            msg = queue[i][0]
            if isinstance(msg, RawRequestMessage) and _head_size(msg) > limit:
                queue[i] = (_ErrInfo(status=431, exc=LineTooLong(b"", limit), message=""), EMPTY_PAYLOAD)

    def _refuse_head(self) -> None:
        log.debug("refusing a request head over %d bytes", self._guard.limits.max_head_bytes)
        if self.transport is not None:
            metrics.client_rejected(Rejection.HEAD_TOO_LARGE)
        if self.transport is not None and not self._request_in_progress and not self._messages:
            self.transport.write(raw_response(head_too_large(self._guard.limits.max_head_bytes, "bytes")))
        self.force_close()

    # --- errors ---------------------------------------------------------------------------------------------------

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """What aiohttp's parser refused (or a handler's crash), answered in OpenAI's error shape."""
        if status == 500:
            self.log_exception("error handling a request", exc_info=exc)
        else:
            log.debug("refused a malformed request (%s)", type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started; the connection is closed instead")
        error, reason = self._parse_error(status, exc)
        if reason is not None:
            metrics.client_rejected(reason)
        response = json_response(error)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """Tracebacks for the router's own faults only: what a client did (left, sent a broken body, was too slow)
        is a debug line naming the exception's class, never its text (which may quote the client's bytes)."""
        exc = kw.get("exc_info")
        if isinstance(exc, _CLIENT_FAULTS):
            log.debug("connection ended by the client's fault (%s)", type(exc).__name__)
            return
        super().log_exception(*args, **kw)

    def _parse_error(self, status: int, exc: BaseException | None) -> tuple[RouterError, Rejection | None]:
        """The answer to what the parser refused, and the reason it is counted under (None: the router's fault)."""
        limits = self._guard.limits
        if isinstance(exc, RequestPayloadError):
            return undecodable_body(), Rejection.BAD_REQUEST
        if status == 500:
            return internal_error(), None
        if isinstance(exc, LineTooLong):  # args: line, limit (the URL's is below the head's: Limits)
            if exc.args[1:2] == (limits.max_url_bytes,):
                return url_too_long(limits.max_url_bytes), Rejection.URL_TOO_LONG
            return head_too_large(limits.max_head_bytes, "bytes"), Rejection.HEAD_TOO_LARGE
        if isinstance(exc, HttpProcessingError) and exc.message == _TOO_MANY_HEADERS:
            return head_too_large(limits.max_headers, "header fields"), Rejection.TOO_MANY_HEADERS
        if status == 400:
            return malformed(_reason(exc)), Rejection.BAD_REQUEST
        return http_status(status, HTTPStatus(status).phrase), _STATUS_REJECTIONS.get(status)

    def finish_response(  # returns the awaitable: no extra coroutine per request
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        """``Server: llmroute`` on every response (not aiohttp's ``Python/3.x aiohttp/3.y``: versions help only an
        attacker; a stream prepared by its handler has it already), and aiohttp's own ``HTTPException`` responses
        (a path not in origin form, an unmet ``Expect``) in OpenAI's error shape; the refusals among them, and the
        route's 413, counted."""
        if not resp.prepared:
            resp.headers["Server"] = SERVER_NAME
        status = resp.status
        if status >= 400:
            if isinstance(resp, web.HTTPException):
                resp = json_response(http_status(status, resp.reason))
                if (reason := _STATUS_REJECTIONS.get(status)) is not None:
                    metrics.client_rejected(reason)
            elif status == 413:
                metrics.client_rejected(Rejection.BODY_TOO_LARGE)
        return super().finish_response(request, resp, start_time)
