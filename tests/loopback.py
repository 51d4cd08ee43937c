"""Loopback for the tests: free ports for the processes they start, and an asyncio TCP server for their hand-written
peers (raw HTTP upstreams, a CONNECT proxy): ``async with`` starts and stops it; subclasses answer each connection in
``_serve``."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Self

PORTS = range(15000, 32000)
"""Where :func:`free_port` looks: below Linux's ephemeral range (32768-60999), so no outgoing connection of this or
another test can take the port between the check and the child process binding it."""
_handed_out: set[int] = set()
_rng = random.Random()


def free_port() -> int:
    """A TCP port free on every interface now, outside the ephemeral range, never handed out twice in this process
    (a port asked for and not yet bound by its process is not offered again)."""
    for _ in range(500):
        port = _rng.choice(PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


class LoopbackServer:
    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
