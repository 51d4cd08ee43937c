"""The only module that makes outbound HTTP requests: provider calls and health probes.

Owns the one shared ``aiohttp.ClientSession`` (created and closed by :mod:`llmroute.router.app`'s cleanup context),
the named timeouts of an attempt and the translation of every aiohttp/asyncio error into
:class:`llmroute.core.retry.FailureKind` at this one boundary (as ``httpx._transports.default`` does)::

    UpstreamFailure(kind)
      CONNECT  refused, DNS, connect timeout            (aiohttp.ClientConnectorError, ConnectionTimeoutError)
      RESET    reset or closed before a complete answer  (ServerDisconnectedError, ClientPayloadError, OSError...)
      TTFT / IDLE / TOTAL   the caller's deadline passed (which one the caller says: it knows the phase)

Timeouts: connect is aiohttp's ``sock_connect``; everything after is a deadline on the event loop's clock passed
per call (:meth:`Upstream.post`, :meth:`Exchange.read`), so the caller can switch from the time-to-first-token
budget to the idle budget once the first token is in, and cap both by the request's total budget.

Headers: each provider's headers (its ``Authorization: Bearer <key>``) are pre-built per config snapshot; client
headers are filtered once per request by :func:`client_headers` - never the client's Authorization, cookies or
other credentials, no hop-by-hop headers, no ``x-llmroute-*``. The cookie jar is a dummy: upstream cookies are
neither kept nor sent.

Called by :mod:`llmroute.router.failover` (attempts) and :mod:`llmroute.router.health` (probes).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from functools import lru_cache

import aiohttp
from yarl import URL

from llmroute.core.retry import FailureKind
from llmroute.router.config_source import Endpoint

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


@lru_cache(maxsize=1024)
def _url(endpoint: str, path: str) -> URL:
    return URL(endpoint + path, encoded=True)


@lru_cache(maxsize=64)
def _timeout(connect_s: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect_s, sock_read=None)


def _deadline(when: float) -> float | None:
    return None if math.isinf(when) else when


def _translate(exc: BaseException, on_timeout: FailureKind) -> UpstreamFailure:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return UpstreamFailure(FailureKind.CONNECT, type(exc).__name__)
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(on_timeout, "deadline passed")
    return UpstreamFailure(FailureKind.RESET, type(exc).__name__)


_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


class Exchange:
    """One upstream response: its status and headers, and its body read under deadlines."""

    __slots__ = ("_resp", "content_type", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.content_type = resp.headers.get("Content-Type", "")

    def header(self, name: str) -> str | None:
        return self._resp.headers.get(name)

    async def read(self, deadline: float, on_timeout: FailureKind) -> bytes:
        """The next bytes of the body (b"" at the end); raises :class:`UpstreamFailure`."""
        content = self._resp.content
        try:
            data = content.read_nowait()  # the fast path: bytes already buffered need no timer
            if data or content.at_eof():
                return data
            async with asyncio.timeout_at(_deadline(deadline)):
                return await content.readany()
        except _ERRORS as exc:
            raise _translate(exc, on_timeout) from None

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
        self._resp.release()

    def abandon(self) -> None:
        """Drop an unfinished response and its connection (TTFT abandon, client gone, stream error)."""
        self._resp.close()


class Upstream:
    """The shared client; one per process."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True, raise_for_status=False, trust_env=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the upstream client is not open")
        return self._session

    async def post(self, endpoint: Endpoint, path: str, body: bytes, headers: Mapping[str, str], *,
                   connect_s: float, deadline: float, on_timeout: FailureKind) -> Exchange:
        """Send one attempt and wait for its status line and headers until ``deadline`` (loop time)."""
        url = _url(endpoint.provider.endpoint, path)
        try:
            async with asyncio.timeout_at(_deadline(deadline)):
                resp = await self.session.post(url, data=body, headers=headers, timeout=_timeout(connect_s),
                                               allow_redirects=False)
        except _ERRORS as exc:
            raise _translate(exc, on_timeout) from None
        return Exchange(resp)

    async def probe(self, endpoint: Endpoint, timeout_s: float) -> tuple[bool, str]:
        """The unbilled health check ``GET {endpoint}{health.path}`` with the provider key; (ok, why)."""
        if endpoint.headers is None:
            return False, endpoint.missing_key
        url = _url(endpoint.provider.endpoint, endpoint.provider.health.path)
        headers = {k: v for k, v in endpoint.headers.items() if k != "Content-Type"}
        try:
            async with asyncio.timeout(timeout_s):
                async with self.session.get(url, headers=headers, allow_redirects=False,
                                            timeout=_timeout(timeout_s)) as resp:
                    await resp.read()
                    return 200 <= resp.status < 300, f"HTTP {resp.status}"
        except _ERRORS as exc:
            failure = _translate(exc, FailureKind.TOTAL)
            return False, f"{failure.kind}: {failure.detail}"
