"""``router.limits`` in the chart's values: each key set becomes ``LLMROUTE_ROUTER_<X>`` on the operator, which the
operator's own settings turn into ``LLMROUTE_<X>`` on every router it creates (read back here by the router's
:class:`~llmroute.router.limits.Limits`); none set renders no such variable, so an upgrade rolls no router; values a
router would refuse are refused by the schema with its message. Both the operator and the router Deployments are
validated against the Kubernetes 1.30 and 1.35 schemas (strict). Operator-side details: ``tests/unit/
test_limits_operator.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.controller.settings import Settings
from llmroute.core.compile import compile_route
from llmroute.core.manifests import ROUTER_LIMIT_ENV, desired_objects
from llmroute.router.limits import Limits
from tests.chart.conftest import CHART, KUBE_VERSIONS, NAMESPACE, one
from tests.chart.test_render import Rendered, _container, _env
from tests.chart.test_values_schema import REFUSED, _values_file
from tests.chart.toolchain import run, tool
from tests.conftest import example_doc

pytestmark = pytest.mark.chart
ALL_ON = Limits(  # tests/chart/values/all-on.yaml
    head_timeout_s=2.5,
    body_timeout_s=30,
    idle_timeout_s=120,
    max_connections=1048576,
    max_head_bytes=32768,
    max_headers=64,
    max_url_bytes=4096,
)


def operator_settings(docs: list[dict[str, Any]]) -> Settings:
    """The settings the operator of a rendered chart starts with (its env, the pod fields as the kubelet fills them)."""
    env = {k: v for k, v in _env(_container(docs)).items() if isinstance(v, str)}
    return Settings.from_env({**env, "POD_NAMESPACE": NAMESPACE, "POD_NAME": "llmroute-0"})


def router_deployment(settings: Settings) -> dict[str, Any]:
    route = LLMRoute.model_validate(example_doc("route"))
    policy = ProviderPolicy.model_validate(example_doc("policy"))
    desired = desired_objects(route, compile_route(route, policy), settings.router)
    return next(o for o in desired.objects if o["kind"] == "Deployment")


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_limits_from_values_reach_every_router_the_operator_creates(rendered: Rendered, version: str) -> None:
    docs = rendered["all-on", version]
    kubernetes_validate.validate(one(docs, "Deployment"), version, strict=True)
    deployment = router_deployment(operator_settings(docs))
    kubernetes_validate.validate(deployment, version, strict=True)
    env = _env(deployment["spec"]["template"]["spec"]["containers"][0])
    assert set(ROUTER_LIMIT_ENV) <= set(env)
    assert Limits.from_env({k: v for k, v in env.items() if isinstance(v, str)}) == ALL_ON


def test_no_limits_in_values_leave_the_routers_as_they_were(rendered: Rendered) -> None:
    docs = rendered["defaults", "1.35"]
    assert not [
        name
        for name in _env(_container(docs))
        if name.removeprefix("LLMROUTE_ROUTER_") in {n.removeprefix("LLMROUTE_") for n in ROUTER_LIMIT_ENV}
    ]
    settings = operator_settings(docs)
    assert settings.router_limits == ()
    assert router_deployment(settings) == router_deployment(
        Settings(
            router_image=settings.router_image,
            demand_url=settings.demand_url,
            network_policies=settings.network_policies,
        )
    )


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        pytest.param(
            {"headTimeout": 0}, "at '/router/limits/headTimeout': exclusiveMinimum: got 0, want 0", id="zero-seconds"
        ),
        pytest.param(
            {"idleTimeout": "75s"},
            "at '/router/limits/idleTimeout': got string, want number",
            id="seconds-as-a-duration",
        ),
        pytest.param(
            {"maxConnections": 1.5},
            "at '/router/limits/maxConnections': got number, want integer",
            id="fraction-of-a-count",
        ),
        pytest.param({"maxHeaders": 0}, "at '/router/limits/maxHeaders': minimum: got 0, want 1", id="zero-count"),
        pytest.param(
            {"headTimout": 5}, "at '/router/limits': additional properties 'headTimout' not allowed", id="misspelt-key"
        ),
    ],
)
def test_limits_a_router_would_refuse_are_refused_by_the_schema(
    tmp_path: Path, limits: dict[str, Any], message: str
) -> None:
    proc = run(
        [tool("helm"), "template", "r", str(CHART), "-f", _values_file(tmp_path, {"router": {"limits": limits}})]
    )
    assert proc.returncode == 1, proc.stdout[:500]
    assert REFUSED in proc.stderr and f"- {message}" in proc.stderr, proc.stderr
