"""The router's lock-free per-request series render exactly as ``prometheus_client``'s own types would."""

from __future__ import annotations

from enum import StrEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from llmroute.router.hot_metrics import LoopCounter, LoopHistogram

BUCKETS = (0.005, 0.01, 0.025, 0.1, 1, 2.5, 60)


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"


def _pair() -> tuple[CollectorRegistry, Counter, Histogram, CollectorRegistry, LoopCounter, LoopHistogram]:
    ref = CollectorRegistry()
    counter = Counter("t_requests", "Requests.", ["provider", "outcome"], registry=ref)
    histogram = Histogram("t_seconds", "Time.", ["provider"], registry=ref, buckets=BUCKETS)
    ours = CollectorRegistry()
    return (ref, counter, histogram, ours, LoopCounter("t_requests", "Requests.", ["provider", "outcome"], ours),
            LoopHistogram("t_seconds", "Time.", ["provider"], ours, BUCKETS))


def _without_created(text: bytes) -> bytes:
    return b"\n".join(line for line in text.split(b"\n") if b"_created" not in line)


events = st.lists(st.tuples(
    st.sampled_from(["a", "b", "c-d"]),
    st.sampled_from([*Outcome, "ok", "other"]),
    st.one_of(st.sampled_from(BUCKETS), st.floats(0, 100, allow_nan=False)),
    st.integers(0, 3),
), max_size=40)


@settings(max_examples=200, deadline=None)
@given(events)
def test_the_exposition_is_what_prometheus_client_renders_for_the_same_updates(updates: list) -> None:
    ref, counter, histogram, ours, loop_counter, loop_histogram = _pair()
    for provider, outcome, seconds, amount in updates:
        counter.labels(provider, outcome).inc(amount)
        loop_counter.labels(provider, outcome).inc(amount)
        histogram.labels(provider).observe(seconds)  # (values equal to a bound land in its bucket: ``le``)
        loop_histogram.labels(provider).observe(seconds)
    counter.labels("pre", "created")  # a pre-created series shows at zero
    loop_counter.labels("pre", "created")
    assert generate_latest(ours) == _without_created(generate_latest(ref))


def test_a_strenum_and_its_string_are_one_series() -> None:
    ours = CollectorRegistry()
    c = LoopCounter("t_x", "X.", ["outcome"], ours)
    c.labels(Outcome.OK).inc()
    c.labels("ok").inc(2)
    assert c.labels("ok") is c.labels(Outcome.OK)
    assert b't_x_total{outcome="ok"} 3.0' in generate_latest(ours)


def test_misuse_is_refused_as_prometheus_client_refuses_it() -> None:
    ours = CollectorRegistry()
    c = LoopCounter("t_y", "Y.", ["a", "b"], ours)
    with pytest.raises(ValueError, match="2 label values expected, 1 given"):
        c.labels("only-one")
    with pytest.raises(ValueError, match="non-negative"):
        c.labels("x", "y").inc(-1)
    with pytest.raises(ValueError, match="increasing"):
        LoopHistogram("t_z", "Z.", [], ours, (1, 0.5))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        LoopCounter("t_y", "Y again.", ["a", "b"], ours)
