"""Every API call the operator makes in a full scenario is granted by the ClusterRole of
:mod:`llmroute.controller.rbac` (kmock records each request: method, resource, subresource, name, params)."""

from __future__ import annotations

from typing import Any

import pytest

from llmroute.controller.rbac import allows, cluster_role
from tests.conftest import example_doc
from tests.operator.conftest import Cluster, eventually, settled, verb
from tests.operator.helpers import GV, NS, ROUTE, deploy_example, deployment

pytestmark = pytest.mark.operator


def rbac_verb(request: Any) -> str:
    method = verb(request)
    if method == "GET":
        if request.name:
            return "get"
        return "watch" if request.params.get("watch", "").lower() in ("true", "1") else "list"
    return {"POST": "create", "PATCH": "patch", "PUT": "update"}.get(method, "delete" if request.name
                                                                      else "deletecollection")


async def test_cluster_role_covers_every_request(operator: Cluster) -> None:
    route = example_doc("route")
    route["spec"]["router"] = {"autoscaling": {"minReplicas": 2, "maxReplicas": 4}}
    await deploy_example(operator, route)
    await eventually(lambda: deployment(operator), what="deployment")
    await operator.patch(GV, "llmroutes", NS, ROUTE, {"spec": {"router": {"autoscaling": None, "replicas": 1}}})
    await operator.delete("v1", "configmaps", NS, "deepseek-router-config")
    await settled(operator)
    await operator.delete(GV, "providerpolicies", None, "deepseek-residency")
    await operator.delete(GV, "llmroutes", NS, ROUTE)
    await eventually(lambda: _gone(operator), what="route deleted")

    role = cluster_role()
    seen = set()
    for r in operator.operator_requests():
        if r.resource is None or r.resource.plural is None:
            continue  # discovery (/api, /apis): non-resource URLs every authenticated client may read
        resource = r.resource.plural + (f"/{r.subresource}" if r.subresource else "")
        seen.add((r.resource.group, resource, rbac_verb(r)))
    missing = sorted(s for s in seen if not allows(role, *s))
    assert not missing, f"ClusterRole lacks: {missing}"
    assert ("", "secrets", "get") in seen and ("apps", "deployments", "create") in seen  # the scenario was real
    assert ("autoscaling", "horizontalpodautoscalers", "delete") in seen


async def _gone(cluster: Cluster) -> bool:
    return await cluster.get(GV, "llmroutes", NS, ROUTE) is None
