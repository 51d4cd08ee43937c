"""compile_route(): residency per model and class, ordering, settings in seconds, drills, errors that name the field."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from pydantic import ValidationError

from llmroute.api.llm_route import DrillFault, LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core.compile import compile_route, credential_env
from llmroute.core.router_config import RouterConfig
from llmroute.errors import CompileError

pytestmark = pytest.mark.unit


def allowed(config: RouterConfig, model: str, cls: str) -> list[str]:
    route = config.model_route(model)
    assert route is not None
    class_route = route.for_class(cls)
    assert class_route is not None
    return [b.provider for b in class_route.allowed]


def test_example_compiles_with_residency_applied(route: LLMRoute, policy: ProviderPolicy) -> None:
    config = compile_route(route, policy)
    assert config.default_data_class == "internal"
    assert config.data_classes == ("public", "internal", "pii", "phi")
    assert allowed(config, "deepseek-chat", "public") == ["deepseek", "vllm", "together", "fireworks", "bedrock"]
    assert allowed(config, "deepseek-chat", "pii") == ["vllm", "together", "fireworks", "bedrock"]
    assert allowed(config, "deepseek-chat", "phi") == ["vllm", "bedrock"]
    assert allowed(config, "deepseek-reasoner", "phi") == ["bedrock"]


def test_pii_and_phi_never_compile_to_deepseek_cn(route: LLMRoute, policy: ProviderPolicy) -> None:
    config = compile_route(route, policy)
    cn = {p.name for p in config.providers if p.jurisdiction == "CN"}
    assert cn == {"deepseek"}
    for model, cls in itertools.product(config.models, ("pii", "phi")):
        class_route = model.for_class(cls)
        assert class_route is not None
        assert not cn & {b.provider for b in class_route.allowed}
        assert cn <= {d.provider for d in class_route.denied}


def test_denials_carry_reasons(route: LLMRoute, policy: ProviderPolicy) -> None:
    chat = compile_route(route, policy).model_route("deepseek-chat")
    assert chat is not None
    pii = chat.for_class("pii")
    assert pii is not None
    (denial,) = pii.denied
    assert denial.provider == "deepseek"
    assert denial.reasons == ("jurisdiction CN not in [US, EU]", "training terms unknown: treated as training")


def test_priority_then_declaration_order(route_doc: dict[str, Any], policy: ProviderPolicy) -> None:
    route_doc["spec"]["models"][0]["backends"] = [
        {"provider": "bedrock", "model": "b", "priority": 5},
        {"provider": "together", "model": "t", "priority": 1},
        {"provider": "fireworks", "model": "f", "priority": 1},
    ]
    config = compile_route(LLMRoute.model_validate(route_doc), policy)
    assert allowed(config, "deepseek-chat", "public") == ["together", "fireworks", "bedrock"]


def test_settings_are_seconds_and_keys_are_references(route: LLMRoute, policy: ProviderPolicy) -> None:
    config = compile_route(route, policy)
    assert config.failover.time_to_first_token_s == 8.0
    assert config.failover.total_timeout_s == 600.0
    assert config.circuit.recovery_steps == (0.1, 0.5, 1.0)
    deepseek = config.provider("deepseek")
    assert deepseek is not None and deepseek.credential is not None
    assert deepseek.credential.env == credential_env("deepseek") == "LLMROUTE_KEY_DEEPSEEK"
    assert (deepseek.credential.secret_name, deepseek.credential.secret_key) == ("llm-provider-keys", "deepseek")
    vllm = config.provider("vllm")
    assert vllm is not None and vllm.credential is None


def test_no_secret_values_in_config(route: LLMRoute, policy: ProviderPolicy) -> None:
    text = compile_route(route, policy).to_json()
    assert "local-demo-key" not in text


def test_hash_is_stable_and_tracks_routing(route_doc: dict[str, Any], policy: ProviderPolicy) -> None:
    first = compile_route(LLMRoute.model_validate(route_doc), policy)
    route_doc["spec"]["router"]["replicas"] = 7
    route_doc["metadata"]["generation"] = 9
    same = compile_route(LLMRoute.model_validate(route_doc), policy)
    assert same.content_hash() == first.content_hash()
    route_doc["spec"]["failover"]["maxAttempts"] = 2
    changed = compile_route(LLMRoute.model_validate(route_doc), policy)
    assert changed.content_hash() != first.content_hash()


def test_round_trip(route: LLMRoute, policy: ProviderPolicy) -> None:
    config = compile_route(route, policy)
    assert RouterConfig.model_validate_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(lambda r: r["spec"]["models"][0]["backends"].__setitem__(
            1, {"provider": "fireworx", "model": "m"}),
            'spec.models[0].backends[1].provider: no provider "fireworx" in ProviderPolicy "deepseek-residency" '
            "(known: deepseek, together, fireworks, bedrock, vllm)", id="missing-provider"),
        pytest.param(lambda r: r["spec"].__setitem__("defaultDataClass", "secret"),
                     'spec.defaultDataClass: unknown data class "secret" in ProviderPolicy "deepseek-residency" '
                     "(known: public, internal, pii, phi)", id="unknown-default-class"),
        pytest.param(lambda r: r["spec"]["policyRef"].__setitem__("name", "other"),
                     'spec.policyRef.name: names ProviderPolicy "other", not "deepseek-residency"', id="wrong-policy"),
    ],
)
def test_compile_errors_name_the_field(route_doc: dict[str, Any], policy: ProviderPolicy, edit: Any,
                                       expected: str) -> None:
    edit(route_doc)
    with pytest.raises(CompileError) as exc:
        compile_route(LLMRoute.model_validate(route_doc), policy)
    assert [str(e) for e in exc.value.errors] == [expected]


def test_missing_default_class_everywhere(route_doc: dict[str, Any], policy_doc: dict[str, Any]) -> None:
    del route_doc["spec"]["defaultDataClass"]
    del policy_doc["spec"]["defaultDataClass"]
    with pytest.raises(CompileError, match=r"spec.defaultDataClass: not set, and ProviderPolicy"):
        compile_route(LLMRoute.model_validate(route_doc), ProviderPolicy.model_validate(policy_doc))


def test_route_default_falls_back_to_policy(route_doc: dict[str, Any], policy: ProviderPolicy) -> None:
    del route_doc["spec"]["defaultDataClass"]
    assert compile_route(LLMRoute.model_validate(route_doc), policy).default_data_class == "internal"


def test_every_error_is_reported(route_doc: dict[str, Any], policy: ProviderPolicy) -> None:
    route_doc["spec"]["models"][0]["backends"][0]["provider"] = "nope1"
    route_doc["spec"]["models"][1]["backends"][2]["provider"] = "nope2"
    with pytest.raises(CompileError) as exc:
        compile_route(LLMRoute.model_validate(route_doc), policy)
    assert [e.path for e in exc.value.errors] == ["spec.models[0].backends[0].provider",
                                                 "spec.models[1].backends[2].provider"]


# --- drills ---------------------------------------------------------------------------------------------------

DRILLS: list[dict[str, Any]] = [
    {"provider": "deepseek", "fault": "FullOutage", "until": "2026-03-01T15:00:00Z"},
    {"provider": "together", "fault": "HalfErrors", "until": "2026-03-01T23:30:00+08:00"},
    {"provider": "bedrock", "fault": "RateLimited", "until": "2026-03-01T15:00:00.25Z", "errorRate": 20},
]


def test_drills_compile_to_epoch_and_resolved_error_rates(route_doc: dict[str, Any], policy: ProviderPolicy) -> None:
    route_doc["spec"]["drills"] = DRILLS
    config = compile_route(LLMRoute.model_validate(route_doc), policy)
    assert [(d.provider, d.fault, d.until_epoch, d.error_rate) for d in config.drills] == [
        ("deepseek", DrillFault.FULL_OUTAGE, 1772377200.0, 1.0),
        ("together", DrillFault.HALF_ERRORS, 1772377200.0 + 1800, 0.5),  # 23:30+08:00 is 15:30Z
        ("bedrock", DrillFault.RATE_LIMITED, 1772377200.25, 0.2),
    ]
    assert RouterConfig.model_validate_json(config.to_json()) == config


def test_drills_never_change_the_hash_and_appear_in_the_config_only_when_set(
    route_doc: dict[str, Any], policy: ProviderPolicy
) -> None:
    plain = compile_route(LLMRoute.model_validate(route_doc), policy)
    assert "drills" not in json.loads(plain.to_json())  # byte-for-byte what routers before drills read
    route_doc["spec"]["drills"] = DRILLS
    drilled = compile_route(LLMRoute.model_validate(route_doc), policy)
    route_doc["spec"]["drills"] = DRILLS[:1]
    fewer = compile_route(LLMRoute.model_validate(route_doc), policy)
    assert plain.content_hash() == drilled.content_hash() == fewer.content_hash()  # a drill never rolls the router
    assert len({plain.to_json(), drilled.to_json(), fewer.to_json()}) == 3  # but it reaches the ConfigMap
    assert [d["provider"] for d in json.loads(drilled.to_json())["drills"]] == ["deepseek", "together", "bedrock"]


def test_a_drill_must_name_a_backend_provider_of_the_route(route_doc: dict[str, Any], policy: ProviderPolicy) -> None:
    for model in route_doc["spec"]["models"]:  # vllm stays in the policy but is no longer a backend of the route
        model["backends"] = [b for b in model["backends"] if b["provider"] != "vllm"]
    route_doc["spec"]["drills"] = [DRILLS[0], {**DRILLS[1], "provider": "vllm"}, {**DRILLS[2], "provider": "openai"}]
    with pytest.raises(CompileError) as exc:
        compile_route(LLMRoute.model_validate(route_doc), policy)
    backends = "(backend providers: deepseek, together, fireworks, bedrock)"
    assert [str(e) for e in exc.value.errors] == [
        f'spec.drills[1].provider: "vllm" is not a backend provider of this route {backends}',
        f'spec.drills[2].provider: "openai" is not a backend provider of this route {backends}',
    ]


@pytest.mark.parametrize("until", ["2026-03-01T15:00:00", "2026-03-01", "tomorrow", "2026-02-30T15:00:00Z"])
def test_a_drill_until_must_be_rfc3339_with_an_offset(route_doc: dict[str, Any], until: str) -> None:
    route_doc["spec"]["drills"] = [{**DRILLS[0], "until": until}]
    with pytest.raises(ValidationError, match="is not an RFC 3339 time with an offset"):
        LLMRoute.model_validate(route_doc)
