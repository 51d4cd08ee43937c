"""Escalation through the real router: what a request contains can only add classes, and every attempt obeys them all.

Aspects: a ``public`` request carrying a US SSN (in a message, or in a tool call's arguments in the history) never
reaches the CN provider and is answered with ``x-llmroute-data-class: public,pii``, streaming or not; the combined
rule holds on failover; a combination that allows nothing is a 403 naming the classes and why; escalations,
findings and detection time are counted, with no value in metrics or logs; a config without ``detect`` scans nothing
and answers as before.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from .conftest import MESSAGES, Hub, RouterProcess, config_docs, make_client, router_on
from .test_streaming import counter

pytestmark = pytest.mark.router
SSN = "536-22-8726"
EMAIL = "jane.roe@example.org"
DETECTION_COUNT = "llmroute_detection_seconds_count"


def escalation_docs(hub: Hub) -> dict[str, dict[str, Any]]:
    docs = copy.deepcopy(config_docs(hub))
    classes = docs["policy"]["spec"]["dataClasses"]
    next(c for c in classes if c["name"] == "pii")["detect"] = ["us_ssn", "email"]
    classes.append({"name": "cn-only", "allow": {"jurisdictions": ["CN"]}})
    return docs


@pytest.fixture(scope="module")
def esc_router(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with router_on(tmp_path_factory, "escalation", escalation_docs(hub)) as proc:
        yield proc


@pytest.fixture()
def esc_client(esc_router: RouterProcess) -> Iterator[openai.OpenAI]:
    with make_client(esc_router) as c:
        yield c


def ask(client: openai.OpenAI, messages: list[dict[str, Any]], data_class: str = "public",
        stream: bool = False) -> tuple[str, str]:
    """(x-llmroute-data-class, x-llmroute-provider) of a successful chat request."""
    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=messages, stream=stream,  # type: ignore[arg-type]
        extra_headers={"x-llmroute-data-class": data_class})
    parsed = raw.parse()
    if stream:
        list(parsed)  # type: ignore[arg-type]
    return raw.headers["x-llmroute-data-class"], raw.headers["x-llmroute-provider"]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("stream", [False, True], ids=["assembled", "stream"])
def test_public_request_with_an_ssn_never_reaches_cn(esc_client: openai.OpenAI, hub: Hub, stream: bool) -> None:
    assert ask(esc_client, MESSAGES, stream=stream) == ("public", "deepseek")  # nothing found: public goes to CN
    assert ask(esc_client, user(f"My SSN is {SSN}, file my taxes"), stream=stream) == ("public,pii", "together")
    assert ask(esc_client, [{"role": "user", "content": [{"type": "text", "text": f"mail {EMAIL}"}]}],
               stream=stream) == ("public,pii", "together")
    assert hub.requests("deepseek") == 1
    assert [r.model for r in hub["deepseek"].stats.records] == ["deepseek-chat"]


def tool_history(arguments: dict[str, Any], result: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Look up the customer"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": json.dumps(arguments)}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]


def test_an_ssn_in_tool_calls_of_the_history_escalates(esc_client: openai.OpenAI, hub: Hub) -> None:
    assert ask(esc_client, tool_history({"customer": {"ssn": SSN}}, "found")) == ("public,pii", "together")
    assert ask(esc_client, tool_history({"customer": 42}, f"ssn on file: {SSN}")) == ("public,pii", "together")
    assert ask(esc_client, tool_history({"customer": 42}, "found")) == ("public", "deepseek")
    assert hub.requests("deepseek") == 1


def test_escalation_holds_across_failover(esc_client: openai.OpenAI, hub: Hub) -> None:
    hub["together"].set_faults(status=503)
    assert ask(esc_client, user(f"SSN {SSN}")) == ("public,pii", "fireworks")
    assert ask(esc_client, user(f"SSN {SSN}"), stream=True) == ("public,pii", "fireworks")
    hub["fireworks"].set_faults(refuse=True)
    assert ask(esc_client, user(f"SSN {SSN}")) == ("public,pii", "bedrock")
    hub["bedrock"].set_faults(status=500)
    with pytest.raises(openai.InternalServerError) as info:
        ask(esc_client, user(f"SSN {SSN}"))
    error = info.value.response.json()["error"]
    assert error["code"] == "no_healthy_backend" and "public,pii" in error["message"]
    assert info.value.response.headers["x-llmroute-data-class"] == "public,pii"
    assert hub.requests("deepseek") == 0  # healthy, allowed for public, but never for this request


def test_a_combination_that_allows_nothing_is_a_403_naming_classes(esc_client: openai.OpenAI, hub: Hub) -> None:
    assert ask(esc_client, MESSAGES, data_class="cn-only") == ("cn-only", "deepseek")
    with pytest.raises(openai.PermissionDeniedError) as info:
        ask(esc_client, user(f"reach me at {EMAIL}"), data_class="cn-only")
    error = info.value.response.json()["error"]
    assert error["code"] == "no_compliant_backend"
    message = error["message"]
    assert 'data class "cn-only,pii"' in message and "escalated from cn-only: pii for email" in message
    assert "deepseek/deepseek-chat: pii: jurisdiction CN not in [US, EU]" in message
    assert "together/deepseek-ai/DeepSeek-V3: cn-only: jurisdiction US not in [CN]" in message
    assert EMAIL not in message
    assert info.value.response.headers["x-llmroute-data-class"] == "cn-only,pii"
    assert hub.requests("deepseek") == 1


def test_declared_class_is_kept_and_never_downgraded(esc_client: openai.OpenAI) -> None:
    assert ask(esc_client, user(f"SSN {SSN}"), data_class="pii") == ("pii", "together")
    assert ask(esc_client, user(f"SSN {SSN}"), data_class="phi") == ("phi,pii", "bedrock")
    raw = esc_client.chat.completions.with_raw_response.create(model="deepseek-chat", messages=user(f"SSN {SSN}"))
    assert raw.headers["x-llmroute-data-class"] == "internal,pii"  # the default class, then the escalation


def test_completions_and_embeddings_input_escalate(esc_client: openai.OpenAI, hub: Hub) -> None:
    raw = esc_client.embeddings.with_raw_response.create(model="embedder", input=[f"customer {EMAIL}"],
                                                         extra_headers={"x-llmroute-data-class": "public"})
    assert raw.headers["x-llmroute-data-class"] == "public,pii"
    raw_c = esc_client.completions.with_raw_response.create(model="deepseek-chat", prompt=f"SSN {SSN}",
                                                            extra_headers={"x-llmroute-data-class": "public"})
    assert (raw_c.headers["x-llmroute-data-class"], raw_c.headers["x-llmroute-provider"]) == ("public,pii",
                                                                                               "together")
    assert hub.requests("deepseek") == 0


def test_escalations_findings_and_detection_time_are_counted(esc_client: openai.OpenAI,
                                                             esc_router: RouterProcess) -> None:
    ssn_series = 'llmroute_escalations_total{from_class="public",to_class="pii",type="us_ssn"}'
    email_series = 'llmroute_escalations_total{from_class="public",to_class="pii",type="email"}'
    escalated = 'llmroute_pii_findings_total{action="escalated",type="us_ssn"}'
    detected = 'llmroute_pii_findings_total{action="detected",type="us_ssn"}'
    text = esc_router.metrics()
    for series in (ssn_series, email_series, escalated, detected,
                   'llmroute_escalations_total{from_class="cn-only",to_class="pii",type="email"}',
                   'llmroute_pii_findings_total{action="detected",type="api_key"}'):
        assert series in text, series  # pre-created from the config
    before = {s: counter(esc_router, s) for s in (ssn_series, email_series, escalated, detected, DETECTION_COUNT)}
    ask(esc_client, user(f"SSN {SSN} and again {SSN}"))
    ask(esc_client, user(f"SSN {SSN}"), data_class="pii")
    ask(esc_client, MESSAGES)
    after = {s: counter(esc_router, s) - before[s] for s in before}
    assert after == {ssn_series: 1, email_series: 0, escalated: 2, detected: 1, DETECTION_COUNT: 3}
    text = esc_router.metrics() + esc_router.log()
    assert SSN not in text and EMAIL not in text


def test_without_detect_nothing_is_scanned_and_nothing_changes(client: openai.OpenAI, router: RouterProcess,
                                                              hub: Hub) -> None:
    assert ask(client, user(f"My SSN is {SSN}")) == ("public", "deepseek")
    assert counter(router, DETECTION_COUNT) == 0
    text = router.metrics()
    assert "llmroute_escalations_total{" not in text and "llmroute_pii_findings_total{" not in text
    assert hub.requests("deepseek") == 1
