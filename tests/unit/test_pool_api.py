"""ModelPool in the API and the compile path: pool providers (self-hosted by definition, reached through the pool's
Service, named in the compiled config for pod picking), cold-start settings, the reasoning field per model, the
cross-object checks of ``llmroute validate`` and the pool state in ``llmroute explain``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import DEFAULT_VLLM_IMAGE, ModelPool
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.cli import main
from llmroute.core import pool_checks, residency
from llmroute.core.compile import compile_route
from llmroute.core.explain import explain_route
from llmroute.core.router_config import RouterConfig
from tests.conftest import EXAMPLE, example_doc

pytestmark = pytest.mark.unit


@pytest.fixture()
def pool_doc() -> dict[str, Any]:
    return example_doc("pool")


def pools_of(*docs: dict[str, Any]) -> dict[tuple[str, str], ModelPool]:
    out = {}
    for doc in docs:
        pool = ModelPool.model_validate(doc)
        out[(pool.metadata.namespace or "default", pool.metadata.name)] = pool
    return out


def test_pool_provider_compiles_to_the_pool_service_with_a_pool_target(route: LLMRoute,
                                                                        policy: ProviderPolicy) -> None:
    config = compile_route(route, policy)
    vllm = config.provider("vllm")
    assert vllm is not None
    assert vllm.endpoint == "http://deepseek-v3.llm-serving.svc.cluster.local:8000/v1"
    assert vllm.self_hosted is True
    assert vllm.credential is None
    assert vllm.pool is not None
    assert (vllm.pool.name, vllm.pool.namespace, vllm.pool.port) == ("deepseek-v3", "llm-serving", 8000)
    assert vllm.pool.pods_host == "deepseek-v3-pods.llm-serving.svc.cluster.local"
    assert config.cold_start is not None
    assert (config.cold_start.max_wait_s, config.cold_start.max_requests) == (180.0, 100)
    assert RouterConfig.model_validate_json(config.to_json()) == config


def test_configs_without_pools_or_reasoning_changes_keep_their_old_wire_form(route_doc: dict[str, Any],
                                                                           policy_doc: dict[str, Any]) -> None:
    policy_doc["spec"]["providers"] = [p for p in policy_doc["spec"]["providers"] if p["name"] != "vllm"]
    for model in route_doc["spec"]["models"]:
        model["backends"] = [b for b in model["backends"] if b["provider"] != "vllm"]
    config = compile_route(LLMRoute.model_validate(route_doc), ProviderPolicy.model_validate(policy_doc))
    wire = json.loads(config.to_json())
    assert "coldStart" not in wire
    assert all("pool" not in p for p in wire["providers"])
    assert all("reasoningField" not in m for m in wire["models"])


def test_reasoning_field_is_compiled_only_when_it_is_not_deepseeks(route_doc: dict[str, Any],
                                                                    policy: ProviderPolicy) -> None:
    route_doc["spec"]["models"][1]["reasoningField"] = "reasoning"
    config = compile_route(LLMRoute.model_validate(route_doc), policy)
    assert [m.reasoning_field for m in config.models] == [None, "reasoning"]


def test_pool_provider_is_self_hosted_for_residency(policy: ProviderPolicy) -> None:
    phi = policy.spec.data_class("phi")
    vllm = policy.spec.provider("vllm")
    assert phi is not None and vllm is not None
    verdict = residency.evaluate(phi, vllm)
    assert verdict.allowed
    assert "self-hosted: exempt from required certifications" in verdict.reasons


def test_self_hosted_only_class_names_the_pool(policy_doc: dict[str, Any]) -> None:
    policy_doc["spec"]["dataClasses"].append({"name": "secret", "allow": {"selfHostedOnly": True}})
    policy = ProviderPolicy.model_validate(policy_doc)
    cls = policy.spec.data_class("secret")
    assert cls is not None
    verdicts = {p.name: residency.evaluate(cls, p) for p in policy.spec.providers}
    assert [n for n, v in verdicts.items() if v.allowed] == ["vllm"]
    assert verdicts["vllm"].reasons == ("self-hosted (ModelPool)",)


@pytest.mark.parametrize(("change", "message"), [
    ({"endpoint": "http://x:8000/v1"}, "set exactly one of endpoint and pool"),
    ({"pool": None}, "set exactly one of endpoint and pool"),
])
def test_a_provider_has_exactly_one_of_endpoint_and_pool(policy_doc: dict[str, Any], change: dict[str, Any],
                                                         message: str) -> None:
    vllm = next(p for p in policy_doc["spec"]["providers"] if p["name"] == "vllm")
    vllm.update(change)
    if vllm.get("pool") is None:
        vllm.pop("pool")
    with pytest.raises(ValidationError, match=message):
        ProviderPolicy.model_validate(policy_doc)


def test_model_pool_defaults(pool_doc: dict[str, Any]) -> None:
    minimal = {"apiVersion": "llmroute.io/v1alpha1", "kind": "ModelPool", "metadata": {"name": "p", "namespace": "n"},
               "spec": {"model": "deepseek-ai/DeepSeek-V3"}}
    spec = ModelPool.model_validate(minimal).spec
    assert spec.image == DEFAULT_VLLM_IMAGE and ":" in spec.image and not spec.image.endswith(":latest")
    assert spec.served_name == "deepseek-ai/DeepSeek-V3"
    assert spec.tensor_parallel == 1
    assert [(t.key, t.operator.value, t.effect and t.effect.value) for t in spec.effective_tolerations] == [
        ("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert (spec.replicas.min, spec.replicas.max) == (0, 1)
    assert spec.prewarm is None
    example = ModelPool.model_validate(pool_doc).spec
    assert example.tensor_parallel == 8
    assert example.prewarm is not None and example.prewarm.replicas == 2


def test_an_empty_toleration_list_tolerates_nothing(pool_doc: dict[str, Any]) -> None:
    pool_doc["spec"]["tolerations"] = []
    assert ModelPool.model_validate(pool_doc).spec.effective_tolerations == []


def test_a_cpu_pool_does_not_tolerate_gpu_nodes_by_default(pool_doc: dict[str, Any]) -> None:
    pool_doc["spec"]["resources"] = {"gpus": 0}
    assert ModelPool.model_validate(pool_doc).spec.effective_tolerations == []


@pytest.mark.parametrize("quantity", ["lots", "-1Gi", "1.5.3Gi"])
def test_quantities_are_checked(pool_doc: dict[str, Any], quantity: str) -> None:
    pool_doc["spec"]["resources"]["memory"] = quantity
    with pytest.raises(ValidationError, match=r"spec\.resources\.memory"):
        ModelPool.model_validate(pool_doc)


def test_validate_reports_engine_args_the_operator_manages(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          pool_doc: dict[str, Any]) -> None:
    pool_doc["spec"]["engineArgs"] = ["--max-model-len=32768", "--port=9000"]
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(pool_doc))
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    where = f"{tmp_path / 'pool.yaml'} (document 1, ModelPool llm-serving/deepseek-v3)"
    assert f"{where}: spec.engineArgs[1]: " in err and "--port" in err


def test_backend_model_must_be_the_pools_served_name(route_doc: dict[str, Any], policy: ProviderPolicy,
                                                     pool_doc: dict[str, Any]) -> None:
    pool_doc["spec"]["servedModelName"] = "deepseek-v3"
    route = LLMRoute.model_validate(route_doc)
    found = pool_checks.problems({policy.metadata.name: policy}, {("apps", "deepseek"): route}, pools_of(pool_doc))
    assert [(p.subject is route, str(p.error)) for p in found] == [(True, (
        'spec.models[0].backends[1].model: provider "vllm" is ModelPool llm-serving/deepseek-v3, which serves '
        '"deepseek-v3", not "deepseek-ai/DeepSeek-V3"'))]


@pytest.mark.parametrize(("provider", "message"), [
    ("deepseak", 'no provider "deepseak" in ProviderPolicy "deepseek-residency" (known: deepseek, together, '
                 "fireworks, bedrock, vllm)"),
    ("vllm", '"vllm" is itself a ModelPool; prewarm watches hosted providers'),
])
def test_prewarm_must_watch_a_hosted_provider_of_the_policy(policy: ProviderPolicy, pool_doc: dict[str, Any],
                                                            provider: str, message: str) -> None:
    pool_doc["spec"]["prewarm"]["whenDown"][0]["provider"] = provider
    found = pool_checks.problems({policy.metadata.name: policy}, {}, pools_of(pool_doc))
    assert [str(p.error) for p in found] == [f"spec.prewarm.whenDown[0].provider: {message}"]


def test_notes_name_what_is_not_among_the_files(policy: ProviderPolicy, pool_doc: dict[str, Any]) -> None:
    assert pool_checks.notes({policy.metadata.name: policy}, {}) == [
        'ProviderPolicy deepseek-residency: provider "vllm" names ModelPool llm-serving/deepseek-v3, which is not '
        "among the files"]
    assert pool_checks.notes({}, pools_of(pool_doc)) == [
        'ModelPool llm-serving/deepseek-v3: prewarm watches ProviderPolicy "deepseek-residency", which is not among '
        "the files"]
    assert pool_checks.notes({policy.metadata.name: policy}, pools_of(pool_doc)) == []


def test_validate_reports_pool_problems_with_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            pool_doc: dict[str, Any]) -> None:
    for name in ("policy", "route", "secrets"):
        (tmp_path / f"{name}.yaml").write_text((EXAMPLE / f"{name}.yaml").read_text())
    pool_doc["spec"]["servedModelName"] = "dsv3"
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(pool_doc))
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    where = f"{tmp_path / 'route.yaml'} (document 1, LLMRoute apps/deepseek)"
    assert f'{where}: spec.models[0].backends[1].model: provider "vllm"' in err


def test_validate_counts_pools(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.startswith("ok: 1 ProviderPolicy, 1 LLMRoute, 1 ModelPool, 1 Secret")


def with_status(pool_doc: dict[str, Any], ready: int, desired: int, reason: str) -> dict[str, Any]:
    return {**pool_doc, "status": {"replicas": desired, "readyReplicas": ready, "desiredReplicas": desired,
                                   "reason": reason}}


def test_explain_shows_the_pool_state_and_skips_a_cold_pool_while_others_are_up(
        route: LLMRoute, policy: ProviderPolicy, pool_doc: dict[str, Any]) -> None:
    pools = pools_of(with_status(pool_doc, 0, 0, "Idle"))
    explained = explain_route(route, policy, "phi", model="deepseek-chat", pools=pools)
    (chat,) = explained.models
    vllm = next(b for b in chat.backends if b.provider == "vllm")
    assert (vllm.pool, vllm.pool_state, vllm.cold) == ("llm-serving/deepseek-v3", "0/0 ready, desired 0 (Idle)", True)
    assert vllm.reasons[-1] == ("ModelPool llm-serving/deepseek-v3: 0/0 ready, desired 0 (Idle); no ready replica: "
                                "skipped while others are available")
    assert [b.provider for b in chat.backends if b.allowed] == ["vllm", "bedrock"]
    assert chat.outcome == "first attempt: bedrock 100%"
    held = explain_route(route, policy, "phi", frozenset({"bedrock"}), model="deepseek-chat", pools=pools)
    assert held.models[0].outcome == ("held until ModelPool llm-serving/deepseek-v3 has a ready replica "
                                      "(spec.coldStart), then first attempt: vllm 100%")
    assert held.to_dict()["models"][0]["backends"][0]["poolState"] == "0/0 ready, desired 0 (Idle)"


def test_explain_serves_from_a_warm_pool(route: LLMRoute, policy: ProviderPolicy, pool_doc: dict[str, Any]) -> None:
    pools = pools_of(with_status(pool_doc, 2, 2, "Prewarm"))
    explained = explain_route(route, policy, "phi", frozenset({"bedrock"}), model="deepseek-chat", pools=pools)
    assert explained.models[0].outcome == "first attempt: vllm 100%"
    vllm = next(b for b in explained.models[0].backends if b.provider == "vllm")
    assert (vllm.pool_state, vllm.cold) == ("2/2 ready, desired 2 (Prewarm)", False)
