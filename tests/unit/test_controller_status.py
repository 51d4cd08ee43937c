"""controller.status (pure): conditions keep lastTransitionTime, transitions drive Events, active backend per model
and class follows provider health, status patches are sent only when something changed."""

from __future__ import annotations

from typing import Any

import pytest

from llmroute.api.base import Condition
from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy, ProviderPolicyStatus
from llmroute.controller import status as st
from llmroute.core.compile import compile_route

pytestmark = pytest.mark.unit

T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"
ACCEPTED = st.Cond(st.TRUE, "Compiled")
UNAVAILABLE = st.Cond(st.FALSE, "RouterUnavailable")


def obs(route: LLMRoute, policy: ProviderPolicy, ready: st.Cond = UNAVAILABLE, **health: str) -> st.RouteObservation:
    states = ProviderPolicyStatus.model_validate({"providers": [{"name": k, "state": v} for k, v in health.items()]})
    return st.RouteObservation(accepted=ACCEPTED, ready=ready, config=compile_route(route, policy),
                               health=st.health_of(states))


def test_transition_time_kept_while_status_unchanged(route: LLMRoute, policy: ProviderPolicy) -> None:
    first, changes, _ = st.route_status(None, 1, T0, obs(route, policy))
    assert {c.type for c in changes} == {"Accepted", "Ready", "Degraded"} and all(c.first for c in changes)
    second, changes, _ = st.route_status(first, 1, T1, obs(route, policy))
    assert second == first and changes == [] and st.status_patch(first, second) is None
    third, changes, _ = st.route_status(second, 2, T1, obs(route, policy, st.Cond(st.TRUE, "RouterAvailable")))
    times = {c["type"]: c["lastTransitionTime"] for c in third["conditions"]}
    assert times == {"Accepted": T0, "Ready": T1, "Degraded": T0}
    assert [(c.type, c.cond.reason) for c in changes] == [("Ready", "RouterAvailable")]
    assert {c["observedGeneration"] for c in third["conditions"]} == {2}


@pytest.mark.parametrize(("health", "chat_internal", "degraded"), [
    pytest.param({}, "together", "False", id="unknown-health-counts-as-usable"),
    pytest.param({"together": "Down"}, "fireworks", "False", id="down-skipped"),
    pytest.param({"together": "Down", "fireworks": "Misconfigured", "bedrock": "Down", "vllm": "Down"}, None,
                 "True", id="none-left-degraded"),
    pytest.param({"together": "Degraded"}, "together", "False", id="degraded-provider-still-serves"),
])
def test_active_backend_follows_health(route: LLMRoute, policy: ProviderPolicy, health: dict[str, str],
                                       chat_internal: str | None, degraded: str) -> None:
    status, _, _ = st.route_status(None, 1, T0, obs(route, policy, **health))
    active = {(a["model"], a["dataClass"]): a for a in status["active"]}
    assert active[("deepseek-chat", "internal")].get("provider") == chat_internal
    assert active[("deepseek-chat", "internal")]["allowed"] == 4
    assert next(c for c in status["conditions"] if c["type"] == "Degraded")["status"] == degraded


def test_without_a_new_config_the_last_one_is_still_reported(route: LLMRoute, policy: ProviderPolicy) -> None:
    good, _, _ = st.route_status(None, 1, T0, obs(route, policy))
    missing = st.Cond(st.FALSE, "PolicyNotFound", "gone")
    after, changes, _ = st.route_status(good, 1, T1, st.RouteObservation(accepted=st.Cond(st.UNKNOWN, "PolicyNotFound"),
                                                                       ready=missing))
    assert after["configHash"] == good["configHash"] and after["active"] == good["active"]
    assert ("Ready", "PolicyNotFound") in [(c.type, c.cond.reason) for c in changes]


def test_status_patch_nulls_dropped_fields() -> None:
    assert st.status_patch({"a": 1, "b": 2}, {"a": 1}) == {"a": 1, "b": None}
    assert st.status_patch({"a": 1}, {"a": 1}) is None


@pytest.mark.parametrize(("dep", "status", "reason"), [
    pytest.param(None, "False", "RouterMissing", id="missing"),
    pytest.param({"spec": {"replicas": 2}, "status": {}}, "False", "RouterUnavailable", id="no-status"),
    pytest.param({"spec": {"replicas": 2}, "status": {"availableReplicas": 2, "conditions": [
        {"type": "Available", "status": "True"}]}}, "True", "RouterAvailable", id="available"),
])
def test_ready_from_deployment(dep: dict[str, Any] | None, status: str, reason: str) -> None:
    cond = st.deployment_ready(dep)
    assert (cond.status.value, cond.reason) == (status, reason)


def test_policy_status_keeps_prober_fields() -> None:
    previous = {"providers": [{"name": "together", "state": "Healthy"}], "summary": "1/1 healthy",
                "conditions": [Condition(type="Ready", status=st.TRUE, reason="Probed").wire()]}
    new, changes = st.policy_status(previous, 3, T0, st.Cond(st.TRUE, "Valid"))
    assert set(new) == {"observedGeneration", "conditions"}
    assert [c["type"] for c in new["conditions"]] == ["Accepted", "Ready"]
    assert [c.type for c in changes] == ["Accepted"]
    patch = st.status_patch(previous, new, partial=True)
    assert patch is not None and "providers" not in patch and "summary" not in patch
    assert st.status_patch({**previous, **new}, new, partial=True) is None


def test_failover_and_failback_under_the_same_config(route: LLMRoute, policy: ProviderPolicy) -> None:
    healthy, _, moved = st.route_status(None, 1, T0, obs(route, policy))
    assert moved == [] and "lastFailover" not in healthy
    down = obs(route, policy, together="Down")
    failed, _, moved = st.route_status(healthy, 1, T1, down)
    chat_internal = next(m for m in moved if (m.model, m.data_class) == ("deepseek-chat", "internal"))
    assert (chat_internal.from_provider, chat_internal.to_provider, chat_internal.failover,
            chat_internal.reason) == ("together", "fireworks", True, "ProviderDown")
    assert chat_internal.detail == "together is Down"
    assert failed["lastFailover"] == {"time": T1, "model": moved[0].model, "fromProvider": "together",
                                      "toProvider": moved[0].to_provider, "reason": "ProviderDown"}
    again, _, moved_again = st.route_status(failed, 1, "2026-01-01T00:06:00Z", down)
    assert moved_again == [] and again == failed  # nothing moved: no new record, no status write

    back, _, moved = st.route_status(failed, 1, T2, obs(route, policy))
    assert {(m.from_provider, m.to_provider, m.failover, m.reason) for m in moved} >= {
        ("fireworks", "together", False, "ProviderRecovered")}
    assert back["lastFailover"]["reason"] == "ProviderRecovered" and back["lastFailover"]["time"] == T2


def test_a_new_config_moving_the_backend_is_not_a_failover(route: LLMRoute, policy: ProviderPolicy) -> None:
    first, _, _ = st.route_status(None, 1, T0, obs(route, policy))
    changed = route.model_copy(deep=True)
    changed.spec.models[0].backends.pop(1)  # together no longer serves deepseek-chat
    after, _, moved = st.route_status(first, 2, T1, obs(changed, policy))
    assert after["configHash"] != first["configHash"] and moved == [] and "lastFailover" not in after
