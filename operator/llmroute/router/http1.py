"""A lean HTTP/1.1 client connection and keep-alive pool, used only by :mod:`llmroute.router.upstream`.

Why not ``aiohttp.ClientSession``: per request it builds a ``ClientRequest``, header multidicts, a payload object,
timer and trace contexts and a response with a stream reader - about a third of the router's CPU per proxied
request on the benchmark. The router needs far less: one POST (or the probe's GET) with pre-built headers to a
known origin, a status line, headers, and the body as it arrives. This module does exactly that on an
``asyncio.Protocol``:

* request: one ``transport.write`` of the head and body (``Content-Length``; no ``Expect``, no chunked upload);
* response: parsed by llhttp (Node.js's HTTP parser, through ``httptools`` as uvicorn uses it): status line and
  headers (names lower-cased, repeats joined with ``", "``; trailers ignored), interim 1xx skipped (101 is a
  failure); body framed by ``Transfer-Encoding: chunked``, ``Content-Length``, none (204/304, or a request that
  wants none) or the connection's end; what llhttp refuses (a malformed status line, chunk size or header, a
  duplicate ``Content-Length``, ``Transfer-Encoding`` with ``Content-Length``) and a head over :data:`MAX_HEAD`
  bytes are :class:`ProtocolViolation`; no content coding (the router asks for ``Accept-Encoding: identity``:
  :mod:`llmroute.router.config_source`);
* the body is handed over in the pieces that arrived (:meth:`Conn.take`); reading pauses above
  :data:`HIGH_WATER` buffered bytes and resumes once taken;
* keep-alive: a connection whose body was read to its end, not closed by either side, goes back to
  :class:`Pool` (per scheme/host/port, LIFO, idle at most :data:`IDLE_S`); one released before its end (the
  ``[DONE]`` event came before the final chunk marker) is kept only if its end arrives within :data:`DRAIN_S`.

Errors are plain exceptions for the upstream module to classify: ``ConnectionError`` (reset, closed early),
``ProtocolViolation`` (a malformed response; a ``ConnectionError`` too), ``OSError`` from connecting, and
``TimeoutError`` from :func:`wait` past its deadline.
"""

from __future__ import annotations

import asyncio
import ssl

import httptools

from llmroute.router.deadline import Deadline
from llmroute.router.egress import Proxy, tunnel

HIGH_WATER = 1 << 20
"""Buffered body bytes above which the connection stops reading until the caller takes them."""
IDLE_S = 30.0
"""How long an idle pooled connection may be reused."""
DRAIN_S = 1.0
"""How long a connection released before the end of its body may take to reach it and return to the pool."""
MAX_HEAD = 64 * 1024
"""Bytes a response head (interim ones included) may take."""
_NO_BODY_STATUS = (204, 304)
Key = tuple[str, str, int, str]
"""(scheme, host, port, proxy id or "") of the origin a connection talks to."""


class ProtocolViolation(ConnectionError):
    """The upstream's response is not valid HTTP/1.1."""


class Conn(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time."""

    def __init__(self, pool: Pool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset_response()
        self._expecting = False  # a request is out and its response is not complete
        self._deadline = Deadline(pool.loop, self._expired)  # of the wait under way (one timer, re-armed lazily)

    def _reset_response(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.complete = False  # the whole body arrived
        self.keep_alive = True
        self.error: BaseException | None = None
        self._head = True  # parsing the head (else the body)
        self._head_bytes = 0
        self._until_close = False  # the body ends with the connection
        self._body: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._no_body = False
        self._draining = False

    # --- asyncio.Protocol -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            if not self._expecting:
                raise ProtocolViolation("data after the end of the response")
            if self._head:
                self._head_bytes += len(data)
            self._parser.feed_data(data)
            if self._head and self._head_bytes > MAX_HEAD:
                raise ProtocolViolation("response head too large")
        except (httptools.HttpParserError, ProtocolViolation) as exc:
            self._fail(exc if isinstance(exc, ProtocolViolation) else ProtocolViolation(str(exc) or "malformed"))
            return
        self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            if not self._head and self._until_close and exc is None:
                self.complete = True
            else:
                self.error = exc or ConnectionResetError("connection closed before the response was complete")
        self._wake()
        self.pool.forget(self)

    # --- httptools callbacks ----------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if not self._expecting:
            raise ProtocolViolation("data after the end of the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head:
            return  # a trailer
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers = self.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # interim (100 Continue, 103 Early Hints): the real response follows
            if status == 101:
                raise ProtocolViolation("unexpected protocol switch")
            self.headers = {}
            return
        self.status, self._head = status, False
        self.keep_alive = self._parser.should_keep_alive()
        if self._no_body or status in _NO_BODY_STATUS:
            self.complete = True
            if self._no_body:  # llhttp would read a body the request did not ask for: never reuse
                self.keep_alive = False
        elif "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", ""):
            self._until_close = True
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        if self._draining or self.complete:
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._head:  # the end of an interim response
            return
        self.complete, self._expecting = True, False
        if self._draining:
            self._draining = False
            self.pool.put(self)

    # --- the request ------------------------------------------------------------------------------------------
    def send(self, head: bytes, body: bytes, no_body: bool) -> None:
        self._reset_response()
        self._no_body = no_body
        self._expecting = True
        assert self.transport is not None
        if len(body) <= 65536:
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.write(body)

    async def wait_head(self, deadline: float | None) -> None:
        while self._head and self.error is None:
            await self.wake(deadline)
        if self.error is not None:
            raise self.error

    def take(self) -> bytes | None:
        """The body bytes that arrived since the last call; b"" at the end; None: nothing yet (call :meth:`wait`)."""
        body = self._body
        if body:
            data = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
            self._buffered = 0
            if self._paused and self.transport is not None and not self.closed:
                self._paused = False
                self.transport.resume_reading()
            return data
        if self.complete:
            return b""
        if self.error is not None:
            raise self.error
        return None

    def wake(self, deadline: float | None) -> asyncio.Future[None]:
        """A future done at the next data, end or error (await it when :meth:`take` gave None); it fails with
        ``TimeoutError`` past ``deadline`` (the connection's one :class:`Deadline` timer: a read costs no timer of its
        own), and awaiting the future directly costs no coroutine frame."""
        fut: asyncio.Future[None] = self.pool.loop.create_future()
        self._waiter = fut
        if deadline is None:
            self._deadline.at = 0.0
        else:
            self._deadline.arm(deadline)
        return fut

    def _expired(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def release(self) -> None:
        """Done with the response: back to the pool if it can be reused (now, or once its end arrives)."""
        if self.closed or self.error is not None or not self.keep_alive:
            self.close()
        elif self.complete:
            self.pool.put(self)
        else:
            self._draining = True
            self._body.clear()
            self.pool.loop.call_later(DRAIN_S, self._drain_expired)

    def close(self) -> None:
        self.closed = True
        self._deadline.cancel()
        if self.transport is not None:
            self.transport.close()
        self.pool.forget(self)

    def _drain_expired(self) -> None:
        if self._draining:
            self.close()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self._wake()
        self.close()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Pool:
    """Idle keep-alive connections per (scheme, host, port, proxy); single event loop, so no locks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._idle: dict[Key, list[Conn]] = {}
        self._all: set[Conn] = set()
        self._ssl: ssl.SSLContext | None = None

    def get(self, key: Key) -> Conn | None:
        """A reusable idle connection to ``key``, or None."""
        idle = self._idle.get(key)
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing() \
                    and now - conn.idle_since < IDLE_S:
                return conn
            conn.close()
        return None

    async def connect(self, key: Key, proxy: Proxy | None = None) -> Conn:
        """A new connection to ``key``'s origin; through ``proxy`` if given (a CONNECT tunnel for https, the proxy
        itself for http: the request then names the origin in absolute form)."""
        scheme, host, port, _ = key
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        conn = Conn(self, key)
        if proxy is None:
            await self.loop.create_connection(lambda: conn, host, port, ssl=context,
                                              server_hostname=host if context else None)
        elif context is None:
            await self.loop.create_connection(lambda: conn, proxy.host, proxy.port)
        else:
            raw = await tunnel(self.loop, proxy, host, port)
            try:  # TLS with the origin inside the tunnel: SNI and verification name the origin, not the proxy
                tls = await self.loop.start_tls(raw, conn, context, server_hostname=host)
            except BaseException:
                raw.close()
                raise
            if tls is None:
                raise ConnectionResetError("TLS through the proxy tunnel did not start")
            conn.connection_made(tls)
        self._all.add(conn)
        return conn

    def put(self, conn: Conn) -> None:
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)

    def forget(self, conn: Conn) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
