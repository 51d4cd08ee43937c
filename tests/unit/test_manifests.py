"""core.manifests: the router's owned objects per route shape; schema-valid for Kubernetes 1.30 and 1.35; no key
values outside the Secret copy; needs_update() is the "no patch for the same inputs" rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core.compile import compile_route
from llmroute.core.manifests import (
    CONFIG_HASH_ANNOTATION,
    KEYS_HASH_ANNOTATION,
    Desired,
    RouterSettings,
    desired_objects,
    needs_update,
    route_errors,
    value_digest,
)
from tests.conftest import example_doc

pytestmark = pytest.mark.unit

SETTINGS = RouterSettings(image="registry.example/llmroute:1")
COPIED = {"LLMROUTE_KEY_DEEPSEEK": "ZGVlcA==", "LLMROUTE_KEY_TOGETHER": "dG9n"}


def build(edit: Callable[[dict[str, Any], dict[str, Any]], None] = lambda r, p: None) -> Desired:
    route_doc, policy_doc = example_doc("route"), example_doc("policy")
    route_doc["metadata"]["uid"] = "uid-1"
    edit(route_doc, policy_doc)
    route, policy = LLMRoute.model_validate(route_doc), ProviderPolicy.model_validate(policy_doc)
    return desired_objects(route, compile_route(route, policy), SETTINGS, COPIED)


def by_kind(d: Desired) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in d.objects}


def _set(path: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def edit(route: dict[str, Any], policy: dict[str, Any]) -> None:
        node = route
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return edit


def _keys_local(route: dict[str, Any], policy: dict[str, Any]) -> None:
    for p in policy["spec"]["providers"]:
        if "credentials" in p:
            p["credentials"]["secretRef"].pop("namespace")


SHAPES = [
    pytest.param(lambda r, p: None, {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Secret"},
                 {"HorizontalPodAutoscaler"}, id="example-2-replicas-foreign-keys"),
    pytest.param(_set("spec.router", {"replicas": 1}), {"ConfigMap", "Deployment", "Service", "Secret"},
                 {"HorizontalPodAutoscaler", "PodDisruptionBudget"}, id="1-replica-no-pdb"),
    pytest.param(_set("spec.router", {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}),
                 {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret"},
                 set(), id="autoscaling-hpa-and-pdb"),
    pytest.param(_keys_local, {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"},
                 {"HorizontalPodAutoscaler", "Secret"}, id="keys-in-route-namespace-no-copy"),
]


@pytest.mark.parametrize(("edit", "kinds", "absent"), SHAPES)
def test_objects_per_route_shape(edit: Any, kinds: set[str], absent: set[str]) -> None:
    d = build(edit)
    assert {o["kind"] for o in d.objects} == kinds
    assert {k.kind for k in d.absent} == absent | {"NetworkPolicy"}  # opt-in: tests/unit/test_access_manifests.py


@pytest.mark.parametrize("version", ["1.30", "1.35"])
@pytest.mark.parametrize(("edit", "kinds", "absent"), SHAPES)
def test_every_object_validates_strictly(edit: Any, kinds: set[str], absent: set[str], version: str) -> None:
    for obj in build(edit).objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_validation_would_catch_a_bad_object() -> None:
    dep = by_kind(build())["Deployment"]
    dep["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, "1.35", strict=True)


def test_deployment_runs_the_router_hardened_with_probes_and_hash() -> None:
    d = build()
    dep = by_kind(d)["Deployment"]
    pod = dep["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert c["args"] == ["router", "--listen", "0.0.0.0:8080", "--config", "/etc/llmroute/config.json"]
    assert c["image"] == "registry.example/llmroute:1"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == d.config_hash
    assert pod["metadata"]["labels"] == {"app.kubernetes.io/name": "llmroute-router",
                                         "app.kubernetes.io/instance": "deepseek",
                                         "app.kubernetes.io/managed-by": "llmroute-operator",
                                         "app.kubernetes.io/component": "router"}
    assert dep["spec"]["replicas"] == 2
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert {"name": "config", "mountPath": "/etc/llmroute", "readOnly": True} in c["volumeMounts"]


def _pod_annotations(d: Desired) -> dict[str, str]:
    annotations: dict[str, str] = by_kind(d)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    return annotations


def _build_with_keys(copied: dict[str, str], digests: dict[str, str], local: bool = False) -> Desired:
    route_doc, policy_doc = example_doc("route"), example_doc("policy")
    route_doc["metadata"]["uid"] = "uid-1"
    if local:
        _keys_local(route_doc, policy_doc)
    route, policy = LLMRoute.model_validate(route_doc), ProviderPolicy.model_validate(policy_doc)
    return desired_objects(route, compile_route(route, policy), SETTINGS, copied, digests)


LOCAL_DIGESTS = {"LLMROUTE_KEY_DEEPSEEK": value_digest("ZGVlcA=="), "LLMROUTE_KEY_TOGETHER": value_digest("dG9n")}


@pytest.mark.parametrize("local", [False, True], ids=["copied-keys", "keys-in-route-namespace"])
def test_a_key_change_rolls_the_router_through_keys_hash_only(local: bool) -> None:
    copied, digests = ({}, LOCAL_DIGESTS) if local else (COPIED, {})
    base = _build_with_keys(copied, digests, local)
    again = _build_with_keys(dict(copied), dict(digests), local)
    assert base.objects == again.objects  # same inputs: same annotations, no patch
    assert _pod_annotations(base) == {CONFIG_HASH_ANNOTATION: base.config_hash, KEYS_HASH_ANNOTATION: base.keys_hash}
    assert len(base.keys_hash) == 16

    if local:
        rotated = _build_with_keys({}, {**digests, "LLMROUTE_KEY_DEEPSEEK": value_digest("bmV3")}, local)
        dropped = _build_with_keys({}, {"LLMROUTE_KEY_TOGETHER": digests["LLMROUTE_KEY_TOGETHER"]}, local)
    else:
        rotated = _build_with_keys({**copied, "LLMROUTE_KEY_DEEPSEEK": "bmV3"}, {}, local)
        dropped = _build_with_keys({"LLMROUTE_KEY_TOGETHER": copied["LLMROUTE_KEY_TOGETHER"]}, {}, local)
    hashes = {base.keys_hash, rotated.keys_hash, dropped.keys_hash}
    assert len(hashes) == 3  # a rotated key and a key gone missing (and so one added later) each roll
    for d in (rotated, dropped):
        assert d.config_hash == base.config_hash
        assert _pod_annotations(d)[CONFIG_HASH_ANNOTATION] == base.config_hash
        assert _pod_annotations(d)[KEYS_HASH_ANNOTATION] == d.keys_hash
        changed = [o["kind"] for o, b in zip(d.objects, base.objects, strict=True) if o != b]
        assert changed == (["Deployment"] if local else ["Deployment", "Secret"])


def test_keys_hash_reads_only_the_keys_the_env_references_and_hides_them() -> None:
    base = _build_with_keys(COPIED, {})
    # a route-namespace digest for a key that is copied is not what the env var reads: ignored
    assert _build_with_keys(COPIED, {"LLMROUTE_KEY_DEEPSEEK": value_digest("other")}).keys_hash == base.keys_hash
    # a replica change touches neither hash
    route_doc, policy_doc = example_doc("route"), example_doc("policy")
    route_doc["metadata"]["uid"] = "uid-1"
    route_doc["spec"]["router"] = {"replicas": 3}
    route, policy = LLMRoute.model_validate(route_doc), ProviderPolicy.model_validate(policy_doc)
    scaled = desired_objects(route, compile_route(route, policy), SETTINGS, COPIED)
    assert _pod_annotations(scaled) == _pod_annotations(base)
    # salted per route: the same keys under another route uid give an unrelated hash
    route_doc["metadata"]["uid"] = "uid-2"
    other = desired_objects(LLMRoute.model_validate(route_doc), compile_route(route, policy), SETTINGS, COPIED)
    assert other.keys_hash != base.keys_hash
    text = json.dumps(by_kind(base)["Deployment"])
    for value in COPIED.values():
        assert value not in text and value_digest(value) not in text and value_digest(value)[7:] not in text


def test_resources_from_spec_override_defaults() -> None:
    d = build(_set("spec.router.resources", {"requests": {"cpu": 1}, "limits": {"cpu": "2", "memory": "1Gi"}}))
    res = by_kind(d)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res == {"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}


def test_autoscaling_leaves_replicas_to_the_hpa() -> None:
    d = build(_set("spec.router", {"autoscaling": {"minReplicas": 3, "maxReplicas": 9,
                                                    "targetCpuUtilizationPercent": 60}}))
    assert "replicas" not in by_kind(d)["Deployment"]["spec"]
    hpa = by_kind(d)["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


@pytest.mark.parametrize(("edit", "secret_name", "key"), [
    pytest.param(lambda r, p: None, "deepseek-provider-keys", "LLMROUTE_KEY_DEEPSEEK", id="foreign-copied"),
    pytest.param(_keys_local, "llm-provider-keys", "deepseek", id="local-referenced"),
])
def test_keys_reach_the_pod_only_as_secret_refs(edit: Any, secret_name: str, key: str) -> None:
    d = build(edit)
    env = {e["name"]: e for e in by_kind(d)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LLMROUTE_KEY_DEEPSEEK"] == {"name": "LLMROUTE_KEY_DEEPSEEK", "valueFrom": {"secretKeyRef": {
        "name": secret_name, "key": key, "optional": True}}}
    assert "LLMROUTE_KEY_VLLM" not in env  # self-hosted, no key
    outside = json.dumps([o for o in d.objects if o["kind"] != "Secret"])
    assert not [v for v in COPIED.values() if v in outside]


def test_replicas_change_keeps_the_config_hash_routing_change_does_not() -> None:
    base = build().config_hash
    assert build(_set("spec.router.replicas", 5)).config_hash == base
    assert build(_set("spec.failover.maxAttempts", 2)).config_hash != base


def test_a_drill_changes_the_config_map_but_never_rolls_the_router() -> None:
    base = build()
    drill = [{"provider": "deepseek", "fault": "FullOutage", "until": "2026-03-01T15:00:00Z"}]
    drilled = build(_set("spec.drills", drill))
    assert drilled.config_hash == base.config_hash
    assert by_kind(drilled)["Deployment"] == by_kind(base)["Deployment"]
    assert needs_update(by_kind(drilled)["ConfigMap"], by_kind(base)["ConfigMap"])
    assert json.loads(by_kind(drilled)["ConfigMap"]["data"]["config.json"])["drills"][0]["provider"] == "deepseek"


@pytest.mark.parametrize(("edit", "field"), [
    pytest.param(lambda r, p: r["metadata"].update(name="x" * 50), "metadata.name", id="name-too-long"),
    pytest.param(lambda r, p: r["metadata"].update(name="9lives"), "metadata.name", id="name-not-dns-1035"),
    pytest.param(_set("spec.router.autoscaling", {"minReplicas": 5, "maxReplicas": 2}),
                 "spec.router.autoscaling.maxReplicas", id="max-below-min"),
])
def test_route_errors_name_the_field(edit: Any, field: str) -> None:
    doc = example_doc("route")
    edit(doc, {})
    assert [e.path for e in route_errors(LLMRoute.model_validate(doc))] == [field]


@pytest.mark.parametrize(("desired", "live", "differs"), [
    pytest.param({"a": 1}, {"a": 1, "b": 2}, False, id="server-added-fields-ignored"),
    pytest.param({"a": 1}, {"a": 2}, True, id="changed-value"),
    pytest.param({"a": {"b": [1, 2]}}, {"a": {"b": [1]}}, True, id="list-length"),
    pytest.param({"l": [{"x": 1}]}, {"l": [{"x": 1, "default": "y"}]}, False, id="defaults-inside-list-items"),
    pytest.param({"q": 1}, {"q": "1"}, False, id="quantity-as-text"),
    pytest.param({"f": False}, {"f": 0}, True, id="bool-is-not-int"),
    pytest.param({"a": 1}, None, True, id="missing"),
])
def test_needs_update(desired: Any, live: Any, differs: bool) -> None:
    assert needs_update(desired, live) is differs
