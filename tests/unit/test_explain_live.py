"""The pure rules of ``llmroute explain --cluster`` and its connection set-up, without an API server.

Aspects: which status states count as down (only Down and Misconfigured, as the operator's active backends), what
``--up``/``--down`` do to them, the router Deployment's replicas read from what a Deployment may lack, and where the
connection comes from (kubeconfig and its context's namespace, a pod's service account, or a one-line error).
The whole CLI against an emulated API server is in ``tests/operator/test_explain_live.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderHealth, ProviderPolicy, ProviderState
from llmroute.core.explain import down_per_status, explain_route
from llmroute.core.explain_live import router_state
from llmroute.live_explain import ClusterError, connect

pytestmark = pytest.mark.unit


def health(**states: str) -> dict[str, ProviderHealth]:
    return {
        name: ProviderHealth(name=name, state=ProviderState(state), reason=f"{state.lower()} reason")
        for name, state in states.items()
    }


@pytest.mark.parametrize(
    ("state", "down"),
    [
        ("Down", True),
        ("Misconfigured", True),
        ("Degraded", False),
        ("Cold", False),
        ("Unknown", False),
        ("Healthy", False),
    ],
)
def test_only_down_and_misconfigured_count_as_down(state: str, down: bool) -> None:
    assert down_per_status(health(together=state)) == (frozenset({"together"}) if down else frozenset())


def test_up_takes_a_provider_out_of_the_status_down_ones() -> None:
    assert down_per_status(health(deepseek="Down", together="Misconfigured"), frozenset({"deepseek"})) == {"together"}


def backends(route: LLMRoute, policy: ProviderPolicy, **kwargs: Any) -> dict[str, tuple[bool, str | None, str]]:
    explained = explain_route(route, policy, "public", model="deepseek-reasoner", **kwargs)
    return {b.provider: (b.down, b.health, b.reasons[-1]) for b in explained.models[0].backends}


def test_status_down_is_skipped_with_the_status_reason(route: LLMRoute, policy: ProviderPolicy) -> None:
    h = health(deepseek="Misconfigured", together="Degraded")
    got = backends(route, policy, health=h, status_down=down_per_status(h))
    assert got == {
        "deepseek": (True, "Misconfigured", "status Misconfigured (misconfigured reason): skipped"),
        "together": (False, "Degraded", "data class allows any provider"),
        "bedrock": (False, "Unknown", "data class allows any provider"),
    }
    first = (
        explain_route(route, policy, "public", model="deepseek-reasoner", health=h, status_down=down_per_status(h))
        .models[0]
        .outcome
    )
    assert first == "first attempt: together 100%"


def test_what_if_up_and_down_on_top_of_the_status(route: LLMRoute, policy: ProviderPolicy) -> None:
    h = health(deepseek="Down", together="Down")
    got = backends(
        route,
        policy,
        health=h,
        status_down=down_per_status(h, frozenset({"deepseek"})),
        down=frozenset({"together", "bedrock"}),
    )
    assert got["deepseek"] == (False, "Down", "status Down: counted as up (what-if)")
    assert got["together"] == (True, "Down", "assumed down: skipped")  # down either way: said once
    assert got["bedrock"] == (True, "Unknown", "assumed down: skipped")


def test_without_health_nothing_changes(route: LLMRoute, policy: ProviderPolicy) -> None:
    assert explain_route(route, policy, "pii", health=None) == explain_route(route, policy, "pii")


@pytest.mark.parametrize(
    ("deployment", "summary"),
    [
        (
            {
                "spec": {"replicas": 2},
                "status": {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1},
            },
            "1/2 ready (replicas 2, updated 2, available 1)",
        ),
        ({"spec": {}}, "0/1 ready (replicas 0, updated 0, available 0)"),  # a new Deployment: defaults, no status yet
        (
            {"spec": {"replicas": 0}, "status": {"readyReplicas": None}},
            "0/0 ready (replicas 0, updated 0, available 0)",
        ),
        (None, "not found (not created yet: see the route's conditions)"),
    ],
)
def test_router_replicas(deployment: dict[str, Any] | None, summary: str) -> None:
    assert router_state("r-router", deployment).summary == summary


def test_router_unreadable() -> None:
    state = router_state("r-router", None, "forbidden: may not get deployments.apps")
    assert state.summary == "unknown (forbidden: may not get deployments.apps)"
    assert state.to_dict() == {
        "deployment": "r-router",
        "found": False,
        "error": "forbidden: may not get deployments.apps",
    }


# --- connection --------------------------------------------------------------------------------------------------


def kubeconfig(path: Path, *contexts: tuple[str, str | None], current: str | None = None) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": current or "",
                "clusters": [{"name": "c", "cluster": {"server": "https://api.example:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": n, "context": {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})}}
                    for n, ns in contexts
                ],
            }
        )
    )
    return path


def test_namespace_flag_then_context_then_default(tmp_path: Path) -> None:
    path = str(kubeconfig(tmp_path / "k", ("dev", "apps"), ("prod", None), current="dev"))
    assert connect(path, None, None, env={}).namespace == "apps"
    assert connect(path, None, "other", env={}).namespace == "other"
    conn = connect(path, "prod", None, env={})
    assert (conn.namespace, conn.who, conn.client.configuration.host) == (
        "default",
        'the user of context "prod"',
        "https://api.example:6443",
    )


def test_kubeconfig_from_the_environment(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "k", ("dev", "apps"), current="dev")
    missing = tmp_path / "missing"
    assert connect(None, None, None, env={"KUBECONFIG": f"{missing}:{path}"}).namespace == "apps"


def test_no_current_context(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "k", ("dev", "apps"))
    with pytest.raises(ClusterError, match=r"has no current-context \(pass --context\)$"):
        connect(str(path), None, None, env={})


def test_service_account_in_a_pod(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("not-a-real-token")
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (sa / "namespace").write_text("apps\n")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path)}
    conn = connect(None, None, None, env=env, service_account=sa)
    assert (conn.namespace, conn.who, conn.client.configuration.host) == (
        "apps",
        "this pod's service account",
        "https://10.0.0.1:443",
    )
    (sa / "token").unlink()
    with pytest.raises(ClusterError, match=r"^no kubeconfig and no usable service account in this pod: "):
        connect(None, None, None, env=env, service_account=sa)


def test_no_kubeconfig_outside_a_pod(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"^no kubeconfig: .*/nope does not exist \(pass --kubeconfig"):
        connect(None, None, None, env={"KUBECONFIG": str(tmp_path / "nope")})
