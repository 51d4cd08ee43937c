"""Backend selection: priority, weights, health, recovering shares, truncation, explanations, and never a backend
residency did not allow."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping

import pytest

from llmroute.core.circuit import Circuit, State
from llmroute.core.router_config import BackendTarget
from llmroute.core.selection import Plan, Skip, backend_key, earliest_retry_s, plan_attempts
from tests.conftest import CIRCUIT

pytestmark = pytest.mark.unit

S = CIRCUIT
NOW = 100.0
OPEN = Circuit(State.OPEN, since=88.0, reason="5 consecutive failures")
DEGRADED = Circuit(State.DEGRADED, since=95.0, reason="3 consecutive failures")
RECOVERING = Circuit(State.RECOVERING, since=90.0, step=0)


def b(provider: str, priority: int = 0, weight: int = 1) -> BackendTarget:
    return BackendTarget(provider=provider, model="deepseek-chat", priority=priority, weight=weight)


def names(backends: tuple[BackendTarget, ...]) -> list[str]:
    return [x.provider for x in backends]


def plan(allowed: list[BackendTarget], circuits: Mapping[str, Circuit] | None = None, *, seed: int = 0,
         max_attempts: int = 10) -> Plan:
    return plan_attempts(allowed, circuits or {}, S, max_attempts=max_attempts, now=NOW, rng=random.Random(seed))


def firsts(allowed: list[BackendTarget], circuits: Mapping[str, Circuit], draws: int = 4000) -> Counter[str]:
    rng = random.Random(2024)
    return Counter(
        plan_attempts(allowed, circuits, S, max_attempts=10, now=NOW, rng=rng).attempts[0].provider
        for _ in range(draws)
    )


def test_backend_key() -> None:
    assert backend_key(b("together")) == "together/deepseek-chat"


@pytest.mark.parametrize(
    ("allowed", "circuits", "order"),
    [
        pytest.param([b("a", 0), b("b", 1), b("c", 2)], {}, ["a", "b", "c"], id="priority-order"),
        pytest.param([b("c", 2), b("a", 0), b("b", 1)], {}, ["a", "b", "c"], id="unsorted-input-sorted"),
        pytest.param([b("a", 0), b("b", 1)], {"a/deepseek-chat": OPEN}, ["b"], id="open-skipped"),
        pytest.param([b("a", 0, 100), b("b", 0, 1)], {"a/deepseek-chat": DEGRADED}, ["b", "a"],
                     id="degraded-after-healthy-in-group"),
        pytest.param([b("a", 0), b("b", 1)], {"a/deepseek-chat": DEGRADED}, ["a", "b"],
                     id="degraded-before-lower-priority"),
        pytest.param([b("s", 0, 0), b("a", 0), b("c", 1)], {}, ["a", "s", "c"], id="weight-0-standby-last-in-group"),
        pytest.param([b("s", 0, 0), b("t", 0, 0), b("a", 0)], {"s/deepseek-chat": DEGRADED}, ["a", "t", "s"],
                     id="standbys-healthy-first-then-listed-order"),
        pytest.param([b("a", 0), b("b", 1)], {"x/deepseek-chat": OPEN}, ["a", "b"], id="unrelated-circuits-ignored"),
        pytest.param([b("a", 0), b("b", 0, 0)], {"a/deepseek-chat": OPEN}, ["b"], id="standby-serves-when-peer-open"),
    ],
)
def test_order(allowed: list[BackendTarget], circuits: dict[str, Circuit], order: list[str]) -> None:
    for seed in range(20):
        assert names(plan(allowed, circuits, seed=seed).attempts) == order


def test_open_is_skipped_with_reason() -> None:
    p = plan([b("a", 0), b("b", 1)], {"a/deepseek-chat": OPEN})
    assert p.skipped == (Skip(b("a", 0), "circuit open since 12s: 5 consecutive failures"),)


def test_weights_split_traffic() -> None:
    counts = firsts([b("a", 0, 3), b("b", 0, 1), b("c", 1, 1)], {})
    assert counts.keys() == {"a", "b"}
    assert abs(counts["a"] - 3000) < 150, counts


def test_weighted_shuffle_second_place_is_the_other() -> None:
    rng = random.Random(5)
    for _ in range(200):
        p = plan_attempts([b("a", 0, 3), b("b", 0, 1), b("c", 0, 2)], {}, S, max_attempts=10, now=NOW, rng=rng)
        assert sorted(names(p.attempts)) == ["a", "b", "c"]


def test_recovering_share_is_honoured() -> None:
    counts = firsts([b("r", 0), b("h", 1)], {"r/deepseek-chat": RECOVERING})
    assert abs(counts["r"] - 400) < 80, counts  # 10% of 4000


def test_recovering_share_scales_its_normal_traffic() -> None:
    half = Circuit(State.RECOVERING, since=90.0, step=1)
    counts = firsts([b("r", 0), b("h", 0)], {"r/deepseek-chat": half})
    assert abs(counts["r"] - 1000) < 100, counts  # 50% share of a 50% split


def test_recovering_not_picked_is_a_last_resort() -> None:
    allowed = [b("r", 0), b("h", 1), b("l", 2)]
    plans = {tuple(names(plan(allowed, {"r/deepseek-chat": RECOVERING}, seed=s).attempts)) for s in range(50)}
    assert plans == {("r", "h", "l"), ("h", "l", "r")}


def test_all_open_gives_an_empty_plan_with_reasons() -> None:
    allowed = [b("a", 0), b("b", 1)]
    circuits = {"a/deepseek-chat": OPEN, "b/deepseek-chat": Circuit(State.OPEN, since=99.0, reason="unauthorized")}
    p = plan(allowed, circuits)
    assert p == Plan((), (Skip(b("a", 0), "circuit open since 12s: 5 consecutive failures"),
                          Skip(b("b", 1), "circuit open since 1s: unauthorized")), ())
    assert p.explain() == [
        "no backend to try: all 2 allowed backends skipped",
        "skipped a/deepseek-chat (priority 0, weight 1): circuit open since 12s: 5 consecutive failures",
        "skipped b/deepseek-chat (priority 1, weight 1): circuit open since 1s: unauthorized",
    ]
    assert earliest_retry_s(allowed, circuits, S, now=NOW) == 18.0


def test_nothing_allowed() -> None:
    assert plan([]).explain() == ["no backend to try: none allowed"]
    assert earliest_retry_s([], {}, S, now=NOW) is None


@pytest.mark.parametrize(
    ("max_attempts", "tried", "beyond"),
    [
        pytest.param(0, [], ["a", "b", "c", "d"], id="zero"),
        pytest.param(2, ["a", "b"], ["c", "d"], id="two-of-four"),
        pytest.param(4, ["a", "b", "c", "d"], [], id="exact"),
        pytest.param(9, ["a", "b", "c", "d"], [], id="more-than-candidates"),
    ],
)
def test_max_attempts_truncates(max_attempts: int, tried: list[str], beyond: list[str]) -> None:
    p = plan([b("a", 0), b("b", 1), b("c", 2), b("d", 3)], max_attempts=max_attempts)
    assert names(p.attempts) == tried
    assert [(s.backend.provider, s.reason) for s in p.skipped] == [
        (n, f"healthy; beyond max_attempts={max_attempts}") for n in beyond
    ]


def test_negative_max_attempts_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        plan([b("a")], max_attempts=-1)


def test_explain() -> None:
    allowed = [b("deepseek", 0, 3), b("together", 0, 1), b("fireworks", 1, 1), b("bedrock", 2, 0), b("vllm", 3, 1)]
    circuits = {
        "together/deepseek-chat": DEGRADED,
        "fireworks/deepseek-chat": OPEN,
        "vllm/deepseek-chat": Circuit(State.RECOVERING, since=90.0, step=1),
    }
    p = plan(allowed, circuits, seed=0, max_attempts=3)  # seed 0 does not pick vllm at its 50% share
    assert p.explain() == [
        "attempt 1: deepseek/deepseek-chat (priority 0, weight 3): healthy",
        "attempt 2: together/deepseek-chat (priority 0, weight 1): degraded since 5s: 3 consecutive failures: "
        "after healthy peers",
        "attempt 3: bedrock/deepseek-chat (priority 2, weight 0): weight 0 (standby): healthy",
        "skipped fireworks/deepseek-chat (priority 1, weight 1): circuit open since 12s: 5 consecutive failures",
        "skipped vllm/deepseek-chat (priority 3, weight 1): recovering at 50% share (step 2/3): "
        "not picked, last resort; beyond max_attempts=3",
    ]


def test_explain_recovering_picked() -> None:
    p = plan([b("r", 0)], {"r/deepseek-chat": Circuit(State.RECOVERING, since=90.0, step=2)})
    assert p.explain() == [
        "attempt 1: r/deepseek-chat (priority 0, weight 1): recovering at 100% share (step 3/3): picked",
    ]


def test_explain_tolerates_a_plan_without_notes() -> None:
    assert Plan((b("a"),), ()).explain() == ["attempt 1: a/deepseek-chat (priority 0, weight 1)"]


def test_same_seed_same_plan() -> None:
    allowed = [b(f"p{i}", i % 2, i % 3) for i in range(6)]
    circuits = {"p1/deepseek-chat": RECOVERING, "p2/deepseek-chat": DEGRADED}
    assert plan(allowed, circuits, seed=9) == plan(allowed, circuits, seed=9)


def test_selection_never_introduces_a_backend_residency_did_not_allow() -> None:
    universe = [b(f"p{i}", priority=i % 3, weight=i % 4) for i in range(8)]
    states = [Circuit(), OPEN, DEGRADED, RECOVERING, Circuit(State.RECOVERING, since=90.0, step=2)]
    rng = random.Random(31337)
    for _ in range(500):
        allowed = rng.sample(universe, rng.randint(0, len(universe)))
        circuits = {backend_key(x): rng.choice(states) for x in universe if rng.random() < 0.7}
        max_attempts = rng.randint(0, 10)
        p = plan_attempts(allowed, circuits, S, max_attempts=max_attempts, now=NOW, rng=rng)
        assert set(p.attempts) <= set(allowed)
        assert len(p.attempts) <= max_attempts
        assert sorted(names(p.attempts) + [s.backend.provider for s in p.skipped]) == sorted(names(tuple(allowed)))
        assert not any(circuits.get(backend_key(x), Circuit()).state is State.OPEN for x in p.attempts)
        assert len(p.notes) == len(p.attempts)
