"""The client side of one request, as the proxy sees it: a complete :class:`Reply`, or a :class:`ClientSink` to
stream into. Keeps :mod:`llmroute.router.proxy` and :mod:`llmroute.router.failover` free of the HTTP server library:
:mod:`llmroute.router.app` implements the sink on a :class:`llmroute.router.http_server.Request` and renders replies.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, Protocol

from llmroute.router.openai_errors import RouterError

JSON = "application/json"
EVENT_STREAM = "text/event-stream"


class ClientGone(Exception):
    """The client closed the connection while we were writing to it."""


class Reply(NamedTuple):
    """A complete response: status, body bytes as they go out, content type and extra headers. (A named tuple: one
    is made for most requests, and a frozen dataclass costs several times as much to make.)"""

    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = MappingProxyType({})

    @classmethod
    def error(cls, err: RouterError, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(err.status, err.body(), JSON, {**err.headers, **(headers or {})})


class ClientSink(Protocol):
    """A streaming response to the client; ``started`` once its status and headers went out."""

    @property
    def started(self) -> bool: ...

    @property
    def gone(self) -> bool:
        """The client closed its connection (checked while a request is held, before anything is sent)."""

    async def start(self, headers: Mapping[str, str]) -> None:
        """Send status 200 and ``headers`` (content type text/event-stream)."""

    async def write(self, data: bytes) -> None:
        """Send bytes now; raises :class:`ClientGone`."""

    async def end(self) -> None:
        """Finish the response."""
