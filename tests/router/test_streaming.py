"""Streaming on the wire, read raw (aiohttp) where the SDK would hide the details.

Aspects: ``: keep-alive`` comments pass through before the first token; a failover after the headers went out is
invisible to the SDK and named by the closing ``: llmroute provider=<name> attempts=<n>`` comment; after the first
event, a stall (idle timeout) or a cut ends the stream with an OpenAI-shaped error event, which the SDK raises, and
is counted; chunks pass through byte for byte (unknown fields, usage chunk).
"""

from __future__ import annotations

import json
import time

import aiohttp
import openai
import pytest

from .conftest import MESSAGES, Hub, RouterProcess

pytestmark = pytest.mark.router
PUBLIC = {"x-llmroute-data-class": "public"}


async def raw_stream(router: RouterProcess, headers: dict[str, str] | None = None,
                     **body: object) -> tuple[dict[str, str], bytes]:
    payload = {"model": "deepseek-chat", "messages": MESSAGES, "stream": True, **body}
    async with aiohttp.ClientSession() as session, session.post(
        router.url + "/v1/chat/completions", json=payload, headers=headers or {}
    ) as resp:
        assert resp.status == 200
        return dict(resp.headers), await resp.read()


async def test_keep_alive_comments_pass_through(router: RouterProcess, hub: Hub) -> None:
    hub["deepseek"].set_faults(first_token_delay=0.3, keepalive_interval=0.08)
    headers, body = await raw_stream(router, PUBLIC)
    assert headers["x-llmroute-provider"] == "deepseek"
    assert body.startswith(b": keep-alive\n\n: keep-alive\n\n")
    assert body.count(b": keep-alive") >= 3
    assert body.endswith(b"data: [DONE]\n\n") and b"llmroute provider" not in body


async def test_failover_after_keep_alives_ends_with_provider_comment(router: RouterProcess, hub: Hub) -> None:
    hub["deepseek"].set_faults(first_token_delay=5.0, keepalive_interval=0.1)
    headers, body = await raw_stream(router, PUBLIC)
    assert headers["x-llmroute-provider"] == "deepseek"  # the headers went out with the first keep-alive
    assert body.startswith(b": keep-alive\n\n")
    assert body.endswith(b": llmroute provider=together attempts=2\n\ndata: [DONE]\n\n")
    events = [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: {")]
    assert events[0]["model"] == "deepseek-ai/DeepSeek-V3" and all("error" not in e for e in events)


def test_failover_after_keep_alives_is_invisible_to_the_sdk(client: openai.OpenAI, hub: Hub) -> None:
    hub["deepseek"].set_faults(first_token_delay=5.0, keepalive_interval=0.1)
    stream = client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True,
                                            extra_headers=PUBLIC)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).startswith("Lorem ipsum")


async def test_chunks_pass_through_byte_for_byte(router: RouterProcess, hub: Hub) -> None:
    _, body = await raw_stream(router, stream_options={"include_usage": True}, max_tokens=2)
    events = [line for line in body.split(b"\n\n") if line]
    assert events[-1] == b"data: [DONE]"
    usage = json.loads(events[-2][6:])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2
    first = json.loads(events[0][6:])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Lorem"}
    assert events[0] == b"data: " + json.dumps(first, separators=(",", ":")).encode()  # as the emulator wrote it


@pytest.mark.parametrize("fault", ["stall_after_tokens", "cut_after_tokens"])
def test_mid_stream_failure_ends_with_error_event(client: openai.OpenAI, hub: Hub, router: RouterProcess,
                                                  fault: str) -> None:
    reason = "idle_timeout" if fault.startswith("stall") else "reset"
    before = counter(router, f'llmroute_stream_errors_total{{provider="together",reason="{reason}"}}')
    hub["together"].set_faults(**{fault: 3})
    started = time.monotonic()
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Lorem ipsum dolor"
    assert "together" in info.value.message and reason in info.value.message
    assert time.monotonic() - started < 2.0
    assert hub.requests("fireworks") == 0  # after the first token there is no failover
    assert counter(router, f'llmroute_stream_errors_total{{provider="together",reason="{reason}"}}') == before + 1


async def test_mid_stream_error_event_shape(router: RouterProcess, hub: Hub) -> None:
    hub["together"].set_faults(cut_after_tokens=1)
    _, body = await raw_stream(router)
    last = body.strip().split(b"\n\n")[-1]
    error = json.loads(last[len(b"data: "):])["error"]
    assert error["code"] == "stream_interrupted" and error["type"] == "server_error"
    assert b"[DONE]" not in body


def counter(router: RouterProcess, series: str) -> float:
    for line in router.metrics().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
