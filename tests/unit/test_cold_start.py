"""Cold starts: pools with no ready pod are skipped when anything else is left, held for only when nothing is;
the hold bound; the demand report's shape."""

from __future__ import annotations

import pytest

from llmroute.core.cold_start import ColdSplit, demand_body, may_hold, split_cold
from llmroute.core.router_config import BackendTarget
from llmroute.core.selection import Plan, Skip

pytestmark = pytest.mark.unit

COLD = {"gpu": "llm/gpu", "spare": "llm/spare"}


def b(provider: str) -> BackendTarget:
    return BackendTarget(provider=provider, model="m", priority=0, weight=1)


def test_nothing_cold_leaves_the_plan_alone() -> None:
    plan = Plan((b("together"), b("gpu")), (), ("healthy", "healthy"))
    assert split_cold(plan, {}, 4) == ColdSplit(plan, ())
    assert split_cold(plan, {"other": "llm/other"}, 4) == ColdSplit(plan, ())


def test_the_plan_is_cut_to_max_attempts_after_the_cold_pools_left() -> None:
    plan = Plan((b("gpu"), b("together"), b("fireworks")), (), ("healthy", "healthy", "degraded"))
    split = split_cold(plan, COLD, 1)
    assert split.hold_for == ()  # the pool did not take the place of a backend that can serve
    assert split.plan == Plan((b("together"),), (Skip(b("gpu"), "pool llm/gpu has no ready pods"),
                                                 Skip(b("fireworks"), "degraded; beyond max_attempts=1")),
                              ("healthy",))
    assert split_cold(Plan((b("gpu"), b("together")), ()), {}, 1).plan == Plan(
        (b("gpu"),), (Skip(b("together"), "beyond max_attempts=1"),))


def test_a_cold_pool_is_skipped_when_another_candidate_is_left() -> None:
    open_ = Skip(b("deepseek"), "open")
    split = split_cold(Plan((b("gpu"), b("together")), (open_,), ("healthy", "degraded")), COLD, 4)
    assert split.hold_for == ()
    assert split.plan == Plan((b("together"),), (open_, Skip(b("gpu"), "pool llm/gpu has no ready pods")),
                              ("degraded",))


def test_only_cold_pools_left_holds_for_them_in_plan_order() -> None:
    split = split_cold(Plan((b("spare"), b("gpu")), (Skip(b("together"), "open"),)), COLD, 4)
    assert split.plan.attempts == ()
    assert split.hold_for == ("llm/spare", "llm/gpu")
    assert [s.reason for s in split.plan.skipped] == ["open", "pool llm/spare has no ready pods",
                                                      "pool llm/gpu has no ready pods"]


def test_two_providers_on_one_pool_hold_for_it_once() -> None:
    split = split_cold(Plan((b("gpu"), b("gpu2")), ()), {"gpu": "llm/gpu", "gpu2": "llm/gpu"}, 4)
    assert split.hold_for == ("llm/gpu",)


@pytest.mark.parametrize(("held", "limit", "expected"), [(0, 1, True), (99, 100, True), (100, 100, False),
                                                          (0, 0, False)])
def test_may_hold(held: int, limit: int, expected: bool) -> None:
    assert may_hold(held, limit) is expected


def test_demand_body() -> None:
    assert demand_body("apps/chat/router-0", {"llm/gpu": 2, "llm/idle": 0}, ["llm/spare"]) == {
        "router": "apps/chat/router-0", "pools": {"llm/gpu": 2, "llm/spare": 0}}
    assert demand_body("r", {"llm/gpu": 0}, []) == {"router": "r", "pools": {}}
