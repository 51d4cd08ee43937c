"""Provider keys never leave Secrets: not in ConfigMaps, status, Events or the Deployment; copies stay Secrets."""

from __future__ import annotations

import base64
import json

import pytest

from tests.operator.conftest import Cluster, available, eventually, secret_values, settled
from tests.operator.helpers import GV, NS, deploy_example, deployment

pytestmark = pytest.mark.operator


async def test_no_secret_value_outside_secrets(operator: Cluster) -> None:
    await deploy_example(operator)
    await eventually(lambda: deployment(operator), what="deployment")
    await operator.patch("apps/v1", "deployments", NS, "deepseek-router", available(), sub="status")
    await settled(operator)
    values = list(secret_values().values())
    needles = values + [base64.b64encode(v.encode()).decode() for v in values]

    places = {
        "configmaps": await operator.list("v1", "configmaps"),
        "events": await operator.list("v1", "events"),
        "deployments": await operator.list("apps/v1", "deployments"),
        "services": await operator.list("v1", "services"),
        "status": [o.get("status", {}) for o in await operator.list(GV, "llmroutes")
                   + await operator.list(GV, "providerpolicies")],
        "annotations": [o["metadata"].get("annotations", {}) for o in await operator.list(GV, "llmroutes")],
    }
    assert places["configmaps"] and places["events"] and places["status"]
    for where, objs in places.items():
        text = json.dumps(objs)
        assert not [n for n in needles if n in text], f"a provider key leaked into {where}"

    copy = await operator.get("v1", "secrets", NS, "deepseek-provider-keys")
    assert set(copy["data"]) == {"LLMROUTE_KEY_DEEPSEEK", "LLMROUTE_KEY_TOGETHER", "LLMROUTE_KEY_FIREWORKS",
                                 "LLMROUTE_KEY_BEDROCK"}
    assert base64.b64decode(copy["data"]["LLMROUTE_KEY_DEEPSEEK"]).decode() == secret_values()["deepseek"]
    env = (await deployment(operator) or {})["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all(set(e) == {"name", "valueFrom"} for e in env)
