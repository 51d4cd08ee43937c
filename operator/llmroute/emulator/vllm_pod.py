"""Running one emulated vLLM pod on loopback: :class:`VllmPod` (start, readiness, live params, drain, close).

Owns the listening socket itself, like :mod:`llmroute.emulator.runner`, so it can emulate vLLM's startup:
the port is reserved (bound) at :meth:`VllmPod.start` but only listens once the weights have loaded, so
until then connections are refused (ECONNREFUSED), exactly as probes see a loading vLLM pod. In "hang"
health mode it listens at once and requests hang until loaded (a front proxy, or an API server up before
its engine). Cheap: one aiohttp server per pod, no threads, so ``llmroute local`` runs several in one
process. Used by router tests and ``llmroute local``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import Any

from aiohttp import web

from .address import Addressed
from .delivery import reset_transport
from .vllm_app import build_vllm_app
from .vllm_engine import EngineParams
from .vllm_state import VLLM_STATE, VllmConfig, VllmState


class VllmPod(Addressed):
    """One vLLM pod; ``url`` is its OpenAI base URL (``.../v1``), ``base_url`` its root (``/health``)."""

    def __init__(self, config: VllmConfig | None = None, params: EngineParams | None = None, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or VllmConfig()
        self.host, self.port = host, port
        self.app = build_vllm_app(self.config, params)
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._listener: asyncio.Server | None = None
        self._loading: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def state(self) -> VllmState:
        return self.app[VLLM_STATE]

    @property
    def ready(self) -> bool:
        """Weights loaded and the port accepting connections."""
        return self._ready.is_set()

    @property
    def params(self) -> EngineParams:
        return self.state.engine.params

    def set_params(self, **fields: Any) -> EngineParams:
        """Change some engine parameters (validated; the others stay) for requests from now on."""
        params = EngineParams.model_validate({**self.params.model_dump(), **fields})
        self.state.engine.set_params(params)
        return params

    def stats(self) -> dict[str, Any]:
        """What ``GET /_emulator/stats`` answers."""
        return self.state.to_json()

    async def start(self) -> VllmPod:
        """Reserve the port and start loading; returns at once (see :meth:`wait_ready`)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self._runner = web.AppRunner(self.app, handle_signals=False, handler_cancellation=True,
                                     shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()  # starts the weights loading
        if self.config.health_mode == "hang":
            await self._listen()
        self._loading = asyncio.create_task(self._become_ready())
        return self

    async def _listen(self) -> None:
        assert self._runner is not None and self._runner.server is not None and self._sock is not None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._runner.server, sock=self._sock)

    async def _become_ready(self) -> None:
        await self.state.loaded.wait()
        if self._listener is None:
            await self._listen()
        self._ready.set()

    async def wait_ready(self) -> None:
        """Until the pod serves (bound it with ``asyncio.timeout``)."""
        await self._ready.wait()

    async def drain(self, *, wait: bool = False) -> None:
        """SIGTERM: new requests get 503 (and /health 503) while admitted ones finish; with ``wait``,
        return once nothing runs or waits."""
        self.state.draining = True
        if wait:
            await self.state.engine.wait_idle()

    async def close(self) -> None:
        """Stop: the port closes and open connections are reset."""
        if self._loading is not None:
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
            self._loading = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None
        if self._runner is not None:
            if self._runner.server is not None:
                for connection in self._runner.server.connections:
                    reset_transport(connection.transport)
                    connection.force_close()
            await self._runner.cleanup()
            self._runner = None
        self._ready.clear()

    async def __aenter__(self) -> VllmPod:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
