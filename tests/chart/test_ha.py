"""The chart runs the operator highly available: two replicas electing one through a Lease, kept apart by a preferred
anti-affinity and a PodDisruptionBudget, with exactly the Role :func:`llmroute.controller.rbac.lease_role` says the
election needs, and the environment :meth:`llmroute.controller.settings.Settings.from_env` reads it from."""

from __future__ import annotations

from typing import Any

import pytest

from llmroute.controller.rbac import lease_role
from llmroute.controller.settings import Settings
from tests.chart.conftest import CHART, NAMESPACE, by_kind, helm_template, one
from tests.chart.toolchain import run, tool

pytestmark = pytest.mark.chart
Rendered = dict[tuple[str, str], list[dict[str, Any]]]


def _operator(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")


def _env(docs: list[dict[str, Any]], pod_name: str = "llmroute-operator-7c9d-abcde") -> dict[str, str]:
    """The operator container's environment as the kubelet resolves it (downward API fields filled in)."""
    pod = _operator(docs)["spec"]["template"]
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}
    env = {}
    for e in pod["spec"]["containers"][0]["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def test_two_replicas_elect_one_through_the_lease_the_role_grants(rendered: Rendered) -> None:
    docs = rendered["defaults", "1.35"]
    deployment = _operator(docs)
    assert deployment["spec"]["replicas"] == 2
    # a rollout starts a standby before it stops an old replica (the standby passes readiness: it serves /healthz)
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    settings = Settings.from_env(_env(docs))
    assert settings.leader_election
    assert (settings.lease_namespace, settings.identity) == (NAMESPACE, "llmroute-operator-7c9d-abcde")

    role, binding = one(docs, "Role"), one(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == lease_role(settings.lease_name)["rules"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


def test_replicas_are_kept_apart_and_drained_one_at_a_time(rendered: Rendered) -> None:
    docs = rendered["defaults", "1.35"]
    pod = _operator(docs)["spec"]["template"]
    (term,) = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["metadata"]["namespace"] == NAMESPACE
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]  # one replica stays evictable
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_own_affinity_replaces_the_default_and_single_replica_still_elects(rendered: Rendered) -> None:
    custom = _operator(rendered["all-on", "1.35"])["spec"]["template"]["spec"]["affinity"]
    assert custom["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"][
        "labelSelector"
    ] == {"matchLabels": {"app.kubernetes.io/name": "llmroute-operator"}}  # all-on's, verbatim
    single = helm_template(
        None, "1.35", "--set", "operator.replicas=1", "--set", "operator.podDisruptionBudget.enabled=false"
    )
    assert _operator(single)["spec"]["replicas"] == 1
    assert Settings.from_env(_env(single)).leader_election  # a rollout still never runs two active operators
    assert not by_kind(single, "PodDisruptionBudget")


def test_no_replicas_is_refused() -> None:
    proc = run([tool("helm"), "template", "llmroute", str(CHART), "--set", "operator.replicas=0"])
    assert proc.returncode != 0 and "at '/operator/replicas': minimum: got 0, want 1" in proc.stderr
