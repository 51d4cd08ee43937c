"""Running an emulated provider on loopback: :class:`Emulator` (start/close, live faults, stats, and a
real listener outage) and the :func:`run_emulator` context manager.

Owns the listening socket itself (not an aiohttp site) so :meth:`Emulator.stop_listening` can make the
port refuse connections (ECONNREFUSED) and reset every open one, then :meth:`Emulator.start_listening`
can come back on the same port. Used by router tests, ``llmroute local`` and the benchmarks.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from aiohttp import web

from .address import Addressed
from .app import DEFAULT_MODELS, STATE, EmulatorState, build_app
from .delivery import reset_transport
from .faults import FaultPlan
from .stats import Stats


class Emulator(Addressed):
    """One emulated provider; ``url`` is the OpenAI base URL (ends in ``/v1``)."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                 faults: FaultPlan | None = None, reasoning_field: str = "reasoning_content", seed: int = 0,
                 models: Sequence[str] = DEFAULT_MODELS, strict_models: bool = False,
                 ssl_context: ssl.SSLContext | None = None, record_bodies: bool = False, echo: bool = False) -> None:
        self.name, self.host, self.port = name, host, port
        self.ssl_context = ssl_context  # serve HTTPS (like a real provider) when given
        self.tls = ssl_context is not None
        self.app = build_app(name, api_key=api_key, faults=faults, reasoning_field=reasoning_field, seed=seed,
                             models=models, strict_models=strict_models, record_bodies=record_bodies, echo=echo)
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None

    @property
    def state(self) -> EmulatorState:
        return self.app[STATE]

    @property
    def stats(self) -> Stats:
        return self.state.stats

    @property
    def faults(self) -> FaultPlan:
        return self.state.faults

    @property
    def bodies(self) -> list[bytes]:
        """The raw request bodies received (``record_bodies`` only; cleared by :meth:`reset`)."""
        return list(self.state.bodies)

    def set_faults(self, plan: FaultPlan | None = None, /, **fields: Any) -> FaultPlan:
        """Replace the fault plan (``plan``, or a new ``FaultPlan(**fields)``; nothing = healthy).
        Takes effect for requests arriving from now on."""
        if plan is not None and fields:
            raise TypeError("set_faults() takes a FaultPlan or fields, not both")
        self.state.faults = plan if plan is not None else FaultPlan.model_validate(fields)
        return self.state.faults

    def reset(self) -> None:
        """Clear the stats and restart the fault RNG from the seed."""
        self.state.reset()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    async def start(self) -> Emulator:
        self._runner = web.AppRunner(self.app, handle_signals=False, handler_cancellation=True,
                                     shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await self.start_listening()
        return self

    async def start_listening(self) -> None:
        """Accept connections (again), on the same port once one was chosen."""
        if self._listener is not None or self._runner is None or self._runner.server is None:
            return
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._runner.server, self.host, self.port, reuse_address=True,
                                                  ssl=self.ssl_context)
        self.port = self._listener.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """A hard outage: new connections are refused and open ones (idle or mid-response) are reset."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None and self._runner.server is not None:
            for connection in self._runner.server.connections:
                reset_transport(connection.transport)
                connection.force_close()

    async def close(self) -> None:
        await self.stop_listening()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


@asynccontextmanager
async def run_emulator(name: str, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                       faults: FaultPlan | None = None, reasoning_field: str = "reasoning_content",
                       seed: int = 0, models: Sequence[str] = DEFAULT_MODELS,
                       strict_models: bool = False, record_bodies: bool = False,
                       echo: bool = False) -> AsyncIterator[Emulator]:
    """Serve an emulated provider on ``host:port`` (0 = any free port) for the duration of the block."""
    async with Emulator(name, host, port, api_key=api_key, faults=faults, reasoning_field=reasoning_field,
                        seed=seed, models=models, strict_models=strict_models, record_bodies=record_bodies,
                        echo=echo) as emulator:
        yield emulator
