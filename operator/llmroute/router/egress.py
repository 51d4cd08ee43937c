"""Egress proxies: which HTTP proxy, if any, a provider call goes through, and the CONNECT tunnel through one.

Regulated companies send all egress through a proxy. Two sources, the provider's own first:

* ``ProviderPolicy.spec.providers[].proxy`` (compiled to ``ProviderTarget.proxy``): an ``http://host:port`` proxy for
  that provider, its credentials (``user:password``) from a Secret, read by the router from the environment variable
  the config names (a ``secretKeyRef`` in the pod);
* ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` (or lower case) of the router's environment, with the standard
  library's rules (:func:`urllib.request.getproxies_environment`, :func:`urllib.request.proxy_bypass_environment`:
  ``NO_PROXY`` host suffixes, ``*``); credentials from the proxy URL's user part.

An ``https://`` provider is reached through a ``CONNECT host:port`` tunnel, and TLS to the provider runs inside it
(SNI and certificate verification of the provider, not of the proxy); an ``http://`` one is sent to the proxy in
absolute form. A proxy that refuses (407, 403, 502, anything but 2xx to CONNECT) is a connect failure of the
attempt, named by status only. Credentials exist only in :attr:`Proxy.authorization` (excluded from ``repr``), never
in a log line, a metric or an error detail. Only ``http://`` proxies are supported.

Pure but for :func:`tunnel`; used by :mod:`llmroute.router.http1` (tunnels) and :mod:`llmroute.router.upstream`
(which proxy).
"""

from __future__ import annotations

import asyncio
import base64
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

MAX_CONNECT_HEAD = 16 * 1024


class ProxyRefused(ConnectionRefusedError):
    """The proxy did not open the tunnel; the message names its status only."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it listens, and the ``Proxy-Authorization`` value for it (secret, not in repr)."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        """What tells pooled connections through this proxy apart (never the credentials themselves)."""
        return f"{self.host}:{self.port}#{hash(self.authorization) if self.authorization else ''}"


def parse(url: str, credentials: str | None = None) -> Proxy:
    """The proxy at ``http://[user:password@]host[:port]``; ``credentials`` (``user:password``) win over the URL's."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("proxy URLs must be http://host:port")
    if credentials is None and parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    auth = "Basic " + base64.b64encode(credentials.encode()).decode() if credentials else None
    return Proxy(parts.hostname, parts.port or 80, auth)


class Environment:
    """The process's ``*_PROXY`` variables, read once; :meth:`proxy` per (scheme, host), cached."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        """Raises ValueError (naming the variable, never its value) for a proxy that is not ``http://``: going
        direct instead would bypass the egress the environment asks for."""
        self._proxies = _from_environment(env)
        for scheme in ("http", "https"):
            if scheme in self._proxies:
                try:
                    parse(self._proxies[scheme])
                except ValueError:
                    raise ValueError(f"{scheme.upper()}_PROXY: only http://host:port proxies are supported") from None
        self._cache: dict[tuple[str, str], Proxy | None] = {}

    def __bool__(self) -> bool:
        return bool(self._proxies.keys() & {"http", "https"})

    def proxy(self, scheme: str, host: str) -> Proxy | None:
        if not self:
            return None
        key = (scheme, host)
        if key not in self._cache:
            url = self._proxies.get(scheme)
            bypass = url is None or urllib.request.proxy_bypass_environment(host, self._proxies)  # type: ignore[attr-defined]
            self._cache[key] = None if bypass else parse(url)  # type: ignore[arg-type]
        return self._cache[key]


def _from_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return urllib.request.getproxies_environment()
    out: dict[str, str] = {}
    for name, value in env.items():  # as getproxies_environment does: lower case wins
        low = name.lower()
        if value and low.endswith("_proxy") and (name == low or low[:-6] not in out):
            out[low[:-6]] = value
    return out


def connect_head(host: str, port: int, proxy: Proxy) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Handshake(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT (its head only)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[int] = loop.create_future()
        self._buf = b""

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_CONNECT_HEAD:
                self.answer.set_exception(ConnectionResetError("proxy answer too large"))
            return
        if end + 4 != len(self._buf):
            self.answer.set_exception(ConnectionResetError("proxy sent data before the tunnel was open"))
            return
        version, _, rest = self._buf.split(b"\r\n", 1)[0].partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            self.answer.set_exception(ConnectionResetError("malformed proxy answer"))
            return
        self.answer.set_result(int(code))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc or ConnectionResetError("proxy closed the connection"))


async def tunnel(loop: asyncio.AbstractEventLoop, proxy: Proxy, host: str, port: int) -> asyncio.Transport:
    """A transport to ``host:port`` through ``proxy``'s CONNECT tunnel (raises :class:`ProxyRefused`, OSError)."""
    handshake = _Handshake(loop)
    transport, _ = await loop.create_connection(lambda: handshake, proxy.host, proxy.port)
    try:
        transport.write(connect_head(host, port, proxy))
        status = await handshake.answer
        if not 200 <= status < 300:
            raise ProxyRefused(f"proxy answered CONNECT with {status}")
    except BaseException:
        transport.close()
        raise
    return transport
