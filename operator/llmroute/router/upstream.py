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
sent, redirects are not followed.

Egress proxies (:mod:`llmroute.router.egress`): provider calls and probes go through the provider's configured
proxy, else through ``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` names the host (read once, at :meth:`open`);
pooled connections are kept per proxy. A pool's pods and :meth:`Upstream.fetch` (in-cluster addresses) go direct.
A proxy that refuses is a CONNECT failure (its status in the detail; its credentials nowhere).

Called by :mod:`llmroute.router.failover` (attempts), :mod:`llmroute.router.health` (probes) and
:mod:`llmroute.router.pools` and :mod:`llmroute.router.holding` (pod metrics scrapes and the demand signal, through
:meth:`Upstream.fetch`).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Coroutine, Mapping
from functools import lru_cache
from typing import Any

from yarl import URL

from llmroute.core.retry import FailureKind
from llmroute.core.router_config import ProviderTarget, ProxyTarget
from llmroute.router import egress
from llmroute.router.config_source import Endpoint
from llmroute.router.egress import Proxy, ProxyRefused
from llmroute.router.http1 import Conn, Key, Pool

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
_PROXY_AUTH_FAILED = 407


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
                await conn.wake(_deadline(deadline))
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
        self._env = egress.Environment({})
        self._configured: dict[ProxyTarget, Proxy] = {}

    async def open(self) -> None:
        self._pool = Pool(asyncio.get_running_loop())
        self._env = egress.Environment()

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("the upstream client is not open")
        return self._pool

    def proxy(self, provider: ProviderTarget, origin: tuple[str, str, int]) -> Proxy | None:
        """The proxy a call to ``provider`` at ``origin`` goes through (its own, else the environment's), or None."""
        spec = provider.proxy
        if spec is None:
            return self._env.proxy(origin[0], origin[1])
        proxy = self._configured.get(spec)
        if proxy is None:
            credentials = os.environ.get(spec.credential.env) if spec.credential is not None else None
            proxy = self._configured[spec] = egress.parse(spec.url, credentials or None)
        return proxy

    def _route(self, provider: ProviderTarget | None, method: str, url: str, headers: Mapping[str, str],
               length: int | None) -> tuple[Key, bytes, Proxy | None]:
        """The pool key, request head and proxy of one request (``provider`` None: direct)."""
        origin, target, authority = _target(url, "")
        proxy = None if provider is None else self.proxy(provider, origin)
        if proxy is not None and origin[0] == "http":  # to the proxy itself, in absolute form
            target = f"http://{authority}{target}"
            if proxy.authorization:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        return (*origin, proxy.id if proxy else ""), _head(method, target, authority, headers, length), proxy

    def post(self, endpoint: Endpoint, path: str, body: bytes, headers: Mapping[str, str], *, connect_s: float,
             deadline: float, on_timeout: FailureKind, base_url: str | None = None) -> Coroutine[Any, Any, Exchange]:
        """Send one attempt and wait for its status line and headers until ``deadline`` (loop time); ``base_url``
        replaces the provider's endpoint for this attempt (a pool's pod, :mod:`llmroute.router.pools`). Returns the
        exchange's coroutine itself (one frame less on every wake-up of the request)."""
        if base_url is None and endpoint.provider.proxy is None and not self._env:
            origin, target, authority = _target(endpoint.provider.endpoint, path)  # the common case: direct
            head = _head("POST", target, authority, headers, len(body))
            return self._exchange((*origin, ""), head, body, False, connect_s, _deadline(deadline), on_timeout)
        url = (base_url or endpoint.provider.endpoint) + path
        key, head, proxy = self._route(None if base_url else endpoint.provider, "POST", url, headers, len(body))
        return self._exchange(key, head, body, False, connect_s, _deadline(deadline), on_timeout, proxy)

    async def _exchange(self, key: Key, head: bytes, body: bytes, no_body: bool, connect_s: float,
                        deadline: float | None, on_timeout: FailureKind, proxy: Proxy | None = None) -> Exchange:
        pool = self.pool
        conn = pool.get(key)
        if conn is None:
            conn = await self._connect(key, proxy, connect_s, deadline, on_timeout)
        try:
            conn.send(head, body, no_body)
            await conn.wait_head(deadline)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, _ERRORS):
                raise _reset(exc, on_timeout) from None
            raise
        if proxy is not None and key[0] == "http" and conn.status == _PROXY_AUTH_FAILED:
            conn.close()  # the proxy's answer, not the provider's
            raise UpstreamFailure(FailureKind.CONNECT, f"proxy answered {_PROXY_AUTH_FAILED}")
        return Exchange(conn)

    async def _connect(self, key: Key, proxy: Proxy | None, connect_s: float, deadline: float | None,
                       on_timeout: FailureKind) -> Conn:
        loop = self.pool.loop
        budget = connect_s if deadline is None else min(connect_s, deadline - loop.time())
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                return await self.pool.connect(key, proxy)
        except TimeoutError:
            if budget < connect_s:
                raise UpstreamFailure(on_timeout, "deadline passed") from None
            raise UpstreamFailure(FailureKind.CONNECT, "ConnectionTimeoutError") from None
        except ProxyRefused as exc:
            raise UpstreamFailure(FailureKind.CONNECT, str(exc)) from None
        except OSError as exc:
            raise UpstreamFailure(FailureKind.CONNECT, type(exc).__name__) from None

    async def fetch(self, method: str, url: str, headers: Mapping[str, str], *, body: bytes | None = None,
                    timeout_s: float, limit: int = _MAX_ERROR_BODY) -> tuple[int, bytes]:
        """One small exchange off the request path (pool pod scrapes, the demand signal): (status, at most
        ``limit`` body bytes), all within ``timeout_s``; raises :class:`UpstreamFailure`."""
        key, head, _ = self._route(None, method, url, headers, None if body is None else len(body))
        deadline = self.pool.loop.time() + timeout_s
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
        headers = {k: v for k, v in endpoint.headers.items() if k != "Content-Type"}
        url = (base_url or endpoint.provider.endpoint) + endpoint.provider.health.path
        deadline = self.pool.loop.time() + timeout_s
        try:
            key, head, proxy = self._route(None if base_url else endpoint.provider, "GET", url, headers, None)
            ex = await self._exchange(key, head, b"", False, timeout_s, deadline, FailureKind.TOTAL, proxy)
            try:
                await ex.read_body(deadline, FailureKind.TOTAL)
            except UpstreamFailure:
                ex.abandon()
                raise
            ex.finish()
        except UpstreamFailure as failure:
            return False, f"{failure.kind}: {failure.detail}"
        return 200 <= ex.status < 300, f"HTTP {ex.status}"
