"""Retry policy: every status and transport failure -> action and reason, Retry-After, jittered backoff bounds."""

from __future__ import annotations

import random
import statistics

import pytest

from llmroute.core.retry import (
    MAX_RETRY_AFTER_S,
    REASONS,
    Action,
    FailureKind,
    Outcome,
    backoff_s,
    classify_failure,
    classify_status,
    parse_retry_after,
)

pytestmark = pytest.mark.unit

# Wed, 21 Oct 2015 07:28:00 GMT
DATE_EPOCH = 1445412480.0
DATE = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize(
    ("status", "action", "reason", "circuit_failure"),
    [
        pytest.param(200, Action.RETURN, "ok", False, id="200-ok"),
        pytest.param(204, Action.RETURN, "ok", False, id="204-ok"),
        pytest.param(400, Action.RETURN, "client_error", False, id="400-bad-request"),
        pytest.param(401, Action.MISCONFIGURED, "unauthorized", True, id="401-unauthorized"),
        pytest.param(402, Action.TAKE_OUT, "balance_exhausted", True, id="402-balance"),
        pytest.param(403, Action.MISCONFIGURED, "forbidden", True, id="403-forbidden"),
        pytest.param(404, Action.MISCONFIGURED, "not_found", True, id="404-not-found"),
        pytest.param(413, Action.RETURN, "client_error", False, id="413-too-large"),
        pytest.param(422, Action.RETURN, "client_error", False, id="422-invalid-params"),
        pytest.param(429, Action.FAILOVER, "rate_limited", True, id="429-rate-limited"),
        pytest.param(500, Action.FAILOVER, "server_error", True, id="500-server-error"),
        pytest.param(502, Action.FAILOVER, "bad_gateway", True, id="502-bad-gateway"),
        pytest.param(503, Action.FAILOVER, "unavailable", True, id="503-unavailable"),
        pytest.param(504, Action.FAILOVER, "gateway_timeout", True, id="504-gateway-timeout"),
        pytest.param(418, Action.RETURN, "client_error", False, id="418-unknown-4xx-is-client"),
        pytest.param(599, Action.FAILOVER, "server_error", True, id="599-unknown-5xx-is-transient"),
        pytest.param(302, Action.FAILOVER, "unexpected_status", True, id="302-redirect-unexpected"),
        pytest.param(101, Action.FAILOVER, "unexpected_status", True, id="101-unexpected"),
        pytest.param(600, Action.FAILOVER, "unexpected_status", True, id="600-out-of-range"),
    ],
)
def test_classify_status(status: int, action: Action, reason: str, circuit_failure: bool) -> None:
    assert classify_status(status) == Outcome(action, reason, None, circuit_failure)


@pytest.mark.parametrize(
    ("kind", "reason", "circuit_failure"),
    [
        pytest.param(FailureKind.CONNECT, "connect_error", True, id="connect"),
        pytest.param(FailureKind.RESET, "reset", True, id="reset"),
        pytest.param(FailureKind.TTFT, "ttft_timeout", True, id="ttft"),
        pytest.param(FailureKind.IDLE, "idle_timeout", True, id="idle"),
        pytest.param(FailureKind.TOTAL, "total_timeout", False, id="total-is-the-requests-budget"),
    ],
)
def test_classify_failure(kind: FailureKind, reason: str, circuit_failure: bool) -> None:
    assert classify_failure(kind) == Outcome(Action.FAILOVER, reason, None, circuit_failure)


@pytest.mark.parametrize(
    ("status", "header", "now_epoch", "expected"),
    [
        pytest.param(429, "7", None, 7.0, id="seconds"),
        pytest.param(429, " 3 ", None, 3.0, id="seconds-padded"),
        pytest.param(429, "1.5", None, 1.5, id="fractional-seconds"),
        pytest.param(429, "0", None, 0.0, id="zero"),
        pytest.param(503, "99999", None, MAX_RETRY_AFTER_S, id="seconds-capped"),
        pytest.param(503, DATE, DATE_EPOCH - 30, 30.0, id="http-date"),
        pytest.param(503, "Wed, 21 Oct 2015 07:28:00 -0000", DATE_EPOCH - 30, 30.0, id="http-date-naive-utc"),
        pytest.param(429, DATE, DATE_EPOCH + 5, 0.0, id="http-date-in-the-past"),
        pytest.param(429, DATE, DATE_EPOCH - 86400, MAX_RETRY_AFTER_S, id="http-date-capped"),
        pytest.param(429, DATE, None, None, id="http-date-without-clock"),
        pytest.param(429, "soon", 0.0, None, id="garbage"),
        pytest.param(429, "-1", None, None, id="negative"),
        pytest.param(429, "", 0.0, None, id="empty"),
        pytest.param(500, "2", None, 2.0, id="any-failover-carries-it"),
        pytest.param(400, "2", None, None, id="return-ignores-it"),
        pytest.param(402, "2", None, None, id="take-out-ignores-it"),
    ],
)
def test_retry_after(status: int, header: str, now_epoch: float | None, expected: float | None) -> None:
    assert classify_status(status, header, now_epoch=now_epoch).retry_after_s == expected


def test_retry_after_keeps_the_classification() -> None:
    assert classify_status(429, "4") == Outcome(Action.FAILOVER, "rate_limited", 4.0, True)
    assert parse_retry_after(DATE, now_epoch=DATE_EPOCH - 12.5) == 12.5


def test_reasons_are_the_bounded_vocabulary() -> None:
    assert set(REASONS) == {
        "rate_limited", "server_error", "bad_gateway", "unavailable", "gateway_timeout", "connect_error", "reset",
        "ttft_timeout", "idle_timeout", "total_timeout", "unauthorized", "forbidden", "not_found",
        "balance_exhausted", "client_error", "ok", "unexpected_status",
    }
    assert len(REASONS) == len(set(REASONS))


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        pytest.param(0, 0.2, id="attempt-0-base"),
        pytest.param(1, 0.4, id="attempt-1-doubles"),
        pytest.param(3, 1.6, id="attempt-3"),
        pytest.param(4, 2.0, id="attempt-4-capped"),
        pytest.param(1000, 2.0, id="huge-attempt-capped-no-overflow"),
    ],
)
def test_backoff_bounds(attempt: int, ceiling: float) -> None:
    rng = random.Random(1)
    draws = [backoff_s(attempt, base_s=0.2, cap_s=2.0, rng=rng) for _ in range(2000)]
    assert min(draws) >= 0.0
    assert max(draws) <= ceiling
    assert max(draws) > ceiling * 0.99  # full jitter reaches the ceiling


def test_backoff_is_the_seeded_uniform_draw() -> None:
    assert backoff_s(2, base_s=0.25, cap_s=5.0, rng=random.Random(42)) == random.Random(42).uniform(0.0, 1.0)


def test_backoff_full_jitter_is_uniform() -> None:
    rng = random.Random(7)
    draws = [backoff_s(3, base_s=0.25, cap_s=10.0, rng=rng) for _ in range(4000)]  # uniform(0, 2.0)
    assert statistics.fmean(draws) == pytest.approx(1.0, abs=0.04)
    quarters = [sum(1 for d in draws if q * 0.5 <= d < (q + 1) * 0.5) for q in range(4)]
    assert all(abs(n - 1000) < 100 for n in quarters), quarters


@pytest.mark.parametrize(
    ("retry_after_s", "low", "high"),
    [
        pytest.param(1.5, 1.5, 1.5, id="longer-than-jitter-wins"),
        pytest.param(0.01, 0.01, 0.2, id="shorter-is-a-floor"),
        pytest.param(2.0, 2.0, 2.0, id="equal-to-cap-waits"),
        pytest.param(2.01, 0.0, 0.0, id="beyond-cap-means-skip-backend"),
        pytest.param(600.0, 0.0, 0.0, id="far-beyond-cap"),
    ],
)
def test_backoff_respects_retry_after(retry_after_s: float, low: float, high: float) -> None:
    rng = random.Random(3)
    for _ in range(200):
        assert low <= backoff_s(0, base_s=0.2, cap_s=2.0, rng=rng, retry_after_s=retry_after_s) <= high


def test_backoff_rejects_negative_attempt() -> None:
    with pytest.raises(ValueError, match="0-based"):
        backoff_s(-1, base_s=0.2, cap_s=2.0, rng=random.Random(0))
