"""Escalation: classes applied from what a request contains (never fewer than declared), the combined route (never
wider than the declared class's), and what compile passes to the router (nothing when no class detects).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import BUILTIN_PII_TYPES, ProviderPolicy
from llmroute.cli import render_explanation
from llmroute.core import escalation, pii
from llmroute.core.compile import compile_route
from llmroute.core.escalation import Escalation, combine, detecting, escalate
from llmroute.core.explain import explain_route
from llmroute.core.router_config import BackendTarget, ClassRoute, Denial, ModelRoute

pytestmark = pytest.mark.unit

RULES = (("pii", ("us_ssn", "email")), ("phi", ("mrn",)), ("secret", ("api_key", "email")))


def test_every_builtin_type_is_detected() -> None:
    samples = {"email": "jane.roe@example.com", "phone": "call me at +1 415 555 0134", "credit_card":
               "card 4111 1111 1111 1111", "us_ssn": "SSN 536-22-8726", "iban": "IBAN DE89 3704 0044 0532 0130 00",
               "ip_address": "login from IP 81.2.69.160", "api_key": "key sk-proj-7hG3kLm9Qx2Vb8Nw4Rt6Yz1Pc5Df0Aj"}
    assert set(samples) == set(BUILTIN_PII_TYPES)
    for kind, text in samples.items():
        assert kind in {f.type for f in pii.detect(text)}, kind


@pytest.mark.parametrize(("declared", "found", "classes", "pairs"), [
    ("public", set(), ("public",), ()),
    ("public", {"phone"}, ("public",), ()),  # found, but no class detects it
    ("public", {"us_ssn"}, ("public", "pii"), (("public", "pii", "us_ssn"),)),
    ("public", {"email", "us_ssn"}, ("public", "pii", "secret"),
     (("public", "pii", "us_ssn"), ("public", "pii", "email"), ("public", "secret", "email"))),
    ("public", {"mrn", "api_key"}, ("public", "phi", "secret"),
     (("public", "phi", "mrn"), ("public", "secret", "api_key"))),
    ("pii", {"us_ssn"}, ("pii",), ()),  # the declared class's own types add nothing
    ("pii", {"us_ssn", "mrn"}, ("pii", "phi"), (("pii", "phi", "mrn"),)),
    ("phi", {"email"}, ("phi", "pii", "secret"), (("phi", "pii", "email"), ("phi", "secret", "email"))),
    ("internal", {"api_key"}, ("internal", "secret"), (("internal", "secret", "api_key"),)),
], ids=["nothing", "undetected-type", "ssn", "two-classes", "policy-order", "own-type", "own-and-other",
        "stricter-declared-keeps-first", "no-detect-on-declared"])
def test_escalate(declared: str, found: set[str], classes: tuple[str, ...],
                  pairs: tuple[tuple[str, str, str], ...]) -> None:
    esc = escalate(declared, RULES, found)
    assert esc == Escalation(classes, pairs)
    assert esc.escalated == (len(classes) > 1)


def test_detecting_and_explain() -> None:
    assert detecting(RULES, {"email"}) == ("pii", "secret")
    assert detecting(RULES, set()) == ()
    assert escalation.explain(escalate("public", RULES, {"us_ssn", "email"})) == (
        "escalated from public: pii for us_ssn, email; secret for email")
    assert escalation.explain(escalate("public", RULES, set())) == ""
    assert escalation.header_value(("public", "pii")) == "public,pii"


def _b(provider: str, priority: int) -> BackendTarget:
    return BackendTarget(provider=provider, model=f"{provider}-m", priority=priority, weight=1)


BACKENDS = [_b("cn", 0), _b("us1", 1), _b("us2", 2), _b("eu", 3)]


def _route(name: str, allowed: set[str]) -> ClassRoute:
    return ClassRoute(data_class=name,
                      allowed=tuple(b for b in BACKENDS if b.provider in allowed),
                      denied=tuple(Denial(provider=b.provider, model=b.model, reasons=(f"{name} denies {b.provider}",))
                                   for b in BACKENDS if b.provider not in allowed))


MODEL = ModelRoute(name="chat", classes=(
    _route("public", {"cn", "us1", "us2", "eu"}),
    _route("pii", {"us1", "us2", "eu"}),
    _route("us", {"cn", "us1", "us2"}),
    _route("phi", {"us2"}),
    _route("nowhere", set()),
))


@pytest.mark.parametrize(("classes", "allowed", "denied"), [
    (("public",), ["cn", "us1", "us2", "eu"], {}),
    (("public", "pii"), ["us1", "us2", "eu"], {"cn": ["pii: pii denies cn"]}),
    (("public", "pii", "us"), ["us1", "us2"], {"cn": ["pii: pii denies cn"], "eu": ["us: us denies eu"]}),
    (("us", "pii"), ["us1", "us2"], {"cn": ["pii: pii denies cn"], "eu": ["us: us denies eu"]}),
    (("pii", "phi"), ["us2"], {"cn": ["pii: pii denies cn", "phi: phi denies cn"], "us1": ["phi: phi denies us1"],
                               "eu": ["phi: phi denies eu"]}),
    (("phi", "nowhere"), [], {"us2": ["nowhere: nowhere denies us2"],
                              "cn": ["phi: phi denies cn", "nowhere: nowhere denies cn"],
                              "us1": ["phi: phi denies us1", "nowhere: nowhere denies us1"],
                              "eu": ["phi: phi denies eu", "nowhere: nowhere denies eu"]}),
], ids=["declared-only", "pii", "three", "declared-order", "every-class-reason", "nothing-left"])
def test_combine(classes: tuple[str, ...], allowed: list[str], denied: dict[str, list[str]]) -> None:
    route = combine(MODEL, classes)
    assert [b.provider for b in route.allowed] == allowed
    assert {d.provider: list(d.reasons) for d in route.denied} == denied
    assert route.data_class == ",".join(classes)


def test_combine_fails_closed() -> None:
    with pytest.raises(KeyError, match="no route for data class"):
        combine(MODEL, ("public", "unknown"))
    # a class route that neither allows nor denies a backend (a malformed config) does not let it through
    partial = ModelRoute(name="chat", classes=(_route("public", {"cn", "us1"}),
                                               ClassRoute(data_class="odd", allowed=(BACKENDS[1],), denied=())))
    route = combine(partial, ("public", "odd"))
    assert [b.provider for b in route.allowed] == ["us1"]
    assert route.denied[0] == Denial(provider="cn", model="cn-m", reasons=("odd: not an allowed backend of the class",))


CLASS_NAMES = ["c0", "c1", "c2", "c3", "c4"]
TYPES = ["email", "us_ssn", "phone", "iban", "custom_id"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ModelRoute, tuple[tuple[str, tuple[str, ...]], ...], str, set[str]]:
    routes = tuple(_route(c, set(draw(st.lists(st.sampled_from([b.provider for b in BACKENDS]), unique=True))))
                   for c in CLASS_NAMES)
    detect = draw(st.lists(st.tuples(st.sampled_from(CLASS_NAMES), st.lists(st.sampled_from(TYPES), unique=True)),
                           unique_by=lambda r: r[0]))
    rules = tuple((c, tuple(types)) for c, types in detect if types)
    return (ModelRoute(name="chat", classes=routes), rules, draw(st.sampled_from(CLASS_NAMES)),
            set(draw(st.lists(st.sampled_from(TYPES)))))


@given(scenarios())
def test_the_class_never_goes_down(scenario: tuple[ModelRoute, Any, str, set[str]]) -> None:
    model, rules, declared, found = scenario
    esc = escalate(declared, rules, found)
    assert esc.classes[0] == declared and len(set(esc.classes)) == len(esc.classes)
    assert set(esc.classes) >= {declared}
    route = combine(model, esc.classes)
    declared_route = model.for_class(declared)
    assert declared_route is not None
    allowed = [(b.provider, b.model) for b in route.allowed]
    assert set(allowed) <= {(b.provider, b.model) for b in declared_route.allowed}
    assert allowed == [(b.provider, b.model) for b in declared_route.allowed if (b.provider, b.model) in allowed]
    for name in esc.classes:
        applied = model.for_class(name)
        assert applied is not None
        assert set(allowed) <= {(b.provider, b.model) for b in applied.allowed}
    every = {(b.provider, b.model) for b in BACKENDS}
    assert set(allowed) | {(d.provider, d.model) for d in route.denied} == every
    more = escalate(declared, rules, found | {"email"})
    assert set(more.classes) >= set(esc.classes)  # finding more never applies fewer classes


# --- compile ----------------------------------------------------------------------------------------------------


def _without_detect(policy_doc: dict[str, Any]) -> dict[str, Any]:
    for c in policy_doc["spec"]["dataClasses"]:
        c.pop("detect", None)
    return policy_doc


def test_no_detect_compiles_no_detection(route: LLMRoute, policy_doc: dict[str, Any]) -> None:
    config = compile_route(route, ProviderPolicy.model_validate(_without_detect(policy_doc)))
    assert config.detection is None
    assert "detection" not in config.wire()


def test_the_example_detects_personal_data_for_pii_only(route: LLMRoute, policy: ProviderPolicy) -> None:
    config = compile_route(route, policy)
    assert config.detection is not None
    assert config.detection.by_class() == (("pii", ("email", "phone", "us_ssn", "credit_card", "iban")),)
    assert config.detection.detectors == ()


def test_detect_compiles_classes_and_detectors(route: LLMRoute, policy_doc: dict[str, Any]) -> None:
    before = compile_route(route, ProviderPolicy.model_validate(_without_detect(policy_doc)))
    spec = policy_doc["spec"]
    spec["detectors"] = [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}]
    pii_class = next(c for c in spec["dataClasses"] if c["name"] == "pii")
    pii_class["detect"] = ["us_ssn", "email", "employee_id", "email"]
    config = compile_route(route, ProviderPolicy.model_validate(policy_doc))
    assert config.detection is not None
    assert config.detection.by_class() == (("pii", ("us_ssn", "email", "employee_id")),)
    assert [(d.name, d.pattern, d.confidence) for d in config.detection.detectors] == [
        ("employee_id", "EMP-[0-9]{6}", 0.9)]
    wire = config.wire()["detection"]
    assert wire["classes"] == [{"dataClass": "pii", "types": ["us_ssn", "email", "employee_id"]}]
    assert config.content_hash() != before.content_hash()  # routers roll: their routing changed
    assert config.models == before.models  # per-class routes are the same; combining happens per request


# --- explain --text ---------------------------------------------------------------------------------------------


def test_explain_text_applies_the_escalated_classes(route: LLMRoute, policy_doc: dict[str, Any]) -> None:
    spec = policy_doc["spec"]
    spec["detectors"] = [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}]
    next(c for c in spec["dataClasses"] if c["name"] == "pii")["detect"] = ["us_ssn", "employee_id"]
    policy = ProviderPolicy.model_validate(policy_doc)
    plain = explain_route(route, policy, "public", model="deepseek-chat", text="hello there")
    assert (plain.classes, plain.escalation) == ((), "")
    assert "classes" not in plain.to_dict()
    escalated = explain_route(route, policy, "public", model="deepseek-chat", text="badge EMP-123456")
    assert escalated.classes == ("public", "pii")
    assert escalated.escalation == "escalated from public: pii for employee_id"
    assert escalated.to_dict()["classes"] == ["public", "pii"]
    (chat,) = escalated.models
    deepseek = next(b for b in chat.backends if b.provider == "deepseek")
    assert not deepseek.allowed and deepseek.order is None
    assert deepseek.reasons == ("pii: jurisdiction CN not in [US, EU]",
                                "pii: training terms unknown: treated as training")
    assert escalated.reachable_jurisdictions == ("US",)
    assert "escalated from public: pii for employee_id, so as public,pii it may go to: US" in render_explanation(
        escalated)
    assert "EMP-123456" not in render_explanation(escalated) + json.dumps(escalated.to_dict())
