"""The audit trail's pure part (:mod:`llmroute.core.audit`) and its compilation from ``spec.audit``.

Aspects: a record holds exactly the documented fields (validated against ``docs/audit.schema.json``, the schema the
docs publish) and each attempt says why the request moved on; sampling always keeps residency denials, fail-closed
and blocked requests and samples the rest at the configured rate (seeded rng); time is RFC 3339 UTC with
milliseconds; a line is one line of ASCII; ``spec.audit`` compiles to ``audit`` only when enabled, and a config
without it keeps its wire form.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import jsonschema
import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core import audit, retry
from llmroute.core.compile import compile_route
from llmroute.core.retry import FailureKind
from llmroute.core.router_config import HealthProbe, ProviderTarget
from tests.conftest import ROOT

pytestmark = pytest.mark.unit
SCHEMA = json.loads((ROOT / "docs" / "audit.schema.json").read_text())
HEALTH = HealthProbe(path="/models", interval_s=10, timeout_s=2, failure_threshold=3, success_threshold=1)
CN = ProviderTarget(
    name="deepseek", endpoint="https://api.deepseek.com/v1", api="openai", jurisdiction="CN", health=HEALTH
)
US = ProviderTarget(
    name="bedrock",
    endpoint="https://bedrock.example/v1",
    api="openai",
    jurisdiction="US",
    region="us-east-1",
    health=HEALTH,
)


def validate(rec: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(rec)


def failover_trace() -> audit.Trace:
    trace = audit.Trace(
        "0" * 32,
        1_764_878_400.5,
        100.0,
        "chat/completions",
        stream=True,
        model="deepseek-chat",
        data_class="public",
        classes=("public", "pii"),
        detected=("email", "us_ssn"),
    )
    trace.failed(CN, 503, retry.classify_status(503))
    trace.failed(CN, None, retry.classify_failure(FailureKind.TTFT), sent=False)
    trace.failed(US, 402, retry.classify_status(402))
    trace.failed(US, 401, retry.classify_status(401))
    trace.served(US, 200, "ok")
    trace.first_byte = 100.25
    return trace


def test_a_record_has_the_documented_fields_and_why_each_attempt_moved_on() -> None:
    end = audit.End(200, "ok", None, "bedrock", 101.5)
    rec = audit.record(
        failover_trace(), end, route="llm/chat", config_hash="0123456789abcdef", identity="apps/web", sample_rate=0.5
    )
    validate(rec)
    assert list(rec) == SCHEMA["required"]
    assert rec["time"] == "2025-12-04T20:00:00.500Z"
    assert (rec["latencyMs"], rec["ttfbMs"]) == (1500.0, 250.0)
    assert rec["classes"] == ["public", "pii"] and rec["detected"] == ["email", "us_ssn"]
    assert [
        (a["provider"], a["jurisdiction"], a["region"], a["status"], a["outcome"], a["next"], a["sent"])
        for a in rec["attempts"]
    ] == [
        ("deepseek", "CN", None, 503, "unavailable", "failover", True),
        ("deepseek", "CN", None, None, "ttft_timeout", "failover", False),
        ("bedrock", "US", "us-east-1", 402, "balance_exhausted", "taken_out", True),
        ("bedrock", "US", "us-east-1", 401, "unauthorized", "circuit_opened", True),
        ("bedrock", "US", "us-east-1", 200, "ok", "answered", True),
    ]


@pytest.mark.parametrize(
    ("outcome", "nxt"),
    [
        ("ok", "answered"),
        ("upstream_client_error", "returned"),
        ("stream_error", "stream_broken"),
        ("client_closed", "client_closed"),
    ],
)
def test_the_attempt_that_ended_a_request_says_how(outcome: str, nxt: str) -> None:
    trace = audit.Trace("f" * 32, 0.0, 0.0, "completions")
    trace.served(US, 200, outcome)
    assert trace.attempts[0].next == nxt


def test_a_refused_request_validates_with_unknown_names_as_null() -> None:
    trace = audit.Trace("a" * 32, 0.0, 5.0, "embeddings")
    end = audit.End(404, "invalid_request", "model_not_found", None, 5.001)
    rec = audit.record(trace, end, route="llm/chat", config_hash="0123456789abcdef", identity=None, sample_rate=1.0)
    validate(rec)
    assert (rec["model"], rec["dataClass"], rec["attempts"], rec["ttfbMs"]) == (None, None, [], None)


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        ("no_compliant_backend", "no_compliant_backend"),
        ("no_healthy_backend", "no_healthy_backend"),
        ("no_healthy_backend", None),
        ("invalid_request", "pii_blocked"),
    ],
)
def test_denied_and_fail_closed_requests_are_always_kept(outcome: str, error: str | None) -> None:
    rng = random.Random(1)
    assert all(audit.keep(outcome, error, 0.0, rng) for _ in range(100))


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_other_requests_are_sampled_at_the_rate(rate: float) -> None:
    rng = random.Random(42)
    kept = sum(audit.keep("ok", None, rate, rng) for _ in range(20_000)) / 20_000
    assert abs(kept - rate) < 0.015


def test_sampling_is_a_function_of_the_rng() -> None:
    a = [audit.keep("ok", None, 0.3, random.Random(7)) for _ in range(50)]
    b = [audit.keep("ok", None, 0.3, random.Random(7)) for _ in range(50)]
    assert a == b


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_764_878_400.9999, "2025-12-04T20:00:00.999Z"),
        (1_764_878_401.007, "2025-12-04T20:00:01.007Z"),
    ],
)
def test_time_is_rfc3339_utc_with_milliseconds(epoch: float, text: str) -> None:
    assert audit.rfc3339_ms(epoch) == text


def test_a_line_is_one_line_of_ascii_json() -> None:
    rec = {"identity": "ns/s\u00e9rvice\n\u2028", "kind": audit.KIND}
    data = audit.line(rec)
    assert data.endswith(b"\n") and data.count(b"\n") == 1 and data.isascii()
    assert json.loads(data) == rec


def route_with(route_doc: dict[str, Any], block: dict[str, Any] | None) -> LLMRoute:
    if block is not None:
        route_doc["spec"]["audit"] = block
    return LLMRoute.model_validate(route_doc)


@pytest.mark.parametrize(
    ("block", "rate"),
    [(None, None), ({}, 1.0), ({"sampleRate": 0.25}, 0.25), ({"enabled": False, "sampleRate": 0.25}, None)],
)
def test_spec_audit_compiles_only_when_enabled(
    route_doc: dict[str, Any], policy: ProviderPolicy, block: dict[str, Any] | None, rate: float | None
) -> None:
    config = compile_route(route_with(route_doc, block), policy)
    assert (config.audit.sample_rate if config.audit else None) == rate
    assert ("audit" in json.loads(config.to_json())) is (rate is not None)


def test_audit_settings_never_roll_the_router(route_doc: dict[str, Any], policy: ProviderPolicy) -> None:
    plain = compile_route(route_with(copy.deepcopy(route_doc), None), policy)
    audited = compile_route(route_with(copy.deepcopy(route_doc), {"sampleRate": 0.25}), policy)
    everything = compile_route(route_with(copy.deepcopy(route_doc), {}), policy)
    assert plain.content_hash() == audited.content_hash() == everything.content_hash()  # no rollout: a live reload
    assert len({plain.to_json(), audited.to_json(), everything.to_json()}) == 3  # but it reaches the ConfigMap


@pytest.mark.parametrize("rate", [-0.1, 1.5, "all"])
def test_sample_rate_is_a_fraction(route_doc: dict[str, Any], rate: Any) -> None:
    with pytest.raises(ValueError, match=r"sampleRate|sample_rate"):
        route_with(route_doc, {"sampleRate": rate})


DOC = (ROOT / "docs" / "audit.md").read_text()


def fenced_after(marker: str) -> str:
    """The fenced block that follows ``<!-- marker -->`` in docs/audit.md."""
    after = DOC.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_the_documented_example_is_a_valid_record_in_key_order() -> None:
    example = json.loads(fenced_after("audit-example"))
    validate(example)
    assert list(example) == SCHEMA["required"]


def test_the_documented_table_names_every_field_in_order() -> None:
    table = DOC.split("## Schema", 1)[1].split("Each attempt:", 1)[0]
    names = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    assert names == SCHEMA["required"]
    attempt = DOC.split("Each attempt:", 1)[1].split("## Example", 1)[0]
    named = {
        n.strip()
        for line in attempt.splitlines()
        if line.startswith("| `")
        for n in line.split("|")[1].replace("`", "").split(",")
    }
    assert named == set(SCHEMA["$defs"]["attempt"]["required"])


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/v1/chat/completions", "chat/completions"),
        ("/completions", "completions"),
        ("/v1/embeddings", "embeddings"),
        ("/v1/models", "models"),
        ("/v1/chat/completions/../../canary", "other"),
        ("/admin", "other"),
    ],
)
def test_a_path_is_recorded_only_as_a_known_endpoint(path: str, endpoint: str) -> None:
    assert audit.endpoint(path) == endpoint


@pytest.mark.parametrize(("outcome", "status"), [(audit.UNAUTHENTICATED, 401), (audit.FORBIDDEN, 403)])
def test_refused_callers_are_always_kept_and_valid(outcome: str, status: int) -> None:
    assert audit.keep(outcome, "invalid_api_key", 0.0, random.Random(3))
    trace = audit.Trace("b" * 32, 0.0, 0.0, "other")
    end = audit.End(status, outcome, "invalid_api_key", None, 0.0)
    validate(audit.record(trace, end, route="llm/chat", config_hash="0123456789abcdef", identity=None, sample_rate=0))
