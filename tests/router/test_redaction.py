"""Redaction through the real router, with the official SDK: what upstreams receive, and what clients get back.

Two emulators beside the hub's, both recording the raw request bodies they receive and answering in echo mode (the
last user message itself, three characters per chunk, so every placeholder is split across chunks; a tool call
carrying it when the request has tools; reasoning too for the reasoner): ``cn`` (CN, which the policy requires to
get placeholders for email, us_ssn and the policy's ``employee_id`` detector, restored) and ``us`` (US, no
requirement). Route rules: ``public`` restores email and employee ids and Blocks SSNs; ``internal`` redacts emails;
``secret`` has no rule of its own; ``banking`` (US only) is what a request holding an IBAN escalates to, so every
request is scanned once, for escalation, and redaction reuses that scan. Aspects: Restore round trips streaming and
non-streaming, tool calls (answers and history) and reasoning included, over several choices; Redact keeps
placeholders; Block's error shape, before any upstream sees the request; the provider requirement applies to
attempts to that provider only (a failover to ``us`` sends the text as it came); an escalated request keeps its
declared class's redaction; a route with nothing to redact relays bytes as they came; no recorded body ever holds a
value that was to be redacted; the findings metrics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from llmroute.emulator import Emulator, FaultPlan

from .conftest import Hub, RouterProcess, router_on, serving

pytestmark = pytest.mark.router
KEYS = {"cn": "sk-cn-test-key-0123456789", "us": "sk-us-test-key-0123456789"}
EMAIL, OTHER, SSN, EMPLOYEE = "alice.smith@example.com", "bob@example.org", "536-22-8147", "EMP-004211"
IBAN = "GB82WEST12345698765432"
SAID = f"Please write to {EMAIL} (cc {OTHER}) about badge {EMPLOYEE}; again: {EMAIL}."
TOOLS = [{"type": "function", "function": {"name": "send_mail", "parameters": {"type": "object", "properties": {
    "text": {"type": "string"}}}}}]


def headers(data_class: str) -> dict[str, str]:
    return {"x-llmroute-data-class": data_class}


@pytest.fixture(scope="module")
def emulators(hub: Hub) -> Iterator[dict[str, Emulator]]:
    with serving(hub, {name: Emulator(name, api_key=key, seed=5, record_bodies=True, echo=True)
                       for name, key in KEYS.items()}) as emus:
        yield emus


@pytest.fixture(autouse=True)
def _fresh(emulators: dict[str, Emulator]) -> Iterator[None]:
    for emu in emulators.values():
        emu.set_faults(FaultPlan())
        emu.reset()
    yield


def config(emulators: dict[str, Emulator]) -> dict[str, dict[str, Any]]:
    health = {"path": "/models", "interval": "100ms", "timeout": "500ms"}

    def provider(name: str, jurisdiction: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "endpoint": emulators[name].url, "jurisdiction": jurisdiction, "healthCheck": health,
                "dataUse": {"training": "NotUsed", "retention": "Zero"},
                "credentials": {"secretRef": {"name": "keys", "namespace": "llm", "key": name}}, **extra}

    policy = {
        "apiVersion": "llmroute.io/v1alpha1", "kind": "ProviderPolicy", "metadata": {"name": "redacting"},
        "spec": {
            "defaultDataClass": "public",
            "detectors": [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}],
            "dataClasses": [{"name": "public"}, {"name": "internal"}, {"name": "secret"},
                            {"name": "banking", "allow": {"jurisdictions": ["US"]}, "detect": ["iban"]}],
            "providers": [provider("cn", "CN", redaction={"mode": "Restore",
                                                          "types": ["email", "us_ssn", "employee_id"]}),
                          provider("us", "US")],
        },
    }

    def model(name: str, upstream: str, *providers: str) -> dict[str, Any]:
        return {"name": name, "backends": [{"provider": p, "model": upstream, "priority": i}
                                           for i, p in enumerate(providers)]}

    route = {
        "apiVersion": "llmroute.io/v1alpha1", "kind": "LLMRoute", "metadata": {"name": "chat", "namespace": "llm"},
        "spec": {
            "policyRef": {"name": "redacting"},
            "models": [model("chat", "deepseek-chat", "cn", "us"), model("reasoner", "deepseek-reasoner", "cn"),
                       model("chat-us", "deepseek-chat", "us")],
            "redaction": [{"dataClass": "public", "mode": "Restore", "types": ["email", "employee_id"]},
                          {"dataClass": "public", "mode": "Block", "types": ["us_ssn"]},
                          {"dataClass": "internal", "mode": "Redact", "types": ["email"]}],
            "failover": {"maxAttempts": 3, "connectTimeout": "1s", "timeToFirstToken": "1s", "idleTimeout": "1s",
                         "totalTimeout": "10s", "backoff": "10ms"},
            "circuitBreaker": {"consecutiveFailures": 1000, "errorRatePercent": 100, "minRequests": 100000,
                               "window": "30s", "openDuration": "200ms", "recoverySteps": [50, 100],
                               "recoveryStepDuration": "200ms"},
        },
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "llm"},
              "stringData": KEYS}
    return {"policy": policy, "route": route, "secrets": secret}


@pytest.fixture(scope="module")
def router(emulators: dict[str, Emulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with router_on(tmp_path_factory, "redaction", config(emulators)) as proc:
        yield proc


def upstream(emulator: Emulator) -> str:
    """Everything the emulator received, as one text."""
    return "\n".join(b.decode() for b in emulator.bodies)


def assert_nothing_leaked(emulator: Emulator, *values: str) -> None:
    received = upstream(emulator)
    assert received, "the emulator received no request"
    for value in values:
        assert value not in received


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def test_restore_round_trips_without_streaming(aclient: openai.AsyncOpenAI,
                                                     emulators: dict[str, Emulator]) -> None:
    raw = await aclient.chat.completions.with_raw_response.create(model="chat", messages=user(SAID),
                                                                  extra_headers=headers("public"))
    answer = raw.parse()
    assert raw.headers["x-llmroute-provider"] == "cn"
    assert answer.choices[0].message.content == SAID
    assert_nothing_leaked(emulators["cn"], EMAIL, OTHER, EMPLOYEE)
    sent = json.loads(emulators["cn"].bodies[0])["messages"][0]["content"]
    assert sent == "Please write to <EMAIL_1> (cc <EMAIL_2>) about badge <EMPLOYEE_ID_1>; again: <EMAIL_1>."


async def test_restore_round_trips_in_a_stream_split_everywhere(aclient: openai.AsyncOpenAI,
                                                                 emulators: dict[str, Emulator]) -> None:
    stream = await aclient.chat.completions.create(model="chat", messages=user(SAID), stream=True, n=2,
                                                   extra_headers=headers("public"))
    texts: dict[int, str] = {}
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: SAID, 1: SAID}
    assert_nothing_leaked(emulators["cn"], EMAIL, OTHER, EMPLOYEE)


async def test_reasoning_is_restored_too(aclient: openai.AsyncOpenAI, emulators: dict[str, Emulator]) -> None:
    message = (await aclient.chat.completions.create(model="reasoner", messages=user(SAID),
                                                     extra_headers=headers("public"))).choices[0].message
    assert message.content == SAID and message.model_dump()["reasoning_content"] == SAID
    stream = await aclient.chat.completions.create(model="reasoner", messages=user(SAID), stream=True,
                                                   extra_headers=headers("public"))
    thought = "".join([c.choices[0].delta.model_dump().get("reasoning_content") or "" async for c in stream
                       if c.choices])
    assert thought == SAID
    assert_nothing_leaked(emulators["cn"], EMAIL, OTHER, EMPLOYEE)


async def test_tool_call_arguments_are_restored_and_still_parse(aclient: openai.AsyncOpenAI,
                                                                 emulators: dict[str, Emulator]) -> None:
    said = f'Mail {EMAIL} a "quoted" line'
    answer = await aclient.chat.completions.create(model="chat", messages=user(said), tools=TOOLS,
                                                   extra_headers=headers("public"))
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"text": said}
    stream = await aclient.chat.completions.create(model="chat", messages=user(said), tools=TOOLS, stream=True,
                                                   extra_headers=headers("public"))
    arguments = ""
    async for chunk in stream:
        for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            arguments += delta_call.function.arguments or ""
    assert json.loads(arguments) == {"text": said}
    assert_nothing_leaked(emulators["cn"], EMAIL)


async def test_tool_call_history_never_goes_upstream_in_clear(aclient: openai.AsyncOpenAI,
                                                              emulators: dict[str, Emulator]) -> None:
    history = [
        {"role": "user", "content": "Who handles my account?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "lookup", "arguments": json.dumps({"owner": EMAIL, "badge": EMPLOYEE})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": f"{EMAIL} is handled by {OTHER}"},
        {"role": "user", "content": [{"type": "text", "text": f"Thanks, write to {OTHER}"}]},
    ]
    answer = await aclient.chat.completions.create(model="chat", messages=history, extra_headers=headers("public"))
    assert answer.choices[0].message.content == f"Thanks, write to {OTHER}"
    assert_nothing_leaked(emulators["cn"], EMAIL, OTHER, EMPLOYEE)
    sent = json.loads(emulators["cn"].bodies[0])["messages"]
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"owner": "<EMAIL_1>",
                                                                            "badge": "<EMPLOYEE_ID_1>"}
    assert sent[2]["content"] == "<EMAIL_1> is handled by <EMAIL_2>"


async def test_redact_keeps_placeholders_in_the_answer(aclient: openai.AsyncOpenAI,
                                                       emulators: dict[str, Emulator]) -> None:
    said = f"Forward to {EMAIL}"
    answer = await aclient.chat.completions.create(model="chat-us", messages=user(said),
                                                   extra_headers=headers("internal"))
    assert answer.choices[0].message.content == "Forward to <EMAIL_1>"
    stream = await aclient.chat.completions.create(model="chat-us", messages=user(said), stream=True,
                                                   extra_headers=headers("internal"))
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "Forward to <EMAIL_1>"
    assert_nothing_leaked(emulators["us"], EMAIL)


async def test_block_refuses_before_any_upstream_and_names_only_the_type(
        aclient: openai.AsyncOpenAI, router: RouterProcess, emulators: dict[str, Emulator]) -> None:
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            await aclient.chat.completions.create(model="chat", messages=user(f"My SSN is {SSN}, mail {EMAIL}"),
                                                  stream=stream, extra_headers=headers("public"))
        error = caught.value
        assert error.status_code == 400 and error.code == "pii_blocked" and error.type == "invalid_request_error"
        assert "us_ssn" in error.message and SSN not in error.message and EMAIL not in error.message
        assert error.response.headers["x-llmroute-data-class"] == "public"
    assert emulators["cn"].stats.total == 0 and emulators["us"].stats.total == 0
    assert SSN not in router.log() and EMAIL not in router.log()
    async with aiohttp.ClientSession() as session, session.post(
            router.url + "/v1/chat/completions", json={"model": "chat", "messages": user(SSN)},
            headers=headers("public")) as resp:
        body = await resp.json()
    assert resp.status == 400 and set(body) == {"error"}
    assert body["error"]["code"] == "pii_blocked" and body["error"]["param"] is None


async def test_a_providers_requirement_applies_to_attempts_to_it_only(
        aclient: openai.AsyncOpenAI, emulators: dict[str, Emulator]) -> None:
    said = f"SSN {SSN} and mail {EMAIL}"  # "secret" has no rule: only cn's own requirement redacts
    answer = await aclient.chat.completions.with_raw_response.create(model="chat", messages=user(said),
                                                                     extra_headers=headers("secret"))
    assert answer.headers["x-llmroute-provider"] == "cn" and answer.parse().choices[0].message.content == said
    assert_nothing_leaked(emulators["cn"], SSN, EMAIL)
    emulators["cn"].reset()
    emulators["cn"].set_faults(status=503)
    stream = await aclient.chat.completions.with_raw_response.create(
        model="chat", messages=user(said), stream=True, extra_headers=headers("secret"))
    assert stream.headers["x-llmroute-provider"] == "us"
    assert "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices]) == said
    assert_nothing_leaked(emulators["cn"], SSN, EMAIL)  # the failed attempt, too, only had placeholders
    assert SSN in upstream(emulators["us"]) and EMAIL in upstream(emulators["us"])


async def test_an_escalated_request_keeps_its_declared_classs_redaction(
        aclient: openai.AsyncOpenAI, emulators: dict[str, Emulator]) -> None:
    said = f"Pay {IBAN} and confirm to {EMAIL}"
    raw = await aclient.chat.completions.with_raw_response.create(model="chat", messages=user(said), stream=True,
                                                                  extra_headers=headers("public"))
    assert raw.headers["x-llmroute-data-class"] == "public,banking" and raw.headers["x-llmroute-provider"] == "us"
    assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]) == said
    assert emulators["cn"].stats.total == 0
    assert_nothing_leaked(emulators["us"], EMAIL)  # public's rule still applies; the IBAN only moved the request
    assert IBAN in upstream(emulators["us"])


_VOLATILE = re.compile(rb'"(id|created)":("[^"]*"|[0-9]+)')


async def test_a_route_with_nothing_to_redact_relays_bytes_as_they_came(
        router: RouterProcess, emulators: dict[str, Emulator]) -> None:
    payload = {"model": "chat-us", "messages": user(SAID), "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(router.url + "/v1/chat/completions", json=payload,
                                headers=headers("secret")) as resp:
            through_router = await resp.read()
        sent = emulators["us"].bodies[0]
        assert json.loads(sent) == {**payload, "model": "deepseek-chat"}  # the body went as it came
        async with session.post(emulators["us"].url + "/chat/completions", data=sent,
                                headers={"Authorization": f"Bearer {KEYS['us']}",
                                         "Content-Type": "application/json"}) as resp:
            direct = await resp.read()
    assert _VOLATILE.sub(b"", through_router) == _VOLATILE.sub(b"", direct)
    events = [json.loads(line[6:]) for line in through_router.split(b"\n") if line.startswith(b"data: {")]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == SAID


async def test_findings_are_counted_by_type_and_action(aclient: openai.AsyncOpenAI, router: RouterProcess) -> None:
    def count(kind: str, action: str) -> float:
        pattern = rf'llmroute_pii_findings_total{{action="{action}",type="{kind}"}} ([0-9.e+]+)'
        found = re.search(pattern, router.metrics())
        return float(found.group(1)) if found else 0.0

    before = {k: count(*k) for k in (("email", "redacted"), ("email", "restored"), ("us_ssn", "blocked"))}
    await aclient.chat.completions.create(model="chat", messages=user(f"{EMAIL} and {EMAIL}"),
                                          extra_headers=headers("public"))
    with pytest.raises(openai.BadRequestError):
        await aclient.chat.completions.create(model="chat", messages=user(SSN), extra_headers=headers("public"))
    assert count("email", "redacted") - before[("email", "redacted")] == 2
    assert count("email", "restored") - before[("email", "restored")] == 2
    assert count("us_ssn", "blocked") - before[("us_ssn", "blocked")] == 1
    assert EMAIL not in router.metrics()
