"""The router's limits on what one client connection may cost it: deadlines, sizes and the connection cap.

Owns the values (:class:`Limits`: safe defaults, ``LLMROUTE_*`` environment variables, ``llmroute router`` flags
override both), the decisions that need no socket (:func:`connection_cap`: the cap a process can honour with its
file descriptors; :func:`evictee`: which connection makes room at the cap), and the OpenAI-shaped errors a refused
request gets. The enforcement is :mod:`llmroute.router.http_server` (per connection) and :mod:`llmroute.router.app`
(the body size a route allows, ``maxRequestBytes``, also on chunked bodies).

What each limit bounds:

* ``head_timeout_s``: from a connection's first byte (or from ``accept`` for its first request) to a complete
  request head. A client that sends half a head and then nothing (slowloris) is closed when it passes.
* ``body_timeout_s``: from a complete head to the body's last byte (slow POST). Past it the client gets a 408 and
  the connection is closed.
* ``idle_timeout_s``: how long a keep-alive connection may wait for its next request.
* ``max_connections``: open client connections. At the cap a new connection is admitted by closing the connection
  that has waited longest for a request head - accepted and still without a complete head (slowloris), or idle
  between keep-alive requests - as nginx's reusable-connection drain and Envoy's overload manager do
  (:func:`evictee`); only when every open connection is busy (a head complete: its body, handler or response under
  way) is the new one answered a fixed 503 and closed at once, so busy connections are never cut.
* ``max_head_bytes`` (431), ``max_headers`` (431), ``max_url_bytes`` (414): the size of a request head. A body
  larger than the route's ``maxRequestBytes`` gets a 413.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from llmroute.router.openai_errors import RouterError

ENV = {
    "head_timeout_s": "LLMROUTE_HEAD_TIMEOUT",
    "body_timeout_s": "LLMROUTE_BODY_TIMEOUT",
    "idle_timeout_s": "LLMROUTE_IDLE_TIMEOUT",
    "max_connections": "LLMROUTE_MAX_CONNECTIONS",
    "max_head_bytes": "LLMROUTE_MAX_HEAD_BYTES",
    "max_headers": "LLMROUTE_MAX_HEADERS",
    "max_url_bytes": "LLMROUTE_MAX_URL_BYTES",
}
"""The environment variable that sets each limit (an ``llmroute router`` flag of the same name wins)."""
FD_RESERVE = 64
"""File descriptors kept out of the connection cap: config files, the listener, logs, probes."""
EVICT_MIN_WAIT_S = 0.1
"""A connection waiting for its first request head for less than this is not closed to make room: a client that has
just connected gets a round trip to send its request, so a burst of new clients at the cap cannot close each other in
turn before any of them is served."""
EVICT_IDLE_MIN_S = 1.0
"""A keep-alive connection idle after an answer for less than this is not closed to make room: its client is between
two requests (an SDK sends the next one within milliseconds) and would pay a failed request and a retry's back-off;
one idle for longer sits in a pool and costs its client a reconnect."""
K = TypeVar("K")


@dataclass(frozen=True)
class Limits:
    """What one client connection may cost the router; every field is positive."""

    head_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 75.0
    max_connections: int = 4096
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    max_url_bytes: int = 8190

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{ENV[f.name]} (--{flag(f.name)}) must be a positive finite number, got {value}")
        if self.max_url_bytes >= self.max_head_bytes:
            raise ValueError(
                f"the URL limit ({self.max_url_bytes} bytes) must be below the head limit "
                f"({self.max_head_bytes} bytes): the URL is part of the head"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """The defaults, overridden by the ``LLMROUTE_*`` variables set (non-empty) in ``env``."""
        env = os.environ if env is None else env
        values: dict[str, float | int] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV[f.name], "").strip()
            if raw:
                values[f.name] = _number(raw, float if f.type == "float" else int, ENV[f.name])
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, overrides: Mapping[str, float | int | None]) -> Limits:
        """These limits with the ``overrides`` that are not None (flags given on the command line)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def flag(name: str) -> str:
    """The command-line flag of the :class:`Limits` field ``name`` (``head_timeout_s`` -> ``head-timeout``)."""
    return name.removesuffix("_s").replace("_", "-")


def connection_cap(configured: int, fd_limit: int) -> int:
    """The connection cap a process with ``fd_limit`` file descriptors can honour: each client connection costs one
    and each request it makes may hold an upstream connection, so at most half of what is left after
    :data:`FD_RESERVE`, and never more than ``configured``."""
    return max(1, min(configured, (fd_limit - FD_RESERVE) // 2))


def evictee(waiting: Iterable[tuple[K, float]], now: float, min_wait_s: float = EVICT_MIN_WAIT_S) -> K | None:
    """The connection to close so a new one can be admitted at the cap, or None (refuse the new one: 503).

    ``waiting``: open connections waiting for a request head, each with the time it began waiting (accepted, or its
    last response sent); busy connections are not in it and are never chosen. The one waiting longest wins, if it
    has waited at least ``min_wait_s`` by ``now``; ties go to the first listed (:func:`evictee_at_cap` asks it of
    the connections that never sent a request first, then of the idle keep-alive ones)."""
    oldest: K | None = None
    oldest_since = now - min_wait_s
    for conn, since in waiting:
        if since <= oldest_since and (oldest is None or since < oldest_since):
            oldest, oldest_since = conn, since
    return oldest


def evictee_at_cap(
    fresh: Iterable[tuple[K, float]], idle: Iterable[tuple[K, float]], now: float
) -> K | None:
    """The connection to close so a new one can be admitted at the cap, or None (refuse the new one: 503).

    First the one waiting longest for its first request head (``fresh``: accepted, no complete head yet - a slow or
    silent client, or a slowloris' half head) once it has waited :data:`EVICT_MIN_WAIT_S`; only where none has, the
    keep-alive connection idle longest after an answer (``idle``) once idle :data:`EVICT_IDLE_MIN_S`. A client that
    has been served and is about to send its next request is not the one closed while connections that never sent a
    request hold slots (:func:`evictee` on each, oldest first)."""
    victim = evictee(fresh, now)
    return victim if victim is not None else evictee(idle, now, EVICT_IDLE_MIN_S)


def _number(raw: str, kind: type[float] | type[int], name: str) -> float | int:
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f'{name} must be a number, got "{raw[:40]}"') from None


def malformed(reason: str) -> RouterError:
    """A request that is not valid HTTP/1.1; ``reason`` names the rule it broke, never the bytes that broke it."""
    return RouterError(
        400, f"The request is not valid HTTP/1.1: {reason}.", "invalid_request_error", "malformed_request"
    )


def undecodable_body() -> RouterError:
    """A body whose chunked framing or ``Content-Encoding`` is broken (found while reading it)."""
    return malformed("the body's chunked framing or Content-Encoding is broken")


def head_too_large(limit: int, what: str) -> RouterError:
    return RouterError(
        431,
        f"The request head exceeds the limit of {limit} {what}.",
        "invalid_request_error",
        "request_header_fields_too_large",
    )


def url_too_long(limit: int) -> RouterError:
    return RouterError(
        414, f"The request URL exceeds the limit of {limit} bytes.", "invalid_request_error", "uri_too_long"
    )


def body_timeout(limit_s: float) -> RouterError:
    return RouterError(
        408,
        f"The request body did not arrive within {limit_s:g} s of its head.",
        "invalid_request_error",
        "request_timeout",
    )


def too_many_connections(limit: int) -> RouterError:
    return RouterError(
        503,
        f"The router is at its limit of {limit} open connections; retry shortly.",
        "server_error",
        "too_many_connections",
        headers={"Retry-After": "1"},
    )


def http_status(status: int, reason: str) -> RouterError:
    """An error HTTP itself raised (an unknown method, a path not in origin form, an unmet ``Expect``)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return RouterError(status, f"{reason}.", kind, reason.lower().replace(" ", "_"))


def internal_error() -> RouterError:
    return RouterError(500, "The router failed to handle this request.", "server_error", "internal_error")
