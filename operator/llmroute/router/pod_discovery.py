"""Where a ModelPool's ready pods are: the addresses :mod:`llmroute.router.pools` scrapes and picks from.

Routers have no Kubernetes API access, so they find pods the way any client in the cluster can:

* :class:`DnsDiscovery` (the default) - the pool's headless Service name (``PoolTarget.pods_host``) resolves to one
  A/AAAA record per **ready** pod (Kubernetes publishes only ready endpoints), each serving vLLM on
  ``PoolTarget.port``. A name that does not resolve (NXDOMAIN/no data: a pool at zero) means no pods; a temporary
  resolver failure means "unknown" and the pods known so far are kept (their scrapes still decide readiness).
* :class:`FileDiscovery` - a JSON file named by ``$LLMROUTE_POOL_ENDPOINTS_FILE``,
  ``{"<namespace>/<pool>": ["http://127.0.0.1:8001", ...]}``, re-read when its mtime changes. For local mode and
  tests, where pods are loopback servers on distinct ports (DNS cannot say that). A pool missing from the file has
  no pods; an unreadable or invalid file is logged once and the last good content is kept.

Addresses are origins (``http://host:port``, IPv6 in brackets). Called once a second per pool; each call is
cheap (one ``getaddrinfo`` in the loop's resolver, or one ``stat``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path
from typing import Protocol

from llmroute.core import pools
from llmroute.core.router_config import PoolTarget

log = logging.getLogger("llmroute.router.pools")

ENDPOINTS_FILE_ENV = "LLMROUTE_POOL_ENDPOINTS_FILE"
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


class Discovery(Protocol):
    """Where pods are found."""

    async def addresses(self, target: PoolTarget) -> frozenset[str] | None:
        """The pool's ready pods' origins now; None: unknown this time (keep what was known)."""


def origin(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def resolve(host: str, port: int) -> frozenset[str]:
    """The origins of ``host``'s A/AAAA records on ``port`` (an IP literal: itself); empty when the name does not
    exist (a headless Service without ready endpoints); :class:`socket.gaierror` when the resolver failed (unknown).
    Also used for the operator's demand endpoint (:mod:`llmroute.router.holding`)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _NO_SUCH_NAME:
            return frozenset()
        raise
    return frozenset(origin(str(info[4][0]), port) for info in infos)


class DnsDiscovery:
    """The headless Service's A/AAAA records."""

    def __init__(self) -> None:
        self._failing: set[str] = set()

    async def addresses(self, target: PoolTarget) -> frozenset[str] | None:
        try:
            found = await resolve(target.pods_host, target.port)
        except socket.gaierror as exc:
            if target.pods_host not in self._failing:
                self._failing.add(target.pods_host)
                log.warning("cannot resolve %s (keeping the pods known so far): %s", target.pods_host, exc)
            return None
        self._failing.discard(target.pods_host)
        return found


class FileDiscovery:
    """The endpoints file, re-read when its mtime changes."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._mtime: int | None = None
        self._pools: dict[str, frozenset[str]] = {}
        self._complaint = ""

    async def addresses(self, target: PoolTarget) -> frozenset[str] | None:
        self._refresh()
        return self._pools.get(pools.key(target.name, target.namespace), frozenset())

    def _refresh(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError as exc:
            self._complain(f"cannot read {self.path}: {exc.strerror}")
            return
        if mtime == self._mtime:
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            self._pools = _parse(doc)
        except (OSError, ValueError) as exc:
            self._complain(f"{self.path}: {exc}")
            return
        self._mtime = mtime
        self._complaint = ""

    def _complain(self, message: str) -> None:
        if message != self._complaint:
            self._complaint = message
            log.error("pool endpoints file: %s (keeping the last good content)", message)


def _parse(doc: object) -> dict[str, frozenset[str]]:
    if not isinstance(doc, dict):
        raise ValueError('must be a JSON object {"<namespace>/<pool>": ["http://host:port", ...]}')
    out: dict[str, frozenset[str]] = {}
    for key, urls in doc.items():
        if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                                 for u in urls):
            raise ValueError(f'"{key}" must be a list of http(s) URLs')
        out[key] = frozenset(u.rstrip("/") for u in urls)
    return out


def from_environment() -> Discovery:
    """File discovery when ``$LLMROUTE_POOL_ENDPOINTS_FILE`` is set, else DNS."""
    path = os.environ.get(ENDPOINTS_FILE_ENV)
    return FileDiscovery(path) if path else DnsDiscovery()
