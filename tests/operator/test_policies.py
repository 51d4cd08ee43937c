"""ProviderPolicy changes fan out to dependent routes; a missing policy or a compile error keeps the last router."""

from __future__ import annotations

import copy
from collections.abc import Awaitable
from typing import Any

import pytest

from tests.conftest import example_doc
from tests.operator.conftest import Cluster, eventually, secret_doc, settled, writes
from tests.operator.helpers import GV, NS, ROUTE, cond, config_map, deploy_example, events

pytestmark = pytest.mark.operator


def route_in(ns: str, name: str) -> dict[str, Any]:
    doc = example_doc("route")
    doc["metadata"] = {"name": name, "namespace": ns}
    return doc


async def _reason(c: Awaitable[dict[str, Any]], reason: str) -> dict[str, Any] | None:
    got = await c
    return got if got.get("reason") == reason else None


async def _data(cm: Awaitable[dict[str, Any] | None]) -> str | None:
    return ((await cm) or {}).get("data", {}).get("config.json")


async def test_policy_change_updates_every_dependent_route(operator: Cluster) -> None:
    await deploy_example(operator)
    await operator.create(route_in("team2", "chat"), "llmroutes")
    other_policy = example_doc("policy")
    other_policy["metadata"]["name"] = "other"
    await operator.create(other_policy, "providerpolicies")
    unrelated = route_in("team3", "solo")
    unrelated["spec"]["policyRef"]["name"] = "other"
    await operator.create(unrelated, "llmroutes")
    before = {k: await eventually(lambda k=k: _data(config_map(operator, *k)), what=str(k))
              for k in [(NS, ROUTE), ("team2", "chat"), ("team3", "solo")]}
    await settled(operator)

    # together stops stating its training terms: pii/internal may no longer go there.
    await operator.patch(GV, "providerpolicies", None, "deepseek-residency",
                         {"spec": {"providers": _with_together_training("Unknown")}})
    for ns, name in [(NS, ROUTE), ("team2", "chat")]:
        new = await eventually(lambda ns=ns, name=name: _differs(_data(config_map(operator, ns, name)),
                                                                  before[(ns, name)]), what=f"{ns}/{name} updated")
        assert "training terms unknown" in new
    await settled(operator)
    assert await _data(config_map(operator, "team3", "solo")) == before[("team3", "solo")]


def _with_together_training(value: str) -> list[dict[str, Any]]:
    providers = copy.deepcopy(example_doc("policy")["spec"]["providers"])
    for p in providers:
        if p["name"] == "together":
            p["dataUse"]["training"] = value
    return providers


async def _differs(data: Awaitable[str | None], old: str) -> str | None:
    new = await data
    return new if new and new != old else None


async def test_missing_policy_waits_then_deploys_and_deleting_it_keeps_the_last_config(operator: Cluster) -> None:
    await operator.create(secret_doc(), "secrets")
    await operator.create(example_doc("route"), "llmroutes")
    ready = await eventually(lambda: _reason(cond(operator, "Ready"), "PolicyNotFound"), what="PolicyNotFound")
    assert ready["status"] == "False" and "deepseek-residency" in ready["message"]
    assert await config_map(operator) is None  # never deployed without its policy

    await operator.create(example_doc("policy"), "providerpolicies")
    deployed = await eventually(lambda: _data(config_map(operator)), what="deployed once the policy exists")
    await eventually(lambda: _reason(cond(operator, "Accepted"), "Compiled"), what="Accepted")

    await operator.delete(GV, "providerpolicies", None, "deepseek-residency")
    await eventually(lambda: _reason(cond(operator, "Ready"), "PolicyNotFound"), what="PolicyNotFound again")
    await settled(operator)
    assert await _data(config_map(operator)) == deployed  # the router keeps its last good config
    assert any(e["reason"] == "PolicyNotFound" and e["type"] == "Warning" for e in await events(operator))


async def test_compile_error_names_the_field_and_warns(operator: Cluster) -> None:
    await deploy_example(operator)
    good = await eventually(lambda: _data(config_map(operator)), what="deployed")
    await settled(operator)
    n = len(writes(operator))
    backends = example_doc("route")["spec"]["models"][0]["backends"]
    backends[1]["provider"] = "fireworkz"
    models = example_doc("route")["spec"]["models"]
    models[0]["backends"] = backends
    await operator.patch(GV, "llmroutes", NS, ROUTE, {"spec": {"models": models}})
    accepted = await eventually(lambda: _reason(cond(operator, "Accepted"), "CompileFailed"), what="CompileFailed")
    assert accepted["status"] == "False"
    assert 'spec.models[0].backends[1].provider: no provider "fireworkz"' in accepted["message"]
    warning = await eventually(lambda: _warning(events(operator), "CompileFailed"), what="Warning Event")
    assert "spec.models[0].backends[1].provider" in warning["message"]
    await settled(operator)
    assert await _data(config_map(operator)) == good
    owned = {"configmaps", "deployments", "services", "poddisruptionbudgets", "secrets"}
    assert not [r for r in writes(operator)[n:] if r.resource.plural in owned]


async def _warning(evs: Awaitable[list[dict[str, Any]]], reason: str) -> dict[str, Any] | None:
    return next((e for e in await evs if e["type"] == "Warning" and e["reason"] == reason), None)


async def test_schema_invalid_route_is_not_accepted(operator: Cluster) -> None:
    await operator.create(example_doc("policy"), "providerpolicies")
    route = example_doc("route")
    route["spec"]["failover"]["maxAttempts"] = 0  # the emulator does not validate schemas; the operator does
    await operator.create(route, "llmroutes")
    accepted = await eventually(lambda: _reason(cond(operator, "Accepted"), "InvalidSpec"), what="InvalidSpec")
    assert "spec.failover.maxAttempts" in accepted["message"]
    assert await config_map(operator) is None
