"""The provider emulator (llmroute.emulator) seen through the official openai SDK and raw HTTP.

Aspects: DeepSeek's response shapes (chat, stream + include_usage, reasoning field, legacy completions,
embeddings, models); the wire quirks routers must tolerate (``: keep-alive`` comments, blank lines before
a JSON body); error codes -> SDK exception types; every fault (seeded error rate, cut, stall, refuse,
listener outage, idle close, latency/pacing); authentication bookkeeping; the live admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from llmroute.emulator import Emulator, FaultPlan, Outcome, run_emulator

pytestmark = pytest.mark.router

KEY = "sk-emulator-test-key"
FAST = {"keepalive_interval": 0.05}
MESSAGES: Any = [{"role": "user", "content": "Say hello to the router"}]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with run_emulator("deepseek", api_key=KEY, seed=7) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=emu.url, api_key=KEY, max_retries=0) as sdk:
        yield sdk


async def raw(url: str, body: bytes | dict[str, Any], *, method: str = "POST",
              key: str | None = KEY) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session, session.request(method, url, data=data, headers=headers) as r:
        return r.status, await r.read()


async def test_chat_non_stream_has_deepseek_shape(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.with_raw_response.create(model="deepseek-chat", messages=MESSAGES)
    assert response.headers["x-emulator-provider"] == "deepseek"
    chat = response.parse()
    assert chat.object == "chat.completion" and chat.model == "deepseek-chat" and chat.system_fingerprint
    assert chat.choices[0].finish_reason == "stop" and (chat.choices[0].message.content or "").startswith("Lorem ipsum")
    assert chat.usage is not None
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens, chat.usage.total_tokens) == (5, 16, 21)
    assert chat.usage.model_extra == {"prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 5}
    record = emu.stats.records[-1]
    assert (record.path, record.model, record.stream, record.status, record.outcome) == (
        "/chat/completions", "deepseek-chat", False, 200, Outcome.OK)


async def test_stream_reasoner_with_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="deepseek-reasoner", messages=MESSAGES, max_tokens=3,
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas).startswith("Let me think")
    assert "".join(d.content or "" for d in deltas) == "Lorem ipsum dolor"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8 + 3
    assert chunks[-1].usage.completion_tokens_details is not None
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 8


async def test_vllm_names_the_reasoning_field_reasoning() -> None:
    async with run_emulator("vllm", reasoning_field="reasoning") as emu, openai.AsyncOpenAI(
            base_url=emu.url, api_key="unused", max_retries=0) as sdk:
        chat = await sdk.chat.completions.create(model="DeepSeek-R1-reasoner", messages=MESSAGES)
    assert chat.choices[0].message.model_extra == {"reasoning": "Let me think about this step by step"}


async def test_legacy_completions(client: openai.AsyncOpenAI) -> None:
    text = await client.completions.create(model="deepseek-chat", prompt="one two", max_tokens=2)
    assert (text.object, text.choices[0].text, text.usage and text.usage.prompt_tokens) == (
        "text_completion", "Lorem ipsum", 2)
    stream = await client.completions.create(model="deepseek-chat", prompt="x", max_tokens=2, stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == "Lorem ipsum"


async def test_keepalive_comments_while_queued(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    emu.set_faults(first_token_delay=0.25, **FAST)
    status, body = await raw(emu.url + "/chat/completions",
                             {"model": "deepseek-chat", "messages": MESSAGES, "stream": True, "max_tokens": 2})
    assert status == 200 and body.startswith(b": keep-alive\n\n") and body.count(b": keep-alive\n\n") >= 2
    assert body.endswith(b"data: [DONE]\n\n")
    stream = await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, max_tokens=2,
                                                  stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "Lorem ipsum"


async def test_blank_lines_before_non_stream_body(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    emu.set_faults(first_token_delay=0.25, **FAST)
    status, body = await raw(emu.url + "/chat/completions", {"model": "deepseek-chat", "messages": MESSAGES})
    assert status == 200 and body.startswith(b"\n\n") and json.loads(body)["object"] == "chat.completion"
    chat = await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    assert chat.choices[0].message.content


@pytest.mark.parametrize(("status", "error"), [
    (400, openai.BadRequestError), (401, openai.AuthenticationError), (402, openai.APIStatusError),
    (403, openai.PermissionDeniedError), (404, openai.NotFoundError), (422, openai.UnprocessableEntityError),
    (429, openai.RateLimitError), (500, openai.InternalServerError), (502, openai.InternalServerError),
    (503, openai.InternalServerError), (504, openai.InternalServerError)])
async def test_status_fault_maps_to_sdk_error(emu: Emulator, client: openai.AsyncOpenAI, status: int,
                                              error: type[openai.APIStatusError]) -> None:
    emu.set_faults(status=status, retry_after=3)
    with pytest.raises(error) as caught:
        await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True)
    assert caught.value.status_code == status
    assert caught.value.response.headers.get("retry-after") == ("3" if status in (429, 503) else None)
    if status == 402:
        assert caught.value.body == {"message": "Insufficient Balance", "type": "unknown_error", "param": None,
                                     "code": "invalid_request_error"}
    assert emu.stats.statuses[status] == 1 and emu.stats.outcomes[Outcome.ERROR] == 1


async def test_error_rate_is_seeded_and_reproducible() -> None:
    outcomes: list[list[int]] = []
    for _ in range(2):
        async with run_emulator("deepseek", seed=42, faults=FaultPlan(error_rate=0.5)) as emu, \
                openai.AsyncOpenAI(base_url=emu.url, api_key="k", max_retries=0) as sdk:
            for _ in range(200):
                with contextlib.suppress(openai.InternalServerError):
                    await sdk.chat.completions.create(model="deepseek-chat", messages=MESSAGES, max_tokens=1)
            outcomes.append([r.status or 0 for r in emu.stats.records])
            assert emu.stats.statuses[503] + emu.stats.statuses[200] == 200
    assert outcomes[0] == outcomes[1]
    assert 80 <= outcomes[0].count(503) <= 120


async def test_cut_mid_stream(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    emu.set_faults(cut_after_tokens=3)
    received: list[str] = []
    stream = await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["Lorem", " ipsum", " dolor"]
    assert (emu.stats.records[-1].outcome, emu.stats.records[-1].tokens) == (Outcome.CUT, 3)


async def test_stall_mid_stream_until_client_timeout(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    emu.set_faults(stall_after_tokens=2)
    stream = await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True,
                                                  timeout=0.3)
    received: list[str] = []
    with pytest.raises(openai.APITimeoutError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["Lorem", " ipsum"]
    for _ in range(40):  # the emulator notices the hang-up within its 50 ms poll
        if emu.stats.outcomes[Outcome.STALLED]:
            break
        await asyncio.sleep(0.025)
    assert emu.stats.outcomes[Outcome.STALLED] == 1


async def test_idle_close_after_silence(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    emu.set_faults(first_token_delay=30, idle_close=0.2, **FAST)
    stream = await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIConnectionError):
        _ = [c async for c in stream]
    assert emu.stats.outcomes[Outcome.IDLE_CLOSED] == 1


async def test_refuse_and_listener_outage(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    emu.set_faults(refuse=True)
    with pytest.raises(openai.APIConnectionError):
        await client.models.list()
    assert emu.stats.outcomes[Outcome.REFUSED] == 1
    emu.set_faults()
    await emu.stop_listening()
    with pytest.raises(openai.APIConnectionError):
        await client.models.list()
    await emu.start_listening()
    assert [m.id for m in (await client.models.list()).data] == ["deepseek-chat", "deepseek-reasoner"]


async def test_latency_and_token_pacing(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    emu.set_faults(latency=0.1, token_interval=0.03)
    started = time.monotonic()
    stream = await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, max_tokens=4,
                                                  stream=True)
    _ = [c async for c in stream]
    assert time.monotonic() - started >= 0.1 + 3 * 0.03


async def test_auth_bookkeeping_never_keeps_a_key(emu: Emulator) -> None:
    async with openai.AsyncOpenAI(base_url=emu.url, api_key="sk-wrong-client-key", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError, match=r"\*\*\*\*-key is invalid"):
            await sdk.models.list()
    status, _ = await raw(emu.url + "/models", b"", method="GET", key=None)
    assert status == 401
    assert dict(emu.stats.auth) == {"bad": 1, "missing": 1}
    assert emu.stats.last_bad_token_prefix == "sk-w"
    assert "wrong-client" not in json.dumps(emu.stats.to_json())


async def test_bad_requests_look_like_deepseek() -> None:
    async with run_emulator("deepseek", strict_models=True) as emu:
        status, body = await raw(emu.base_url + "/chat/completions", b"{not json")
        assert status == 400 and "Failed to parse the request body as JSON" in json.loads(body)["error"]["message"]
        status, body = await raw(emu.url + "/chat/completions", {"messages": MESSAGES})
        assert status == 422 and json.loads(body)["error"]["message"].endswith("missing field `model`")
        status, body = await raw(emu.url + "/chat/completions", {"model": "gpt-4o", "messages": MESSAGES})
        assert status == 400 and json.loads(body)["error"]["message"] == "Model Not Exist"
        assert emu.stats.requests["/chat/completions"] == 3


async def test_embeddings_and_models(client: openai.AsyncOpenAI) -> None:
    default = await client.embeddings.create(model="bge-m3", input=["alpha beta", "gamma"])  # SDK asks for base64
    floats = await client.embeddings.create(model="bge-m3", input="alpha beta", encoding_format="float")
    assert len(default.data) == 2 and len(default.data[0].embedding) == 8
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)
    assert default.usage.prompt_tokens == 3
    assert {m.id for m in (await client.models.list()).data} == {"deepseek-chat", "deepseek-reasoner"}


async def test_admin_api_changes_behaviour_live(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    status, body = await raw(emu.admin_url + "/faults", {"status": 503}, method="PUT")
    assert status == 200 and json.loads(body)["status"] == 503 and emu.faults.status == 503
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    status, body = await raw(emu.admin_url + "/faults", {"error_rate": 2}, method="PUT")
    assert status == 400 and emu.faults.status == 503
    await raw(emu.admin_url + "/faults", {}, method="PUT")
    await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    status, body = await raw(emu.admin_url + "/stats", b"", method="GET")
    assert json.loads(body)["outcomes"] == {"error": 1, "ok": 1}
    status, body = await raw(emu.admin_url + "/reset", b"")
    assert json.loads(body)["total"] == 0 and emu.stats.total == 0


async def test_bodies_are_kept_only_when_asked(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    assert emu.bodies == [] and "Say hello" not in json.dumps(emu.stats.to_json())
    async with run_emulator("cn", record_bodies=True) as recording, openai.AsyncOpenAI(
            base_url=recording.url, api_key=KEY, max_retries=0) as sdk:
        await sdk.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
        assert [json.loads(b)["messages"] for b in recording.bodies] == [MESSAGES]
        assert "Say hello" not in json.dumps(recording.stats.to_json())
        recording.reset()
        assert recording.bodies == []


async def test_echo_answers_with_the_last_user_message_in_small_pieces() -> None:
    said = "Write to <EMAIL_1> now"
    tools: Any = [{"type": "function", "function": {"name": "send", "parameters": {"type": "object"}}}]
    async with run_emulator("echo", echo=True) as echo, openai.AsyncOpenAI(
            base_url=echo.url, api_key=KEY, max_retries=0) as sdk:
        answer = await sdk.chat.completions.create(model="deepseek-reasoner",
                                                   messages=[{"role": "user", "content": said}])
        assert answer.choices[0].message.content == said
        assert answer.choices[0].message.model_dump()["reasoning_content"] == said
        stream = await sdk.chat.completions.create(model="deepseek-chat", stream=True, n=2,
                                                   messages=[{"role": "user", "content": said}])
        pieces = [(c.choices[0].index, c.choices[0].delta.content) async for c in stream if c.choices]
        assert [p for i, p in pieces if i == 1 and p] == ["Wri", "te ", "to ", "<EM", "AIL", "_1>", " no", "w"]
        called = await sdk.chat.completions.create(model="deepseek-chat", tools=tools,
                                                   messages=[{"role": "user", "content": said}])
        call = called.choices[0].message.tool_calls[0]
        assert called.choices[0].finish_reason == "tool_calls" and call.function.name == "send"
        assert json.loads(call.function.arguments) == {"text": said}
        text = await sdk.completions.create(model="deepseek-chat", prompt=said)
        assert text.choices[0].text == said
