"""Fault plans for the provider emulator: what can go wrong, and the seeded draw that decides each request.

Owns :class:`FaultPlan` (the JSON document behind ``GET/PUT /_emulator/faults``), the named
:data:`INCIDENTS` that replay DeepSeek's recorded outages (reference/deepseek-api-safety-and-outages.txt)
and :func:`draw`, the one place randomness enters. Pure: no I/O, no clock; the caller owns the RNG.
Used by :mod:`llmroute.emulator.app` (per request) and :mod:`llmroute.emulator.delivery` (timing).

Order in which a request meets the plan: ``latency`` -> ``refuse`` -> authentication and body validation
(real 401/400/422) -> ``status`` / ``error_rate`` -> success path shaped by ``first_token_delay``,
``token_interval``, ``stall_after_tokens``, ``cut_after_tokens`` and ``idle_close``. The first group
(latency, refuse, status, error_rate) applies to every provider endpoint, ``GET /models`` included, so
health probes see the outage too; the timing group applies to ``/chat/completions`` and ``/completions``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ErrorStatus = Literal[400, 401, 402, 403, 404, 422, 429, 500, 502, 503, 504]


class FaultPlan(BaseModel):
    """How one emulated provider misbehaves; the default plan is a healthy provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency: float = Field(
        0.0, ge=0, description="Seconds before anything happens (before headers): network distance, e.g. "
        "China-US congestion that makes DeepSeek 2-3x slower in Chinese business hours.")
    refuse: bool = Field(
        False, description="Reset the connection (TCP RST) without any response: the Jan 2025 ~18 h full "
        "outage (DDoS + infrastructure failure). See also Emulator.stop_listening() for ECONNREFUSED.")
    status: ErrorStatus | None = Field(
        None, description="Answer every request with this status and DeepSeek's error body for it: "
        "Jul 2025 capacity overload (503), 402 balance exhausted, 429 adaptive rate limiting, 401 bad key.")
    error_rate: float = Field(
        0.0, ge=0, le=1, description="Share of requests answered with `error_status`: Mar 2025 (0.5, GPU "
        "cluster maintenance, ~6 h) and Feb 2026 (0.3, partial outage, ~8 h).")
    error_status: ErrorStatus = Field(503, description="Status used by `error_rate`.")
    retry_after: int | None = Field(
        None, ge=0, description="Seconds sent as `Retry-After` on 429 and 503 answers.")
    first_token_delay: float = Field(
        0.0, ge=0, description="Seconds of queueing before the first token; headers (HTTP 200) go out at "
        "once, then `: keep-alive` SSE comments (stream) or blank lines (non-stream) every "
        "`keepalive_interval`: the Nov 2025 ~4 h incident (5-10 s time-to-first-token).")
    first_token_jitter: float = Field(
        0.0, ge=0, description="Uniform extra 0..jitter seconds added to `first_token_delay` (seeded).")
    keepalive_interval: float = Field(
        1.0, gt=0, description="Seconds between keep-alive comments / blank lines while nothing is produced.")
    token_interval: float = Field(0.0, ge=0, description="Seconds between generated tokens.")
    stall_after_tokens: int | None = Field(
        None, ge=0, description="After this many tokens send nothing more but keep the connection open "
        "(a hung backend mid-stream; no keep-alives). Ends only by client timeout or `idle_close`.")
    cut_after_tokens: int | None = Field(
        None, ge=0, description="After this many tokens hang up mid-body (FIN, no terminating chunk, "
        "no finish chunk, no `[DONE]`). A value equal to the token count cuts just before the finish chunk.")
    idle_close: float | None = Field(
        600.0, gt=0, description="Hang up after this many seconds without a token, keep-alives "
        "notwithstanding, as DeepSeek does after 10 minutes (the default). None: never.")


INCIDENTS: dict[str, FaultPlan] = {
    "full-outage": FaultPlan(refuse=True),
    "overloaded": FaultPlan(status=503),
    "half-errors": FaultPlan(error_rate=0.5, error_status=503),
    "slow-first-token": FaultPlan(first_token_delay=5.0, first_token_jitter=5.0),
    "partial-outage": FaultPlan(error_rate=0.3, error_status=503),
    "rate-limited": FaultPlan(status=429, retry_after=2),
    "balance-exhausted": FaultPlan(status=402),
}
"""DeepSeek's recorded incident shapes (and two account-level failures) as ready-made plans."""


@dataclass(frozen=True, slots=True)
class Draw:
    """What the plan decided for one request that reached the fault stage."""

    fail_status: int | None
    first_token_delay: float


def draw(plan: FaultPlan, rng: random.Random) -> Draw:
    """Decide one request. Always consumes exactly two numbers from ``rng``, whatever the plan says,
    so the k-th request of a run gets the same rolls for a given seed even if the plan changes live:
    request k fails under ``error_rate`` iff its first roll is ``< error_rate``."""
    roll, jitter = rng.random(), rng.random()
    if plan.status is not None:
        status: int | None = plan.status
    else:
        status = plan.error_status if roll < plan.error_rate else None
    return Draw(status, plan.first_token_delay + jitter * plan.first_token_jitter)
