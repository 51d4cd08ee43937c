"""Retry policy: what one failed (or finished) upstream attempt means, and how long to wait before the next one.

Owns the mapping from an upstream HTTP status or transport failure to an :class:`Outcome` (DESIGN.md invariant 4,
and the error-code table of the DeepSeek integration guide), Retry-After parsing, and the jittered backoff. Called
by the router's upstream and proxy modules (:mod:`llmroute.router.upstream`, :mod:`llmroute.router.proxy`) and by
``llmroute explain``; the outcome feeds :mod:`llmroute.core.circuit`:

* ``FAILOVER`` and everything with ``circuit_failure`` -> ``circuit.record(c, ok=False, ...)``;
* ``RETURN`` -> ``circuit.record(c, ok=True, ...)`` (the backend answered; the request was at fault);
* ``MISCONFIGURED`` and ``TAKE_OUT`` -> ``circuit.open_now(c, now, "balance exhausted (402)")`` (or "unauthorized
  (401)", ...): out until a good probe. Caveat: a provider's unbilled ``GET /models`` may well answer 200 with an
  empty balance, so a 402'd backend returns after ``open_s`` and costs one (invisible) failover per cycle.

Pure: the clock is the ``now_epoch`` argument (only needed for HTTP-date Retry-After) and randomness the ``rng``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum

MAX_RETRY_AFTER_S = 600.0
"""Retry-After values are capped here: DeepSeek closes any request idle for 10 minutes, so no request waits longer."""


class Action(StrEnum):
    """What the proxy does with an attempt's result."""

    RETURN = "return"
    FAILOVER = "failover"
    MISCONFIGURED = "misconfigured"
    TAKE_OUT = "take_out"


class FailureKind(StrEnum):
    """Transport-level failures reported by the upstream module (no HTTP status was received)."""

    CONNECT = "connect"
    RESET = "reset"
    TTFT = "ttft"
    IDLE = "idle"
    TOTAL = "total"


@dataclass(frozen=True)
class Outcome:
    """The classified result of one attempt; ``reason`` is a bounded metric label (see :data:`REASONS`)."""

    action: Action
    reason: str
    retry_after_s: float | None = None
    circuit_failure: bool = True


_BY_STATUS: dict[int, Outcome] = {
    400: Outcome(Action.RETURN, "client_error", circuit_failure=False),
    413: Outcome(Action.RETURN, "client_error", circuit_failure=False),
    422: Outcome(Action.RETURN, "client_error", circuit_failure=False),
    401: Outcome(Action.MISCONFIGURED, "unauthorized"),
    403: Outcome(Action.MISCONFIGURED, "forbidden"),
    404: Outcome(Action.MISCONFIGURED, "not_found"),
    402: Outcome(Action.TAKE_OUT, "balance_exhausted"),
    429: Outcome(Action.FAILOVER, "rate_limited"),
    500: Outcome(Action.FAILOVER, "server_error"),
    502: Outcome(Action.FAILOVER, "bad_gateway"),
    503: Outcome(Action.FAILOVER, "unavailable"),
    504: Outcome(Action.FAILOVER, "gateway_timeout"),
}
_OK = Outcome(Action.RETURN, "ok", circuit_failure=False)
_OTHER_4XX = Outcome(Action.RETURN, "client_error", circuit_failure=False)
_OTHER_5XX = Outcome(Action.FAILOVER, "server_error")
_UNEXPECTED = Outcome(Action.FAILOVER, "unexpected_status")

_BY_FAILURE: dict[FailureKind, Outcome] = {
    FailureKind.CONNECT: Outcome(Action.FAILOVER, "connect_error"),
    FailureKind.RESET: Outcome(Action.FAILOVER, "reset"),
    FailureKind.TTFT: Outcome(Action.FAILOVER, "ttft_timeout"),
    FailureKind.IDLE: Outcome(Action.FAILOVER, "idle_timeout"),
    # The total budget belongs to the request (all attempts), not to the backend that happened to hold it last.
    FailureKind.TOTAL: Outcome(Action.FAILOVER, "total_timeout", circuit_failure=False),
}

REASONS: tuple[str, ...] = tuple(
    dict.fromkeys(
        o.reason
        for o in (*_BY_STATUS.values(), _OK, _OTHER_4XX, _OTHER_5XX, _UNEXPECTED, *_BY_FAILURE.values())
    )
)
"""Every ``Outcome.reason`` there is, for pre-creating metric label values."""

_DELAY_SECONDS = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*$")


def classify_status(status: int, retry_after: str | None = None, *, now_epoch: float | None = None) -> Outcome:
    """Classify an upstream HTTP status.

    2xx -> RETURN "ok". Listed codes as in the table above; any other 4xx is the client's (RETURN "client_error"),
    any other 5xx transient (FAILOVER "server_error"), and anything else (1xx, 3xx, out of range) is not something
    an OpenAI-compatible API answers a POST with: FAILOVER "unexpected_status". Only FAILOVER outcomes carry
    ``retry_after_s`` (from ``retry_after``; an HTTP-date needs ``now_epoch``, wall-clock seconds).
    """
    if 200 <= status < 300:
        return _OK
    outcome = _BY_STATUS.get(status)
    if outcome is None:
        outcome = _OTHER_4XX if 400 <= status < 500 else _OTHER_5XX if 500 <= status < 600 else _UNEXPECTED
    if outcome.action is not Action.FAILOVER or retry_after is None:
        return outcome
    delay = parse_retry_after(retry_after, now_epoch=now_epoch)
    return outcome if delay is None else Outcome(outcome.action, outcome.reason, delay, outcome.circuit_failure)


def classify_failure(kind: FailureKind) -> Outcome:
    """Classify a transport failure: all fail over; only TOTAL does not count against the backend's circuit."""
    return _BY_FAILURE[kind]


def parse_retry_after(value: str, *, now_epoch: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), in [0, MAX_RETRY_AFTER_S].

    None when the header is malformed, or is an HTTP-date and ``now_epoch`` was not given. A date in the past is 0.
    """
    match = _DELAY_SECONDS.match(value)
    if match:
        return min(float(match.group(1)), MAX_RETRY_AFTER_S)
    if now_epoch is None:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - now_epoch, 0.0), MAX_RETRY_AFTER_S)


def backoff_s(
    attempt: int, *, base_s: float, cap_s: float, rng: random.Random, retry_after_s: float | None = None
) -> float:
    """Seconds to sleep before 0-based ``attempt``: full jitter, ``uniform(0, min(cap_s, base_s * 2**attempt))``.

    With ``retry_after_s`` the result is at least that - unless it exceeds ``cap_s``: then 0.0, meaning "do not
    wait for this backend; fail over elsewhere now" (the caller skips the backend).
    """
    if attempt < 0:
        raise ValueError(f"attempt is 0-based, got {attempt}")
    if retry_after_s is not None and retry_after_s > cap_s:
        return 0.0
    ceiling = cap_s if attempt >= 64 else min(cap_s, base_s * math.ldexp(1.0, attempt))
    delay = rng.uniform(0.0, ceiling)
    return delay if retry_after_s is None else max(delay, retry_after_s)
