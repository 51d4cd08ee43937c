"""The router as a drop-in OpenAI endpoint, with healthy providers.

Aspects: chat (sync and async, non-stream and stream), completions (both), embeddings, the model list, reasoning
content and usage passing through, the non-stream answer assembled from an upstream stream keeps the upstream's
non-stream shape, paths without /v1, health and readiness, the routing response headers.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
import pytest

from .conftest import MESSAGES, Hub, RouterProcess

pytestmark = pytest.mark.router
PUBLIC = {"x-llmroute-data-class": "public"}


def test_chat_non_stream_default_class_goes_to_first_allowed(client: openai.OpenAI, hub: Hub) -> None:
    raw = client.chat.completions.with_raw_response.create(model="deepseek-chat", messages=MESSAGES)
    resp = raw.parse()
    assert raw.headers["x-llmroute-provider"] == "together"  # internal: deepseek (CN, training Unknown) denied
    assert raw.headers["x-llmroute-data-class"] == "internal"
    assert raw.headers["x-llmroute-attempts"] == "1"
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content.startswith("Lorem ipsum")
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 16
    assert resp.system_fingerprint == "fp_emulator_prod"
    assert hub.requests("deepseek") == 0


def test_non_stream_answer_has_the_upstream_non_stream_shape(router: RouterProcess, hub: Hub) -> None:
    body = {"model": "deepseek-reasoner", "messages": MESSAGES, "max_tokens": 3, "unknown_field": {"kept": 1}}
    status, headers, answer = post(router, "/v1/chat/completions", body, PUBLIC)
    assert status == 200 and headers["x-llmroute-provider"] == "deepseek"
    assert list(answer) == ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]
    choice = answer["choices"][0]
    assert list(choice) == ["index", "message", "logprobs", "finish_reason"]
    assert choice["message"] == {"role": "assistant", "content": "Lorem ipsum dolor",
                                 "reasoning_content": "Let me think about this step by step"}
    assert choice["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens_details"] == {"reasoning_tokens": 8}
    assert answer["usage"]["prompt_cache_miss_tokens"] == 2
    records = hub["deepseek"].stats.records
    wait_for(lambda: any(r.model == "deepseek-reasoner" for r in records))  # filed just after the last byte
    assert [r.stream for r in records if r.model == "deepseek-reasoner"] == [True]  # asked for a stream


async def test_chat_async_and_stream(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.chat.completions.create(model="deepseek-chat", messages=MESSAGES, max_tokens=4)
    assert resp.choices[0].message.content == "Lorem ipsum dolor sit"
    stream = await aclient.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True,
                                                   stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Lorem ipsum") and len(text.split()) == 16
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 16


def test_stream_passes_reasoning_content_through(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="deepseek-reasoner", messages=MESSAGES, stream=True,
                                            max_tokens=2, extra_headers=PUBLIC)
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in stream)
    assert reasoning == "Let me think about this step by step"


def test_stream_helper_sync(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="deepseek-chat", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content.startswith("Lorem ipsum dolor sit amet")


def test_completions(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(model="deepseek-chat", prompt="Say hello", max_tokens=3)
    resp = raw.parse()
    assert resp.object == "text_completion"
    assert resp.choices[0].text == "Lorem ipsum dolor" and resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    stream = client.completions.create(model="deepseek-chat", prompt="Say hello", max_tokens=3, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "Lorem ipsum dolor"


def test_embeddings(client: openai.OpenAI, hub: Hub) -> None:
    raw = client.embeddings.with_raw_response.create(model="embedder", input=["one", "two"])
    resp = raw.parse()
    assert raw.headers["x-llmroute-provider"] == "together"
    assert [d.index for d in resp.data] == [0, 1] and len(resp.data[0].embedding) == 8
    wait_for(lambda: any(r.model == "BAAI/bge-base-en" for r in hub["together"].stats.records))


def test_models_list_is_the_published_names(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["deepseek-chat", "deepseek-reasoner", "embedder", "keyless"]


def test_paths_without_v1_and_probes(router: RouterProcess) -> None:
    status, _, answer = post(router, "/chat/completions", {"model": "deepseek-chat", "messages": MESSAGES})
    assert status == 200 and answer["object"] == "chat.completion"
    assert router.get("/models")[0] == 200
    assert router.get("/healthz") == (200, '{"status": "alive"}')
    status, text = router.get("/readyz")
    assert status == 200 and json.loads(text)["route"] == "llm/chat"


def test_missing_key_backend_is_skipped_never_called(client: openai.OpenAI, hub: Hub) -> None:
    raw = client.chat.completions.with_raw_response.create(model="keyless", messages=MESSAGES,
                                                           extra_headers=PUBLIC)
    assert raw.headers["x-llmroute-provider"] == "together"
    assert hub.requests("fireworks") == 0  # "nokey" points at the fireworks emulator


def wait_for(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def post(router: RouterProcess, path: str, body: Any, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    """A plain HTTP POST (no SDK): status, headers (lower-case names), parsed JSON body."""
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(router.url + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.loads(exc.read())
