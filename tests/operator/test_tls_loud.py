"""A ProviderPolicy with a plain ``http://`` endpoint outside the cluster is loud in the real operator: a
``PlaintextEndpoint`` Warning Event per such provider (never for HTTPS, loopback or self-hosted ones), posted when
the policy is created or changed, not again when the operator restarts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import example_doc
from tests.operator.conftest import Cluster, StartOperator, eventually, secret_doc, settled, stop
from tests.operator.helpers import GV, events

pytestmark = pytest.mark.operator
POLICY = "deepseek-residency"


def policy_with_plaintext() -> dict[str, Any]:
    doc = example_doc("policy")
    providers = doc["spec"]["providers"]
    hosted = next(p for p in providers if p["name"] == "together")
    providers += [
        {**copy.deepcopy(hosted), "name": "plain", "endpoint": "http://llm.example.com/v1"},
        {**copy.deepcopy(hosted), "name": "loopback", "endpoint": "http://127.0.0.1:8000/v1"},
        {**copy.deepcopy(hosted), "name": "inhouse", "endpoint": "http://vllm.llm.svc:8000/v1", "selfHosted": True},
    ]
    return doc


async def plaintext_events(cluster: Cluster) -> list[dict[str, Any]]:
    return [e for e in await events(cluster, POLICY) if e.get("reason") == "PlaintextEndpoint"]


async def test_a_plaintext_endpoint_is_a_warning_event_once(
    cluster: Cluster, start_operator: StartOperator, caplog: pytest.LogCaptureFixture
) -> None:
    await cluster.create(secret_doc(), "secrets")
    await cluster.create(policy_with_plaintext(), "providerpolicies")
    task = await start_operator()
    posted = await eventually(lambda: plaintext_events(cluster), what="a PlaintextEndpoint Event")
    await settled(cluster)
    posted = await plaintext_events(cluster)
    assert [(e["type"], e["message"].split(":")[0]) for e in posted] == [("Warning", "provider plain")]
    assert "http://llm.example.com is not HTTPS" in posted[0]["message"]
    assert "provider plain: endpoint http://llm.example.com is not HTTPS" in caplog.text

    await stop(task)
    await start_operator()  # resume: the policy did not change, so no new Event
    await settled(cluster)
    assert len(await plaintext_events(cluster)) == 1

    doc = await cluster.get(GV, "providerpolicies", None, POLICY)
    fixed = [
        {**p, "endpoint": "https://llm.example.com/v1"} if p["name"] == "plain" else p for p in doc["spec"]["providers"]
    ]
    await cluster.patch(GV, "providerpolicies", None, POLICY, {"spec": {"providers": fixed}})
    await settled(cluster)
    assert len(await plaintext_events(cluster)) == 1
