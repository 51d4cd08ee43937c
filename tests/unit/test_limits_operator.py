"""Operator-wide client limits for routers: ``LLMROUTE_ROUTER_<X>`` on the operator (Helm ``router.limits``) becomes
``LLMROUTE_<X>`` on every router container the operator builds; values a router would refuse stop the operator; none
set leaves the router pods exactly as before (no rollout on upgrade) and no limit touches the config hash.

The chart half (values -> operator env, schema refusals) is ``tests/chart/test_router_limits.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.controller.settings import Settings, router_limits
from llmroute.core.compile import compile_route
from llmroute.core.manifests import CONFIG_HASH_ANNOTATION, ROUTER_LIMIT_ENV, desired_objects, needs_update
from llmroute.router import limits as router_side
from tests.conftest import example_doc

pytestmark = pytest.mark.unit

OPERATOR_ENV = {
    "LLMROUTE_ROUTER_HEAD_TIMEOUT": "2.5",
    "LLMROUTE_ROUTER_MAX_CONNECTIONS": "300",
    "LLMROUTE_ROUTER_MAX_HEADERS": " ",  # blank: unset
}


def router_deployment(settings: Settings) -> dict[str, Any]:
    route = LLMRoute.model_validate(example_doc("route"))
    policy = ProviderPolicy.model_validate(example_doc("policy"))
    desired = desired_objects(route, compile_route(route, policy), settings.router)
    return next(o for o in desired.objects if o["kind"] == "Deployment")


def container_env(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_operator_knows_every_limit_the_router_reads_with_its_kind() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(router_side.Limits)}
    assert set(ROUTER_LIMIT_ENV) == set(router_side.ENV.values())
    for field, env in router_side.ENV.items():
        assert ROUTER_LIMIT_ENV[env].__name__ == fields[field]


def test_limits_set_on_the_operator_reach_every_router_as_the_router_reads_them() -> None:
    settings = Settings.from_env(OPERATOR_ENV)
    assert settings.router_limits == (("LLMROUTE_HEAD_TIMEOUT", "2.5"), ("LLMROUTE_MAX_CONNECTIONS", "300"))
    env = container_env(router_deployment(settings))
    assert {k: v for k, v in env.items() if k in ROUTER_LIMIT_ENV} == {
        "LLMROUTE_HEAD_TIMEOUT": "2.5",
        "LLMROUTE_MAX_CONNECTIONS": "300",
    }
    assert router_side.Limits.from_env({k: v for k, v in env.items() if isinstance(v, str)}) == router_side.Limits(
        head_timeout_s=2.5, max_connections=300
    )


def test_unset_limits_change_no_router_pod_and_no_config_hash() -> None:
    before = router_deployment(Settings())  # an operator without the setting
    unset = router_deployment(Settings.from_env({}))
    assert not needs_update(unset, before) and not needs_update(before, unset)
    assert not set(container_env(unset)) & set(ROUTER_LIMIT_ENV)
    limited = router_deployment(Settings.from_env(OPERATOR_ENV))
    assert needs_update(limited, before)  # setting one rolls the routers once
    annotations = [d["spec"]["template"]["metadata"]["annotations"] for d in (before, limited)]
    assert annotations[0][CONFIG_HASH_ANNOTATION] == annotations[1][CONFIG_HASH_ANNOTATION]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LLMROUTE_ROUTER_HEAD_TIMEOUT": "soon"},
            'LLMROUTE_ROUTER_HEAD_TIMEOUT must be a positive number, got "soon"',
        ),
        ({"LLMROUTE_ROUTER_BODY_TIMEOUT": "0"}, 'LLMROUTE_ROUTER_BODY_TIMEOUT must be a positive number, got "0"'),
        ({"LLMROUTE_ROUTER_IDLE_TIMEOUT": "inf"}, 'LLMROUTE_ROUTER_IDLE_TIMEOUT must be a positive number, got "inf"'),
        ({"LLMROUTE_ROUTER_MAX_HEADERS": "1.5"}, 'LLMROUTE_ROUTER_MAX_HEADERS must be a positive integer, got "1.5"'),
        ({"LLMROUTE_ROUTER_MAX_URL_BYTES": "-1"}, 'LLMROUTE_ROUTER_MAX_URL_BYTES must be a positive integer, got "-1"'),
    ],
    ids=["not-a-number", "zero", "infinite", "fraction-of-a-count", "negative"],
)
def test_a_value_a_router_would_refuse_stops_the_operator(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        router_limits(env)
    with pytest.raises(ValueError):  # as the router would
        router_side.Limits.from_env({name.replace("ROUTER_", "", 1): raw for name, raw in env.items()})
