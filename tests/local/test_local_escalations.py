"""Local mode's escalations, pure: the generated personal data (the router's own detector finds it, as its type), the
providers' ``user`` tags holding a request's true classes, the summary's counts and residency proof over them, and
the live view's and the summary's escalation lines. The drill itself (escalations > 0, none in CN) is in
test_local.py."""

from __future__ import annotations

import random

import pytest
from rich.console import Console

from llmroute.core import pii
from llmroute.core.compile import compile_route
from llmroute.documents import load
from llmroute.local.drill import NO_DRILL, schedule
from llmroute.local.report import UNPLANTED, Summary, classes_of, escalation_counts, summarise
from llmroute.local.stack import pick_route
from llmroute.local.traffic import (
    PII_TYPES,
    USER_TAG,
    Result,
    fake_personal_data,
    parse_classes,
    true_classes,
    user_tag,
)
from llmroute.local.view import Snapshot, arrow, render, render_summary
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.unit


def result(cls: str = "public", carries: str | None = None, classes: tuple[str, ...] = ("public",),
           ok: bool = True) -> Result:
    return Result("steady", cls, "deepseek-chat", False, 1.0, ok, None if ok else "APIError", 200 if ok else 503,
                  "together" if ok else None, 1, 0.01, 0.01, carries, classes)


def test_generated_personal_data_is_found_by_the_router_detector_as_its_type() -> None:
    rng = random.Random(7)
    seen = set()
    for _ in range(300):
        kind, prompt = fake_personal_data(rng)
        assert [f.type for f in pii.detect(prompt)] == [kind], prompt
        seen.add(kind)
    assert seen == set(PII_TYPES)


def test_generated_values_stay_in_reserved_or_issued_ranges() -> None:
    rng = random.Random(3)
    for _ in range(300):
        kind, prompt = fake_personal_data(rng)
        (found,) = pii.detect(prompt)
        value = prompt[found.start:found.end]
        if kind == "email":
            assert value.endswith("@example.com")
        elif kind == "phone":
            assert "555-01" in value
        else:
            area, group, serial = value.split("-")
            assert area not in ("000", "666") and int(area) < 900 and group != "00" and serial != "0000"


def test_the_user_tag_holds_the_true_classes() -> None:
    assert true_classes("public", None) == ("public",)
    assert true_classes("public", "us_ssn") == ("public", "pii")
    assert true_classes("pii", "email") == ("pii",)
    assert user_tag("internal", "phone") == USER_TAG + "internal,pii"
    assert user_tag("phi", None) == USER_TAG + "phi"
    assert classes_of("public,pii") == ("public", "pii") and classes_of("phi") == ("phi",)


def test_parse_classes_and_escalated() -> None:
    assert parse_classes("public,pii") == ("public", "pii")
    assert parse_classes(" public , pii ") == ("public", "pii")
    assert parse_classes(None) == parse_classes("") == ()
    assert result(classes=("public", "pii")).escalated
    assert not result(classes=("public",)).escalated and not result(classes=()).escalated


def test_escalation_counts_by_classes_then_planted_type() -> None:
    results = [result(carries="email", classes=("public", "pii")), result(carries="email", classes=("public", "pii")),
               result(carries="us_ssn", classes=("public", "pii")), result(classes=("public", "pii")),
               result("internal", "phone", ("internal", "pii")), result(), result("pii", classes=("pii",))]
    assert escalation_counts(results) == {"internal,pii": {"phone": 1},
                                          "public,pii": {"email": 2, "us_ssn": 1, UNPLANTED: 1}}
    assert escalation_counts([result()]) == {}


def summary_of(results: list[Result], received: dict[str, dict[str, int]]) -> Summary:
    route, policy = pick_route(load([EXAMPLE]))
    return summarise(target="deepseek", slots=schedule(NO_DRILL, 10), results=results, received=received,
                     config=compile_route(route, policy), circuit_timeline=[], residency_denials=0,
                     router_escalations={("public", "pii", "email"): 2})


def test_summary_counts_escalations_and_the_proof_counts_true_classes() -> None:
    results = [result(carries="email", classes=("public", "pii")), result(carries="email", classes=("public", "pii")),
               result(), result(classes=("public", "pii"), carries="us_ssn", ok=False)]
    summary = summary_of(results, {"deepseek": {"public": 5}, "together": {"public,pii": 2, "public": 1}})
    d = summary.to_dict()
    (phase,) = d["phases"]
    assert phase["escalations"] == 3 and phase["escalations_by_class"] == {"public,pii": 3}
    assert {"pool_replicas", "share", "requests", "failed_over"} <= set(phase)  # the contract keys stay
    e = d["escalations"]
    assert e["requests"] == 3 and e["byClass"] == {"public,pii": {"email": 2, "us_ssn": 1}}
    assert e["carryingPersonalData"] == {"public": 3} and e["escalated"] == {"public": 3}
    assert e["missed"] == 0 and e["toCN"] == {"public": 0}
    assert e["router"] == [{"from": "public", "to": "pii", "type": "email", "count": 2}]
    assert d["sensitiveToCN"] == 0 and set(d["violations"].values()) == {0}


def test_personal_data_reaching_cn_fails_the_proof_whatever_the_declared_class() -> None:
    """What the drill would show with escalation off: the tag says public,pii, so DeepSeek's count convicts it."""
    results = [result(carries="us_ssn", classes=("public",))]
    summary = summary_of(results, {"deepseek": {"public,pii": 1, "public": 4}})
    d = summary.to_dict()
    assert d["sensitiveToCN"] == 1
    assert d["violations"]["pii"] == 1 and d["violations"]["public"] == 0
    assert d["escalations"]["missed"] == 1 and d["escalations"]["toCN"] == {"public": 1}
    assert d["escalations"]["escalated"] == {}
    console = Console(record=True, width=160)
    console.print(render_summary(summary))
    text = console.export_text()
    assert "public requests escalated for personal data: 0 (1 sent to CN)" in text
    assert "answered without escalation: 1" in text


def test_views_show_escalations() -> None:
    assert arrow("public,pii") == "public→pii" and arrow("phi,pii,secret") == "phi→pii+secret"
    assert arrow("public") == "public"
    snap = Snapshot(phase="steady", incident="no faults injected", elapsed_s=3.0, total_s=30.0, providers=(),
                    class_jurisdictions={"public,pii": {"US": 12}}, failovers=0, residency_denials=0,
                    client_errors=0, requests=40,
                    escalations={"public,pii": {"email": 7, "us_ssn": 5}, "internal,pii": {"phone": 1}})
    console = Console(record=True, width=160)
    console.print(render(snap))
    text = console.export_text()
    assert "escalated on content: public→pii: 12 (email 7, us_ssn 5)   internal→pii: 1 (phone 1)" in text
    assert "public,pii" in text and "US: 12" in text
    console = Console(record=True, width=160)
    console.print(render(Snapshot("steady", "", 0.0, 30.0, (), {}, 0, 0, 0, 0)))
    assert "escalated on content: none yet" in console.export_text()
    summary = summary_of([result(carries="email", classes=("public", "pii"))], {"together": {"public,pii": 1}})
    console = Console(record=True, width=160)
    console.print(render_summary(summary))
    text = console.export_text()
    assert "public requests escalated for personal data: 1 (0 sent to CN)" in text
    assert "escalated on content: public→pii: 1 (email 1)" in text and "escalated" in text
