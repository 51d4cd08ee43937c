"""The audit trail's records: what one request did, as one JSON line, and whether that line is kept.

Owns the record schema (``docs/audit.md``; ``docs/audit.schema.json`` is its JSON Schema, held to this module by
the tests) and the sampling rule. A record is built from facts the router already has - names from the config
(route, published model, data classes, providers and their jurisdictions and regions), the detector's type names,
HTTP statuses and the bounded retry vocabulary of :mod:`llmroute.core.retry` - and never from a request or answer
body, a key or a header value: nothing a client writes reaches a record except through those vocabularies (an
unknown model or class is ``null``). The caller's identity (``namespace/serviceaccount`` or a token's name, set by
the router's access check) is the one exception, and it is never a credential.

Attempts record **why the request moved on**: the classified outcome (``unavailable``, ``ttft_timeout``,
``balance_exhausted``...) and what the router did next (:class:`Next`). An attempt a drill failed was never sent
(``sent: false``).

Sampling (:func:`keep`) is a pure function of the request's end and ``rng``: requests refused for residency (403
``no_compliant_backend``), failed closed (503 ``no_healthy_backend``, a ModelPool hold that ran out included),
blocked for personal data (400 ``pii_blocked``) or from callers the route's access check refused (401
``unauthenticated``, 403 ``forbidden``) are always kept, because they are what an auditor asks about.

Pure: the wall-clock time is an argument. Used by :mod:`llmroute.router.proxy` and :mod:`llmroute.router.failover`
(through a :class:`Trace` per request) and written by :mod:`llmroute.router.audit`.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from llmroute.core.retry import Action, Outcome
from llmroute.core.router_config import ProviderTarget

KIND = "llmroute.audit"
"""The ``kind`` of every audit line: what a log pipeline routes on."""
SCHEMA_VERSION = 1
UNAUTHENTICATED, FORBIDDEN = "unauthenticated", "forbidden"
"""Outcomes of callers the route's access check refused (401, 403) before their request was read."""
ALWAYS_KEPT_OUTCOMES = frozenset({"no_compliant_backend", "no_healthy_backend", UNAUTHENTICATED, FORBIDDEN})
ENDPOINTS = {
    "/chat/completions": "chat/completions",
    "/completions": "completions",
    "/embeddings": "embeddings",
    "/models": "models",
}
ALWAYS_KEPT_ERRORS = frozenset({"pii_blocked"})


class Next(StrEnum):
    """What the router did after an attempt."""

    ANSWERED = "answered"  # its answer went to the client
    RETURNED = "returned"  # an upstream 4xx that is the client's fault, returned as it came
    FAILOVER = "failover"  # retryable (429, 5xx, timeouts, resets): the next backend, or a retry after backoff
    CIRCUIT_OPENED = "circuit_opened"  # 401/403/404: the backend is misconfigured, out until its probes pass
    TAKEN_OUT = "taken_out"  # 402: the provider is out until it recovers
    STREAM_BROKEN = "stream_broken"  # the stream broke after its first event: the client got an error event
    CLIENT_CLOSED = "client_closed"  # the client left


_AFTER_FAILURE = {
    Action.FAILOVER: Next.FAILOVER,
    Action.MISCONFIGURED: Next.CIRCUIT_OPENED,
    Action.TAKE_OUT: Next.TAKEN_OUT,
    Action.RETURN: Next.RETURNED,
}
_AFTER_ANSWER = {
    "ok": Next.ANSWERED,
    "upstream_client_error": Next.RETURNED,
    "stream_error": Next.STREAM_BROKEN,
    "client_closed": Next.CLIENT_CLOSED,
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream attempt: where it went (by the config's facts), how it ended and what came next."""

    provider: str
    jurisdiction: str
    region: str | None
    status: int | None  # the upstream's HTTP status; None when none came (connect error, timeout, reset)
    outcome: str  # core.retry's reason ("ok", "unavailable", "ttft_timeout", ...) or the request's outcome
    next: Next
    sent: bool = True  # False: a drill failed it without sending anything

    def wire(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "jurisdiction": self.jurisdiction,
            "region": self.region,
            "status": self.status,
            "outcome": self.outcome,
            "next": str(self.next),
            "sent": self.sent,
        }


@dataclass(slots=True)
class Trace:
    """What one request did, filled in as it goes; owned by that request alone."""

    request_id: str
    time_epoch: float  # wall clock when the request arrived
    started: float  # time.perf_counter() when it arrived (latencies below a millisecond: the loop clock ticks in ms)
    endpoint: str  # chat/completions, completions or embeddings
    stream: bool = False
    model: str | None = None
    data_class: str | None = None
    classes: tuple[str, ...] = ()
    detected: tuple[str, ...] = ()
    attempts: list[Attempt] = field(default_factory=list)
    first_byte: float | None = None  # perf_counter time the first byte of a streamed answer went out

    def failed(self, target: ProviderTarget, status: int | None, outcome: Outcome, sent: bool = True) -> None:
        """An attempt that did not answer (or answered what fails over)."""
        self._note(target, status, outcome.reason, _AFTER_FAILURE[outcome.action], sent)

    def served(self, target: ProviderTarget, status: int, outcome: str) -> None:
        """The attempt that ended the request (``outcome``: the request's, e.g. ``ok`` or ``stream_error``)."""
        self._note(target, status, outcome, _AFTER_ANSWER.get(outcome, Next.ANSWERED))

    def _note(self, target: ProviderTarget, status: int | None, outcome: str, after: Next, sent: bool = True) -> None:
        self.attempts.append(Attempt(target.name, target.jurisdiction, target.region, status, outcome, after, sent))


@dataclass(frozen=True, slots=True)
class End:
    """How the request ended, as the client saw it."""

    status: int  # HTTP status sent (200 for a stream, even one that later carried an error event; 499: client left)
    outcome: str  # the router's request outcome (llmroute_requests_total{outcome})
    error: str | None  # the router's own error code when it answered an error (never its message)
    provider: str | None  # the provider that served
    ended: float  # loop time


def endpoint(path: str) -> str:
    """The endpoint a request path names (``/v1`` optional), or ``other``: a path is client input, never recorded."""
    return ENDPOINTS.get(path.removeprefix("/v1"), "other")


def keep(outcome: str, error: str | None, sample_rate: float, rng: random.Random) -> bool:
    """Whether a request's record is written: denials and fail-closed ones always, others with ``sample_rate``."""
    if outcome in ALWAYS_KEPT_OUTCOMES or error in ALWAYS_KEPT_ERRORS:
        return True
    return sample_rate >= 1.0 or (sample_rate > 0.0 and rng.random() < sample_rate)


def record(
    trace: Trace, end: End, *, route: str, config_hash: str, identity: str | None, sample_rate: float
) -> dict[str, Any]:
    """The audit record of a finished request (keys in the documented order)."""
    return {
        "kind": KIND,
        "v": SCHEMA_VERSION,
        "time": rfc3339_ms(trace.time_epoch),
        "requestId": trace.request_id,
        "route": route,
        "endpoint": trace.endpoint,
        "model": trace.model,
        "stream": trace.stream,
        "dataClass": trace.data_class,
        "classes": list(trace.classes),
        "detected": list(trace.detected),
        "identity": identity,
        "attempts": [a.wire() for a in trace.attempts],
        "provider": end.provider,
        "status": end.status,
        "outcome": end.outcome,
        "error": end.error,
        "latencyMs": _ms(end.ended - trace.started),
        "ttfbMs": None if trace.first_byte is None else _ms(trace.first_byte - trace.started),
        "configHash": config_hash,
        "sampleRate": sample_rate,
    }


def line(rec: dict[str, Any]) -> bytes:
    """One record as one line of ASCII JSON (non-ASCII escaped, so no byte can split or forge a line)."""
    data = orjson.dumps(rec)  # ~10x the standard library's speed; names in records are ASCII in practice
    if not data.isascii():
        data = json.dumps(rec, separators=(",", ":"), ensure_ascii=True).encode()
    return data + b"\n"


def rfc3339_ms(epoch: float) -> str:
    """``2026-12-04T20:01:37.123Z``: RFC 3339 in UTC with milliseconds."""
    whole, millis = divmod(math.floor(epoch * 1000 + 0.0005), 1000)  # truncated, bar float noise
    return _second(whole) + f".{millis:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def _ms(seconds: float) -> float:
    return round(max(seconds, 0.0) * 1000, 3)
