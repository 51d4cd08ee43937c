"""The shared provider prober against provider emulators, in the real operator: up, down, recovery, flapping
(hysteresis holds), 401 (misconfigured); status, Events, the routes' failover status, metrics - and health changes
never touch the ConfigMap or the config hash."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmroute.controller.metrics import REGISTRY
from llmroute.controller.rbac import allows, cluster_role
from llmroute.emulator import Emulator
from tests.conftest import example_doc
from tests.operator.conftest import Cluster, StartOperator, eventually, secret_doc, secret_values, settled, writes
from tests.operator.helpers import GV, ROUTE, config_map, deployment, events, pod_hash, route_status
from tests.operator.test_rbac import rbac_verb

pytestmark = pytest.mark.operator

POLICY = "deepseek-residency"
NAMES = ("deepseek", "together", "fireworks", "bedrock")
"""The hosted providers; the example's ``vllm`` is a ModelPool, which the prober does not probe."""
OWNED_PLURALS = {"configmaps", "deployments", "services", "poddisruptionbudgets", "secrets",
                 "horizontalpodautoscalers"}


@pytest.fixture()
async def providers() -> AsyncIterator[dict[str, Emulator]]:
    keys = secret_values()
    async with contextlib.AsyncExitStack() as stack:
        yield {n: await stack.enter_async_context(Emulator(n, api_key=keys.get(n))) for n in NAMES}


def emulated_policy(emulators: dict[str, Emulator], interval: str = "100ms") -> dict[str, Any]:
    doc = example_doc("policy")
    for p in (p for p in doc["spec"]["providers"] if "pool" not in p):
        p["endpoint"] = emulators[p["name"]].url
        p["healthCheck"] = {"path": "/models", "interval": interval, "timeout": "1s", "failureThreshold": 3,
                            "successThreshold": 2}
    return doc


async def deploy(cluster: Cluster, start_operator: StartOperator, emulators: dict[str, Emulator]) -> None:
    await cluster.create(secret_doc(), "secrets")
    await cluster.create(emulated_policy(emulators), "providerpolicies")
    await cluster.create(example_doc("route"), "llmroutes")
    await start_operator(probe_providers=True)


async def policy_status(cluster: Cluster) -> dict[str, Any]:
    return ((await cluster.get(GV, "providerpolicies", None, POLICY)) or {}).get("status") or {}


async def provider(cluster: Cluster, name: str) -> dict[str, Any]:
    return next((p for p in (await policy_status(cluster)).get("providers", []) if p["name"] == name), {})


async def state_is(cluster: Cluster, name: str, state: str) -> dict[str, Any] | None:
    p = await provider(cluster, name)
    return p if p.get("state") == state else None


async def event(cluster: Cluster, obj: str, reason: str) -> dict[str, Any] | None:
    return next((e for e in await events(cluster, obj) if e["reason"] == reason), None)


def sample(name: str, **labels: str) -> float | None:
    value: float | None = REGISTRY.get_sample_value(name, labels)
    return value


def status_writes(cluster: Cluster) -> list[Any]:
    return [r for r in writes(cluster) if r.resource.plural == "providerpolicies" and r.name == POLICY]


async def test_down_fails_over_then_recovers_without_touching_owned_objects(
        cluster: Cluster, start_operator: StartOperator, providers: dict[str, Emulator]) -> None:
    await deploy(cluster, start_operator, providers)
    status = await eventually(lambda: _summary(cluster, "4/4 healthy"), what="every provider Healthy")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ProvidersAnswering")
    await eventually(lambda: _active(cluster, "together"), what="route active on together")
    await settled(cluster)
    config, rollout = await config_map(cluster), pod_hash(await deployment(cluster))
    before = len(writes(cluster))
    n_status = len(status_writes(cluster))
    assert sample("llmroute_provider_health", policy=POLICY, provider="together", state="Healthy") == 1
    assert (sample("llmroute_provider_probe_latency_seconds", policy=POLICY, provider="together") or 0) > 0

    await providers["together"].stop_listening()
    down = await eventually(lambda: state_is(cluster, "together", "Down"), what="together Down")
    assert down["consecutiveFailures"] == 3 and "connection refused" in down["reason"]
    warning = await eventually(lambda: event(cluster, POLICY, "ProviderDown"), what="ProviderDown Event")
    assert warning["type"] == "Warning" and "together" in warning["message"]
    moved = await eventually(lambda: _active(cluster, "fireworks"), what="route fails over to fireworks")
    assert moved["lastFailover"]["fromProvider"] == "together"
    assert moved["lastFailover"]["reason"] == "ProviderDown"
    failover = await eventually(lambda: event(cluster, ROUTE, "Failover"), what="Failover Event")
    assert failover["type"] == "Warning" and "together -> fireworks" in failover["message"]
    assert (await policy_status(cluster))["summary"] == "3/4 healthy, Down: together"

    await providers["together"].start_listening()
    up = await eventually(lambda: state_is(cluster, "together", "Healthy"), what="together Healthy again")
    assert up["consecutiveSuccesses"] == 2 and "reason" not in up
    recovered = await eventually(lambda: event(cluster, POLICY, "ProviderRecovered"), what="ProviderRecovered")
    assert recovered["type"] == "Normal"
    back = await eventually(lambda: _active(cluster, "together"), what="route fails back to together")
    assert back["lastFailover"]["reason"] == "ProviderRecovered"
    failback = await eventually(lambda: event(cluster, ROUTE, "Failback"), what="Failback Event")
    assert failback["type"] == "Normal" and "fireworks -> together" in failback["message"]
    await settled(cluster)

    assert await config_map(cluster) == config and pod_hash(await deployment(cluster)) == rollout
    assert not [r for r in writes(cluster)[before:] if r.resource.plural in OWNED_PLURALS]
    # Status moved Healthy -> Degraded (1, 2 failures) -> Down -> Down (recovering) -> Healthy: a handful of
    # writes over a few dozen probes, not one per probe.
    assert len(status_writes(cluster)) - n_status <= 8
    assert sample("llmroute_provider_health", policy=POLICY, provider="together", state="Down") == 0
    assert (sample("llmroute_operator_reconciles_total", kind="LLMRoute", result="success") or 0) > 0
    role = cluster_role()
    seen = {(r.resource.group, r.resource.plural + (f"/{r.subresource}" if r.subresource else ""), rbac_verb(r))
            for r in cluster.operator_requests() if r.resource is not None and r.resource.plural is not None}
    assert not [s for s in seen if not allows(role, *s)]


async def _summary(cluster: Cluster, text: str) -> dict[str, Any] | None:
    status = await policy_status(cluster)
    return status if status.get("summary") == text else None


async def _active(cluster: Cluster, provider_name: str) -> dict[str, Any] | None:
    status = await route_status(cluster)
    return status if status.get("activeProvider") == provider_name else None


async def test_flapping_provider_is_degraded_never_down(
        cluster: Cluster, start_operator: StartOperator, providers: dict[str, Emulator]) -> None:
    await deploy(cluster, start_operator, providers)
    await eventually(lambda: _summary(cluster, "4/4 healthy"), what="every provider Healthy")
    flaky = providers["together"]
    for i in range(12):  # one failed probe, one good probe, ... (toggled after each probe has been answered)
        flaky.set_faults(status=503) if i % 2 == 0 else flaky.set_faults()
        seen = sum(flaky.stats.outcomes.values())
        await eventually(lambda seen=seen: _answered(flaky, seen), what=f"probe {i}")
    state = await provider(cluster, "together")
    assert state["state"] == "Degraded" and state["consecutiveFailures"] + state["consecutiveSuccesses"] == 1
    assert await event(cluster, POLICY, "ProviderDown") is None
    assert (await route_status(cluster))["activeProvider"] == "together"


async def _answered(emulator: Emulator, seen: int) -> bool:
    return sum(emulator.stats.outcomes.values()) > seen


async def test_wrong_key_is_misconfigured_at_once_and_no_key_leaks(
        cluster: Cluster, start_operator: StartOperator, providers: dict[str, Emulator]) -> None:
    providers["fireworks"].state.api_key = "sk-rotated-elsewhere"
    providers["bedrock"].set_faults(refuse=True)
    await deploy(cluster, start_operator, providers)
    bad = await eventually(lambda: state_is(cluster, "fireworks", "Misconfigured"), what="fireworks Misconfigured")
    assert bad["consecutiveFailures"] == 1 and bad["reason"] == "unauthorized (HTTP 401): the API key was rejected"
    warning = await eventually(lambda: event(cluster, POLICY, "ProviderMisconfigured"), what="Misconfigured Event")
    assert warning["type"] == "Warning" and "fireworks" in warning["message"]
    await eventually(lambda: state_is(cluster, "bedrock", "Down"), what="bedrock Down (connection reset)")
    ready = next(c for c in (await policy_status(cluster))["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "fireworks (Misconfigured" in ready["message"]
    pool = await provider(cluster, "vllm")  # a ModelPool not created: not probed, Cold, not in the summary or Ready
    assert (pool["state"], pool["reason"]) == ("Cold", "ModelPool llm-serving/deepseek-v3: no ready replica")
    assert providers["deepseek"].stats.auth["ok"] >= 1  # the shared key, read from its Secret

    text = json.dumps([await policy_status(cluster), await events(cluster, POLICY), await route_status(cluster)])
    for value in secret_values().values():
        assert value not in text

    await cluster.delete(GV, "providerpolicies", None, POLICY)  # the daemon stops, kopf lets the policy go
    await eventually(lambda: _policy_gone(cluster), what="policy deleted")
    await eventually(lambda: _no_series(), what="its metrics dropped")


async def _policy_gone(cluster: Cluster) -> bool:
    return await cluster.get(GV, "providerpolicies", None, POLICY) is None


async def _no_series() -> bool:
    return sample("llmroute_provider_health", policy=POLICY, provider="fireworks", state="Misconfigured") is None
