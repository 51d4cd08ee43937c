"""An asyncio TCP server on a free loopback port, for the tests' hand-written peers (raw HTTP upstreams, a CONNECT
proxy): ``async with`` starts and stops it; subclasses answer each connection in ``_serve``."""

from __future__ import annotations

import asyncio
from typing import Self


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
