"""The router's HTTP/1.1 server: requests parsed by llhttp (``httptools``, as uvicorn does), one :class:`Connection`
per client under :class:`llmroute.router.limits.Limits`, every refusal answered in OpenAI's error shape.

Why its own server: aiohttp's cost 0.07-0.1 ms of CPU per request on the benchmark machine, a third of what the
router adds to a short answer (issue #13, ``tests/benchmarks/bench_router.py``), and it has no deadline for a head or
a body and no connection cap, which had to be grafted onto its private internals. llhttp is the parser Node.js and
aiohttp themselves use; this module owns only framing around it: keep-alive, pipelining in order, deadlines, caps,
bodies (chunked, gzip/deflate), ``Expect: 100-continue``, responses and the drain.

* :class:`HttpServer` - the protocol factory for ``loop.create_server``: counts the open connections and keeps those
  waiting for a request head in the order they began waiting, in two sets: accepted and not yet sent a whole head
  (``fresh``), and idle after an answer (``idle``). A connection past ``max_connections`` closes the fresh one
  waiting longest, else the one idle longest (:func:`llmroute.router.limits.evictee_at_cap`: a client between two
  requests keeps its connection while half heads hold slots); when none may be closed it gets a fixed 503 and is
  closed at once: no parser, no timer; busy connections are not touched. :meth:`HttpServer.shutdown` drains: idle
  connections close at once, busy ones after their response, what is left when the timeout passes is cut.
* :class:`Connection` - one timer, re-armed lazily (:class:`llmroute.router.deadline.Deadline`: an attribute write
  per request; the timer fires at most once per deadline and re-schedules itself when the deadline moved). Where
  the parser is decides the deadline: in a HEAD (from ``accept``, or from the first byte after the previous
  message) ``head_timeout_s`` closes the connection; in a BODY ``body_timeout_s`` makes the body's read raise
  :class:`BodyTimeout` (the handler answers 408, the connection closes); between messages with nothing to serve
  (IDLE) ``idle_timeout_s`` closes it. A handler is started when its head is complete (a refusal, such as a 401,
  needs no body); requests pipelined behind it are parsed ahead and served in order. A head over
  ``max_head_bytes``, ``max_headers`` or ``max_url_bytes`` gets 431/414.
* Errors: what llhttp refuses (smuggling shapes, bad chunk sizes, obs-fold, bare LF or CR, NUL, invalid methods)
  gets a 400 naming the rule llhttp names, never the bytes; then nothing more is read from the connection and it
  is closed. A refusal that leaves body bytes unread closes *lingering*: the answer is sent with
  ``Connection: close``, the write side shut, and what still arrives is dropped for up to :data:`LINGER_S`, so the
  client reads its answer instead of a reset.
* Metrics: each refusal and deadline counts once in ``llmroute_client_rejections_total{reason}``
  (:class:`llmroute.router.metrics.Rejection`), where it happens; the open connections are read at scrape time.

Handlers (:data:`Handler`, see :mod:`llmroute.router.app`) get a :class:`Request` and return a :class:`Response`,
or None after streaming one (:meth:`Request.start_stream`, :meth:`Request.write`, :meth:`Request.end_stream`).
Built by :mod:`llmroute.router.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from itertools import islice
from typing import Any, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from llmroute.router import metrics
from llmroute.router.deadline import Deadline
from llmroute.router.limits import (
    Limits,
    body_timeout,
    evictee_at_cap,
    head_too_large,
    http_status,
    internal_error,
    malformed,
    too_many_connections,
    url_too_long,
)
from llmroute.router.metrics import Rejection
from llmroute.router.openai_errors import RouterError

log = logging.getLogger("llmroute.router.http")

SERVER_NAME = "llmroute"
WARN_EVERY_S = 60.0
LINGER_S = 2.0
"""After a refusal that leaves request bytes unread: how long what still arrives is read and dropped before the
connection is closed (closing at once would reset it, and the client could lose the answer)."""
MAX_PIPELINE = 16
"""Requests parsed ahead of the one being served before the connection stops reading."""
MAX_BODY = 256 * 1024 * 1024
"""The most a body may hold before its handler sets the route's limit (the largest ``maxRequestBytes``)."""
_WAIT, _HEAD, _BODY = 0, 1, 2
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + zlib.MAX_WBITS}
"""Content-Encoding -> zlib window bits (deflate: zlib-wrapped, as RFC 9110 defines it, or gzip)."""


class BodyTimeout(Exception):
    """The request body did not arrive within ``body_timeout_s`` of its head; raised by :meth:`Request.read`."""

    def __init__(self, error: RouterError) -> None:
        super().__init__(error.message)
        self.error = error


class BodyTooLarge(Exception):
    """The body (decoded) passed the limit its handler read it with."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(size, limit)
        self.size, self.limit = size, limit


class BadBody(Exception):
    """The body's chunked framing or ``Content-Encoding`` is broken."""


class ClientClosed(ConnectionError):
    """The client closed its connection before the end of the request body, or during the response."""


class Response:
    """A complete response. ``close``: the connection ends after it (a body was left unread)."""

    __slots__ = ("body", "close", "content_type", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", content_type: str = "application/json",
                 headers: Mapping[str, str] | None = None, close: bool = False) -> None:
        self.status, self.body, self.content_type, self.headers, self.close = status, body, content_type, headers, close

    @classmethod
    def error(cls, error: RouterError, *, close: bool = False) -> Response:
        return cls(error.status, error.body(), "application/json", error.headers or None, close)


Handler = Callable[["Request"], Awaitable[Response | None]]
"""Serves one request: its response, or None when it streamed one (or the client left before anything was sent)."""


def raw_response(error: RouterError) -> bytes:
    """``error`` as a whole HTTP/1.1 response that closes the connection, for when no handler can answer."""
    body = error.body()
    return _head(error.status, "application/json", len(body), error.headers, close=True) + body


class Request:
    """One request as its handler sees it: head parsed, body arriving (:meth:`read`)."""

    __slots__ = ("_complete", "_conn", "_continue", "_error", "_inflate", "_limit", "_parts", "_size", "_waiter",
                 "chunked", "content_length", "head", "headers", "identity", "keep_alive", "method", "path",
                 "streaming", "version")

    def __init__(self, conn: Connection, method: str, path: str, headers: CIMultiDictProxy[str], version: str,
                 keep_alive: bool, content_length: int | None, chunked: bool, inflate: Any, expect: bool) -> None:
        self._conn = conn
        self.method, self.path, self.headers, self.version = method, path, headers, version
        self.keep_alive, self.content_length, self.chunked = keep_alive, content_length, chunked
        self.head = method == "HEAD"
        self.identity: str | None = None  # the caller, when the route checks who calls (llmroute.router.auth)
        self.streaming = False  # a streamed response was started
        self._inflate = inflate
        self._continue = expect
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = min(conn.server.body_limit(), MAX_BODY)
        self._complete = not chunked and not content_length
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def body_exists(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def gone(self) -> bool:
        """The client closed its connection (checked while a request is held, before anything is sent)."""
        return self._conn.gone

    async def read(self, limit: int = MAX_BODY) -> bytes:
        """The whole body, decoded, once it arrived; raises :class:`BodyTooLarge` past ``limit`` (without reading
        the rest), :class:`BodyTimeout`, :class:`BadBody` or :class:`ClientClosed`."""
        self._limit = min(limit, MAX_BODY)
        if self._size > self._limit:
            raise BodyTooLarge(self._size, self._limit)
        if self._continue:
            self._continue = False
            if not self._complete and self._error is None and not self._size:
                self._conn.write(_CONTINUE)
        while not self._complete and self._error is None:
            self._waiter = self._conn.loop.create_future()
            await self._waiter
        if self._error is not None:
            raise self._error
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # --- the streamed response (a ClientSink's primitives: llmroute.router.app)

    def start_stream(self, status: int, content_type: str, headers: Mapping[str, str], first: bytes = b"") -> None:
        """Send the head (and ``first`` with it: one send); HTTP/1.1 chunked, HTTP/1.0 delimited by the close."""
        self.streaming = True
        conn = self._conn
        chunked = self.version == "1.1"
        if not chunked:
            conn.closing = True
        head = _head(status, content_type, None if chunked else -1, headers, close=conn.closing or not chunked)
        conn.write(head + (_chunk(first) if chunked else first) if first else head)

    async def write(self, data: bytes) -> None:
        """Send ``data`` now (waits while the client reads slower than we write); raises :class:`ClientClosed`."""
        conn = self._conn
        if conn.gone:
            raise ClientClosed("the client closed the connection")
        conn.write(_chunk(data) if self.version == "1.1" else data)
        if conn.write_paused:
            await conn.drain()

    async def flush(self) -> None:
        """Wait while the client reads slower than we write; raises :class:`ClientClosed`."""
        if self._conn.write_paused:
            await self._conn.drain()

    def end_stream(self) -> None:
        if self._conn.gone:
            raise ClientClosed("the client closed the connection")
        if self.version == "1.1":
            self._conn.write(b"0\r\n\r\n")

    # --- fed by the connection

    def _feed(self, data: bytes) -> bool:
        """Body bytes arrived; False: stop reading (the body broke a rule)."""
        if self._error is not None:
            return False
        if self._inflate is not None:
            try:
                data = self._inflate.decompress(data, self._limit - self._size + 1)
                while self._inflate.unconsumed_tail and self._size + len(data) <= self._limit:
                    data += self._inflate.decompress(self._inflate.unconsumed_tail,
                                                     self._limit - self._size - len(data) + 1)
            except zlib.error:
                metrics.client_rejected(Rejection.BAD_REQUEST)
                self._fail(BadBody("the body's Content-Encoding is broken"))
                return False
        self._size += len(data)
        if self._size > self._limit:
            self._fail(BodyTooLarge(self._size, self._limit))
            return False
        if data:
            self._parts.append(data)
        return True

    def _finish(self) -> None:
        self._complete = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None and not self._complete:
            self._error = exc
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)


class _Refusal:
    """A refusal queued in its place among pipelined requests: answered in turn, then the connection closes."""

    __slots__ = ("error",)

    def __init__(self, error: RouterError) -> None:
        self.error = error


class _Abort(Exception):
    """Raised in a parser callback to stop parsing (the reason is already recorded)."""


class HttpServer:
    """The protocol factory: the open connections, the ones waiting for a head (fresh and idle, oldest first), the
    drain."""

    def __init__(self, handler: Handler, limits: Limits, max_connections: int,
                 body_limit: Callable[[], int] = lambda: MAX_BODY) -> None:
        self.handler = handler
        self.body_limit = body_limit  # the route's maxRequestBytes now: what a body may hold before its handler reads
        self.limits = limits
        self.max_headers, self.max_head = limits.max_headers, limits.max_head_bytes  # (read for every header)
        self.max_connections = max_connections
        self.loop = asyncio.get_running_loop()
        self.open = 0
        self.connections: set[Connection] = set()
        self.fresh: OrderedDict[Connection, float] = OrderedDict()  # accepted, no whole head yet: since, oldest first
        self.idle: OrderedDict[Connection, float] = OrderedDict()  # answered, waiting for the next head: since
        self.draining = False
        self.refused = 0  # connections refused since the last warning
        self.evicted = 0  # waiting connections closed to admit new ones since the last warning
        self._warned_at: float | None = None
        self.refusal = raw_response(too_many_connections(max_connections))
        self.closed = asyncio.Event()
        metrics.track_client_connections(lambda: self.open)

    def __call__(self) -> Connection:
        return Connection(self)

    def make_room(self, now: float) -> bool:
        """At the cap: close a connection waiting for a request head (True), or count a refusal (False). ``fresh`` and
        ``idle`` are each in the order connections began waiting, so their first entries decide."""
        victim = evictee_at_cap(islice(self.fresh.items(), 1), islice(self.idle.items(), 1), now)
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

    async def shutdown(self, timeout_s: float) -> None:
        """Stop serving (the listener is closed already): idle connections close now, busy ones after their
        response; after ``timeout_s`` what is left is cut and its handlers cancelled."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain_or_close()
        if self.connections:
            self.closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), timeout_s)
        tasks = [t for conn in list(self.connections) if (t := conn.abort()) is not None]
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    def _gone(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self.closed.set()


class Connection(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    __slots__ = ("_cut", "_deadline", "_drain_waiter", "_evicted", "_handoff", "_head_bytes", "_head_size",
                 "_headers", "_parsing", "_ready", "_refused", "_stopped", "_url", "_working", "closing", "current",
                 "lingering", "loop", "parser", "phase", "queue", "reading_paused", "server", "task", "transport",
                 "write_paused")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.phase = _HEAD
        self._deadline = Deadline(self.loop, self._expired)  # the current phase's (``at`` 0: none)
        self._head_bytes = 0  # bytes read while a head was incomplete (a head that never ends)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._parsing: Request | None = None  # the request whose body is being parsed
        self._stopped = False  # nothing more is parsed from this connection
        self.queue: deque[Request | _Refusal] = deque()  # parsed, waiting for the one being served
        self.current: Request | _Refusal | None = None
        self.task: asyncio.Task[None] | None = None  # the worker serving this connection's requests in turn
        self._working = False  # the worker is serving a request
        self._handoff: Request | None = None  # the next request, handed to the worker while it finishes one
        self._ready: asyncio.Future[Request | None] | None = None  # the idle worker waits on this
        self.closing = False  # no request after the one being served: close after its response
        self.lingering = False
        self.reading_paused = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._evicted = False
        self._refused = False
        self._cut = False  # too slow a body: closed after its 408 without lingering

    @property
    def gone(self) -> bool:
        transport = self.transport
        return transport is None or transport.is_closing()

    # --- connection lifecycle -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self.server
        now = self.loop.time()
        t = cast(asyncio.Transport, transport)
        if server.open >= server.max_connections and not server.make_room(now):
            self._refused = True
            t.write(server.refusal)
            t.close()
            return
        self.transport = t
        server.open += 1
        server.connections.add(self)
        server.fresh[self] = now
        self._deadline.arm(now + server.limits.head_timeout_s)

    def evict(self) -> None:
        """Close this connection (waiting for a request head) to admit a new one; its slot is free at once."""
        log.debug("closing a connection waiting for a request head to admit a new one at the connection cap")
        self._evicted = True
        self.server.open -= 1
        self._not_waiting()
        self._close()

    def _not_waiting(self) -> None:
        """This connection no longer waits for a head (it has one, is refused, closed or evicted)."""
        server = self.server
        server.fresh.pop(self, None)
        server.idle.pop(self, None)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        server = self.server
        if not self._evicted:
            server.open -= 1
        self._not_waiting()
        self._deadline.cancel()
        if self._parsing is not None:
            self._parsing._fail(ClientClosed("the client closed the connection before the body's end"))
            self._parsing = None
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)  # the idle worker ends
        self._ready = None
        self.transport = None
        self._stopped = True
        server._gone(self)

    def eof_received(self) -> bool:
        """The client closed its side: the connection ends (a client that half-closes and still reads is not an HTTP
        client: a request held for a starting pool must learn that its client left)."""
        if self._parsing is not None:
            self._parsing._fail(ClientClosed("the client closed the connection before the body's end"))
            self._parsing = None
        self.closing = True
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    async def drain(self) -> None:
        while self.write_paused and not self.gone:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter
        if self.gone:
            raise ClientClosed("the client closed the connection")

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- reading --------------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return  # lingering, or after a refusal: dropped
        if self.phase == _WAIT:
            self._start_head(self.loop.time())
        began = self.phase == _HEAD and self._head_bytes == 0
        completed = self.current is not None or bool(self.queue)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # CONNECT or an Upgrade: served as a request, then nothing more
            self._stopped, self.closing = True, True
        except httptools.HttpParserCallbackError as exc:
            if not self._stopped:  # a callback failed on its own (a bug): answered 500
                log.error("error parsing a request: %s", type(exc.__context__).__name__)
                self._refuse(internal_error(), None)
        except httptools.HttpParserError as exc:
            log.debug("refused a malformed request (%s)", type(exc).__name__)
            self._refuse(malformed(_reason(exc)), Rejection.BAD_REQUEST)
        else:
            if self.phase == _HEAD:
                # a head still incomplete: count what this read brought it (all of it, unless a message ended in it:
                # then its part is less than one read, and the next reads count)
                if not began or (self.current is None and not self.queue) or completed:
                    self._head_bytes += len(data)
                if self._head_bytes > self.server.limits.max_head_bytes:
                    self._refuse(head_too_large(self.server.limits.max_head_bytes, "bytes"),
                                 Rejection.HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        if self.phase != _HEAD:
            self._start_head(self.loop.time())
        self._url, self._headers, self._head_size = b"", [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        limit = self.server.limits.max_url_bytes
        if len(self._url) > limit:
            self._abort(url_too_long(limit), Rejection.URL_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if len(headers) > self.server.max_headers or self._head_size + len(self._url) > self.server.max_head:
            limits = self.server.limits
            if len(headers) > limits.max_headers:
                self._abort(head_too_large(limits.max_headers, "header fields"), Rejection.TOO_MANY_HEADERS)
            self._abort(head_too_large(limits.max_head_bytes, "bytes"), Rejection.HEAD_TOO_LARGE)

    def on_headers_complete(self) -> None:
        parser = self.parser
        headers = CIMultiDictProxy(CIMultiDict(
            [(name.decode("latin-1"), value.decode("utf-8", "surrogateescape")) for name, value in self._headers]))
        self._headers = []
        coding = headers.get("Content-Encoding")
        if coding is not None:
            coding = coding.strip().lower()
            if coding not in _DECODERS and coding != "identity":
                self._abort(http_status(415, "Unsupported Media Type"), Rejection.BAD_REQUEST)
        expect = headers.get("Expect")
        if expect is not None and expect.strip().lower() != "100-continue":
            self._abort(http_status(417, "Expectation Failed"), Rejection.EXPECTATION_FAILED)
        length = headers.get("Content-Length")
        chunked = "Transfer-Encoding" in headers  # llhttp refuses any other coding, and it with a Content-Length
        request = Request(
            self, parser.get_method().decode("ascii"), _path(self._url), headers, parser.get_http_version(),
            parser.should_keep_alive(), int(length) if length is not None else None, chunked,
            zlib.decompressobj(_DECODERS[coding]) if coding in _DECODERS else None, expect is not None)
        self._not_waiting()
        if request._complete:
            self.phase, self._deadline.at = _WAIT, 0.0
        else:
            self.phase, self._parsing = _BODY, request
            self._deadline.arm(self.loop.time() + self.server.limits.body_timeout_s)
        self._enqueue(request)

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        if request is not None and not request._feed(body):
            self._stopped = True
            self._pause_reading()
            raise _Abort

    def on_message_complete(self) -> None:
        request = self._parsing
        if request is not None:
            request._finish()
            self._parsing = None
        self.phase, self._deadline.at = _WAIT, 0.0

    def _abort(self, error: RouterError, reason: Rejection | None) -> None:
        self._refuse(error, reason)
        raise _Abort

    def _refuse(self, error: RouterError, reason: Rejection | None) -> None:
        """Answer ``error`` in its turn and read nothing more from this connection."""
        if self._stopped:
            return
        self._stopped = True
        if reason is not None:
            metrics.client_rejected(reason)
        self._not_waiting()
        self.phase, self._deadline.at = _WAIT, 0.0
        if self._parsing is not None:
            self._parsing._fail(BadBody("the body's chunked framing is broken"))
            self._parsing = None
            return  # its handler answers (it reads the body)
        self._enqueue(_Refusal(error))

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    # --- phases ---------------------------------------------------------------------------------------------------

    def _start_head(self, now: float) -> None:
        self.phase, self._head_bytes = _HEAD, 0
        self._deadline.arm(now + self.server.limits.head_timeout_s)

    def _expired(self) -> None:
        """The current phase's deadline passed."""
        if self.transport is None:
            return
        limits = self.server.limits
        if self.lingering:
            self._close()
        elif self.phase == _HEAD:
            log.debug("closing a connection whose request head did not arrive within %gs", limits.head_timeout_s)
            metrics.client_rejected(Rejection.HEAD_TIMEOUT)
            self._close()
        elif self.phase == _BODY and self._parsing is not None:
            log.debug("request body did not arrive within %gs", limits.body_timeout_s)
            metrics.client_rejected(Rejection.BODY_TIMEOUT)
            request, self._parsing = self._parsing, None
            self._stopped, self.closing, self._cut = True, True, True
            if request is self.current:
                request._fail(BodyTimeout(body_timeout(limits.body_timeout_s)))  # its handler answers 408
            else:
                self._close()
        elif self.current is None and not self.queue:
            metrics.client_rejected(Rejection.IDLE_TIMEOUT)
            self._close()

    # --- serving --------------------------------------------------------------------------------------------------

    def _enqueue(self, item: Request | _Refusal) -> None:
        if self.current is None:
            self._serve(item)
        else:
            self.queue.append(item)
            if len(self.queue) >= MAX_PIPELINE:
                self._pause_reading()

    def _serve(self, item: Request | _Refusal) -> None:
        """Serve ``item`` now: a refusal is answered at once; a request goes to the connection's worker task, which
        serves its requests one after the other (one task per connection, not per request)."""
        self.current = item
        if isinstance(item, _Refusal):
            self._respond(None, Response.error(item.error, close=True))
            self._done(None, True)
        elif self._working:
            self._handoff = item  # the worker is finishing the previous one: it takes this one next
        elif self._ready is not None:
            ready, self._ready = self._ready, None
            ready.set_result(item)
        else:
            self.task = self.loop.create_task(self._work(item))

    async def _work(self, request: Request | None) -> None:
        while request is not None:
            self._working = True
            try:
                await self._run(request)
            finally:
                self._working = False
            request, self._handoff = self._handoff, None
            if request is None and self.transport is not None and not self.transport.is_closing():
                self._ready = self.loop.create_future()
                request = await self._ready
        self.task = None

    async def _run(self, request: Request) -> None:
        try:
            response = await self.server.handler(request)
        except Exception:
            log.exception("error handling a request")
            response = None if request.streaming else Response.error(internal_error(), close=True)
            if response is None:
                self.closing = True
        if response is not None:
            self._respond(request, response)
        elif not request.streaming:
            self.closing = True  # nothing was answered (the client left): nobody reads this connection
        self._done(request, response is not None and response.close)

    def _respond(self, request: Request | None, response: Response) -> None:
        close = response.close or self.closing or self.server.draining or (
            request is not None and (not request.keep_alive or not request._complete))
        if close:
            self.closing = True
        if response.status == 413:
            metrics.client_rejected(Rejection.BODY_TOO_LARGE)
        body = response.body
        head = _head(response.status, response.content_type, len(body), response.headers, close=close)
        self.write(head if request is not None and request.head else head + body)

    def _done(self, request: Request | None, close: bool) -> None:
        """The response to ``current`` was written: serve the next request, wait for one, or close."""
        self.current = None
        if request is not None and not request._complete:
            close = True  # its body was not read to its end: the connection cannot carry another request
        if close or self.closing:
            if self._cut or (request is not None and request._complete):
                self._close()
            else:
                self._linger()
            return
        if self.queue:
            item = self.queue.popleft()
            if len(self.queue) < MAX_PIPELINE // 2:
                self._resume_reading()
            self._serve(item)
            return
        self._resume_reading()
        if self.phase == _WAIT:
            now = self.loop.time()
            idle = self.server.idle
            idle.pop(self, None)
            idle[self] = now
            self._deadline.arm(now + self.server.limits.idle_timeout_s)

    def _linger(self) -> None:
        """Close after the answer without resetting the connection: shut the write side, drop what still arrives
        until the client closes or :data:`LINGER_S` passes."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.lingering, self._stopped = True, True
        if self._parsing is not None:
            self._parsing = None
        if transport.can_write_eof():
            transport.write_eof()
        self._resume_reading()
        self._deadline.arm(self.loop.time() + LINGER_S)

    # --- the drain ------------------------------------------------------------------------------------------------

    def drain_or_close(self) -> None:
        """The server drains: an idle connection (or one waiting for a head) closes now, a busy one after its
        response."""
        self.closing = True
        if self.current is None and not self.queue:
            self._close()

    def abort(self) -> asyncio.Task[None] | None:
        """Cut the connection (the drain timed out); returns its handler, cancelled, to await."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
        if self.transport is not None:
            self.transport.abort()
        return task


def _path(url: bytes) -> str:
    """The path of a request target: origin form (``/v1/models?x``), absolute form (its path; the host steers
    nothing) or another form (``*``, ``host:port``: routed to nothing, a 404)."""
    if url[:1] != b"/" and url[:8].lower().startswith((b"http://", b"https://")):
        parsed = httptools.parse_url(url)
        url = parsed.path or b"/"
    query = url.find(b"?")
    return (url if query < 0 else url[:query]).decode("latin-1")


def _reason(exc: BaseException) -> str:
    """The rule llhttp names (``Duplicate Content-Length``); it never quotes the input."""
    return (str(exc).strip(" .") or "malformed request")[:80]


_FIRST_LINES: dict[tuple[int, str], bytes] = {}
_date: tuple[int, bytes] = (0, b"")


def _head(status: int, content_type: str, length: int | None, headers: Mapping[str, str] | None, *,
          close: bool) -> bytes:
    """A response head; ``length`` None: chunked, negative: neither (the close ends the body)."""
    global _date
    first = _FIRST_LINES.get((status, content_type))
    if first is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        first = f"HTTP/1.1 {status} {phrase}\r\nServer: {SERVER_NAME}\r\nContent-Type: {content_type}\r\n".encode(
            "latin-1", "replace")
        if len(_FIRST_LINES) < 256:
            _FIRST_LINES[status, content_type] = first
    now = int(time.time())
    if _date[0] != now:
        _date = (now, b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n")
    parts = [first, _date[1]]
    if length is None:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif length >= 0:
        parts.append(b"Content-Length: %d\r\n" % length)
    if headers:
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                value = value.replace("\r", " ").replace("\n", " ")
            parts.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)
