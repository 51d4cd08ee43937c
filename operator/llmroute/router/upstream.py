"""The only module that makes outbound HTTP requests: provider calls and health probes.

Owns the one keep-alive connection pool (:class:`llmroute.router.http1.Pool`, opened and closed by
:mod:`llmroute.router.app`'s cleanup context), the named timeouts of an attempt and the translation of every
connection error into :class:`llmroute.core.retry.FailureKind` at this one boundary (as
``httpx._transports.default`` does)::

    UpstreamFailure(kind)
      CONNECT  refused, DNS, TLS, connect timeout      (OSError or the connect timeout while connecting)
      RESET    reset or closed before a complete answer, malformed HTTP   (ConnectionError after connecting)
      TTFT / IDLE / TOTAL   the caller's deadline passed (which one the caller says: it knows the phase)

The client is :mod:`llmroute.router.http1`, a minimal HTTP/1.1 client written for this path: measured on the
router benchmark, ``aiohttp.ClientSession`` cost about a third of the router's CPU per request, most of it
generality the router does not use (cookies, redirects, proxies, traces, payload registry, multidicts).

Timeouts: connect is ``connect_s`` (capped by the deadline); everything after is a deadline on the event loop's
clock passed per call (:meth:`Upstream.post`, :meth:`Exchange.read`), so the caller can switch from the
time-to-first-token budget to the idle budget once the first token is in, and cap both by the request's total
budget.

Headers: each provider's headers (its ``Authorization: Bearer <key>``, ``Accept-Encoding: identity``) are pre-built
per config snapshot; client headers are filtered once per request by :func:`client_headers` - never the client's
Authorization, cookies or other credentials, no hop-by-hop headers, no ``x-llmroute-*``. No cookies are kept or
sent, redirects are not followed, no proxy is used.

Called by :mod:`llmroute.router.failover` (attempts), :mod:`llmroute.router.health` (probes) and
:mod:`llmroute.router.pools` and :mod:`llmroute.router.holding` (pod metrics scrapes and the demand signal, through
:meth:`Upstream.fetch`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from functools import lru_cache

from yarl import URL

from llmroute.core.retry import FailureKind
from llmroute.router.config_source import Endpoint
from llmroute.router.http1 import Conn, Pool

_DROP = frozenset({
    "authorization", "proxy-authorization", "cookie", "api-key", "x-api-key", "host", "content-length",
    "content-type", "content-encoding", "accept", "accept-encoding", "user-agent", "connection", "keep-alive",
    "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection", "expect",
})
_MAX_ERROR_BODY = 64 * 1024


class UpstreamFailure(Exception):
    """An attempt failed without a usable HTTP answer; ``detail`` is for logs (no body, no key)."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def client_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's headers that may travel upstream (everything but credentials, hop-by-hop and our own)."""
    connection = headers.get("Connection", "")
    named = {h.strip().lower() for h in connection.split(",")} if connection else set()
    return {k: v for k, v in headers.items()
            if (low := k.lower()) not in _DROP and low not in named and not low.startswith(("x-llmroute-", "proxy-"))}


_Target = tuple[tuple[str, str, int], str, str]


@lru_cache(maxsize=1024)
def _target(endpoint: str, path: str) -> _Target:
    """((scheme, host, port), request target, Host header) of ``endpoint + path``."""
    url = URL(endpoint + path, encoded=True)
    if url.scheme not in ("http", "https") or not url.raw_host or url.port is None:
        raise ValueError(f"not an http(s) URL: {endpoint}")
    host = url.raw_host
    authority = f"[{host}]" if ":" in host else host
    if not url.is_default_port():
        authority += f":{url.port}"
    return (url.scheme, host, url.port), url.raw_path_qs, authority


def _head(method: str, target: str, authority: str, headers: Mapping[str, str], length: int | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}", *(f"{k}: {v}" for k, v in headers.items())]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    text = "\r\n".join(lines)
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        raise ValueError("newline or carriage return in a request header")
    return (text + "\r\n\r\n").encode("utf-8", "surrogateescape")


def _deadline(when: float) -> float | None:
    return None if math.isinf(when) else when


def _reset(exc: BaseException, on_timeout: FailureKind) -> UpstreamFailure:
    """An error after the connection was made."""
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(on_timeout, "deadline passed")
    return UpstreamFailure(FailureKind.RESET, type(exc).__name__)


_ERRORS = (OSError, TimeoutError)


class Exchange:
    """One upstream response: its status and headers, and its body read under deadlines."""

    __slots__ = ("_conn", "content_type", "status")

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self.status = conn.status
        self.content_type = conn.headers.get("content-type", "")

    def header(self, name: str) -> str | None:
        return self._conn.headers.get(name.lower())

    async def read(self, deadline: float, on_timeout: FailureKind) -> bytes:
        """The next bytes of the body (b"" at the end); raises :class:`UpstreamFailure`."""
        conn = self._conn
        try:
            while (data := conn.take()) is None:  # bytes already buffered need no timer
                await conn.wait_body(_deadline(deadline))
        except _ERRORS as exc:
            raise _reset(exc, on_timeout) from None
        return data

    async def read_body(self, deadline: float, on_timeout: FailureKind, limit: int = _MAX_ERROR_BODY) -> bytes:
        """The whole body, at most ``limit`` bytes (the rest is dropped with the connection)."""
        parts: list[bytes] = []
        size = 0
        while size < limit:
            data = await self.read(deadline, on_timeout)
            if not data:
                break
            parts.append(data)
            size += len(data)
        return b"".join(parts)[:limit]

    def finish(self) -> None:
        """Done with a fully read response: the connection goes back to the pool."""
        self._conn.release()

    def abandon(self) -> None:
        """Drop an unfinished response and its connection (TTFT abandon, client gone, stream error)."""
        self._conn.close()


class Upstream:
    """The shared client; one per process."""

    def __init__(self) -> None:
        self._pool: Pool | None = None

    async def open(self) -> None:
        self._pool = Pool(asyncio.get_running_loop())

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("the upstream client is not open")
        return self._pool

    async def post(self, endpoint: Endpoint, path: str, body: bytes, headers: Mapping[str, str], *,
                   connect_s: float, deadline: float, on_timeout: FailureKind, base_url: str | None = None) -> Exchange:
        """Send one attempt and wait for its status line and headers until ``deadline`` (loop time); ``base_url``
        replaces the provider's endpoint for this attempt (a pool's pod, :mod:`llmroute.router.pools`)."""
        key, target, authority = _target(base_url or endpoint.provider.endpoint, path)
        head = _head("POST", target, authority, headers, len(body))
        return await self._exchange(key, head, body, False, connect_s, _deadline(deadline), on_timeout)

    async def _exchange(self, key: tuple[str, str, int], head: bytes, body: bytes, no_body: bool, connect_s: float,
                        deadline: float | None, on_timeout: FailureKind) -> Exchange:
        pool = self.pool
        conn = pool.get(key)
        if conn is None:
            conn = await self._connect(key, connect_s, deadline, on_timeout)
        try:
            conn.send(head, body, no_body)
            await conn.wait_head(deadline)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, _ERRORS):
                raise _reset(exc, on_timeout) from None
            raise
        return Exchange(conn)

    async def _connect(self, key: tuple[str, str, int], connect_s: float, deadline: float | None,
                       on_timeout: FailureKind) -> Conn:
        loop = self.pool.loop
        budget = connect_s if deadline is None else min(connect_s, deadline - loop.time())
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                return await self.pool.connect(key)
        except TimeoutError:
            if budget < connect_s:
                raise UpstreamFailure(on_timeout, "deadline passed") from None
            raise UpstreamFailure(FailureKind.CONNECT, "ConnectionTimeoutError") from None
        except OSError as exc:
            raise UpstreamFailure(FailureKind.CONNECT, type(exc).__name__) from None

    async def fetch(self, method: str, url: str, headers: Mapping[str, str], *, body: bytes | None = None,
                    timeout_s: float, limit: int = _MAX_ERROR_BODY) -> tuple[int, bytes]:
        """One small exchange off the request path (pool pod scrapes, the demand signal): (status, at most
        ``limit`` body bytes), all within ``timeout_s``; raises :class:`UpstreamFailure`."""
        key, target, authority = _target(url, "")
        deadline = self.pool.loop.time() + timeout_s
        head = _head(method, target, authority, headers, None if body is None else len(body))
        ex = await self._exchange(key, head, body or b"", False, timeout_s, deadline, FailureKind.TOTAL)
        try:
            data = await ex.read_body(deadline, FailureKind.TOTAL, limit)
        except UpstreamFailure:
            ex.abandon()
            raise
        ex.finish()
        return ex.status, data

    async def probe(self, endpoint: Endpoint, timeout_s: float, base_url: str | None = None) -> tuple[bool, str]:
        """The unbilled health check ``GET {endpoint}{health.path}`` with the provider key (``base_url`` instead of
        the endpoint: a pool's pod); (ok, why)."""
        if endpoint.headers is None:
            return False, endpoint.missing_key
        key, target, authority = _target(base_url or endpoint.provider.endpoint, endpoint.provider.health.path)
        headers = {k: v for k, v in endpoint.headers.items() if k != "Content-Type"}
        deadline = self.pool.loop.time() + timeout_s
        try:
            ex = await self._exchange(key, _head("GET", target, authority, headers, None), b"", False, timeout_s,
                                      deadline, FailureKind.TOTAL)
            try:
                await ex.read_body(deadline, FailureKind.TOTAL)
            except UpstreamFailure:
                ex.abandon()
                raise
            ex.finish()
        except UpstreamFailure as failure:
            return False, f"{failure.kind}: {failure.detail}"
        return 200 <= ex.status < 300, f"HTTP {ex.status}"
