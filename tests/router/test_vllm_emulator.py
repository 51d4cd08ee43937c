"""The vLLM pod emulator (llmroute.emulator.vllm) over real loopback sockets, raw HTTP and the openai SDK.

Aspects: startup (port refused until the weights load; "hang" mode: bound but /health hangs); /health,
/v1/models and /metrics as vLLM serves them (no gpu_cache_usage_perc); chat and text completions, whole
and streamed, with ``reasoning`` (never ``reasoning_content``); vLLM's error shapes and --api-key; the
engine load model (max_num_seqs, FIFO queue, TTFT growing with queueing, KV usage); drain; dead engine;
the admin API; seeded determinism. Delays are tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import errno
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmroute.emulator.vllm import EngineParams, VllmConfig, VllmPod

pytestmark = pytest.mark.router

NAMES = ("qwen3-8b", "qwen")
MESSAGES: Any = [{"role": "user", "content": "Say hello to the router"}]
REASONER = VllmConfig(model="Qwen/Qwen3-8B", served_model_name=NAMES, reasoning_tokens=4, answer_tokens=6)


async def raw(url: str, body: dict[str, Any] | None = None, *, method: str = "POST", key: str | None = None,
              limit_s: float = 5.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit_s)) as session, session.request(
            method, url, json=body, headers=headers) as response:
        return response.status, await response.read()


async def chat(pod: VllmPod, **extra: Any) -> tuple[int, bytes]:
    return await raw(pod.url + "/chat/completions", {"model": NAMES[0], "messages": MESSAGES, **extra})


def scrape(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of a Prometheus exposition."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


async def metrics(pod: VllmPod) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, body = await raw(pod.base_url + "/metrics", method="GET")
    assert status == 200
    return scrape(body.decode())


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for ls, v in samples[name] if all(ls.get(k) == want for k, want in labels.items()))


async def until(condition: Any) -> None:
    for _ in range(400):  # up to 2 s
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached within 2 s")


@pytest.fixture
async def pod() -> AsyncIterator[VllmPod]:
    async with VllmPod(REASONER) as started:
        async with asyncio.timeout(2):
            await started.wait_ready()
        yield started


@pytest.fixture
async def sdk(pod: VllmPod) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=pod.url, api_key="unused", max_retries=0, timeout=5) as client:
        yield client


async def test_port_refuses_connections_until_weights_load() -> None:
    async with VllmPod(VllmConfig(startup_delay_s=0.15)) as pod:
        assert pod.port and not pod.ready
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await raw(pod.base_url + "/health", method="GET")
        assert refused.value.os_error.errno == errno.ECONNREFUSED
        async with asyncio.timeout(2):
            await pod.wait_ready()
        assert await raw(pod.base_url + "/health", method="GET") == (200, b"")


async def test_hang_mode_accepts_but_health_hangs_until_loaded() -> None:
    async with VllmPod(VllmConfig(startup_delay_s=0.3, health_mode="hang")) as pod:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await raw(pod.base_url + "/health", method="GET", limit_s=0.1)
        status, body = await raw(pod.admin_url + "/stats", method="GET")  # admin never hangs
        assert status == 200 and json.loads(body)["ready"] is False
        assert await raw(pod.base_url + "/health", method="GET") == (200, b"")
        assert time.monotonic() - started >= 0.25 and pod.ready


async def test_models_lists_served_names(pod: VllmPod, sdk: openai.AsyncOpenAI) -> None:
    status, body = await raw(pod.url + "/models", method="GET")
    listing = json.loads(body)
    assert status == 200 and listing["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"], m["root"], m["max_model_len"]) for m in listing["data"]] == [
        (name, "model", "vllm", "Qwen/Qwen3-8B", 32768) for name in NAMES]
    assert [m.id for m in (await sdk.models.list()).data] == list(NAMES)


async def test_chat_returns_reasoning_not_reasoning_content(pod: VllmPod, sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model="qwen", messages=MESSAGES)  # an alias...
    assert completion.model == NAMES[0]  # ...answered under the first served name, as vLLM does
    message = completion.choices[0].message
    assert message.content == "The quick brown fox jumps over"
    assert message.model_extra is not None and message.model_extra["reasoning"] == "Okay, the user wants"
    assert "reasoning_content" not in message.model_extra
    assert completion.choices[0].finish_reason == "stop" and completion.id.startswith("chatcmpl-")
    assert completion.usage is not None and completion.usage.completion_tokens == 4 + 6
    status, body = await chat(pod, max_tokens=2)
    assert status == 200 and b"reasoning_content" not in body
    assert json.loads(body)["choices"][0]["finish_reason"] == "length"


async def test_stream_sends_reasoning_deltas_and_usage(pod: VllmPod, sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(model=NAMES[0], messages=MESSAGES, stream=True,
                                               stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant" and deltas[0].content == ""
    assert "".join((d.model_extra or {}).get("reasoning") or "" for d in deltas) == "Okay, the user wants"
    assert not any("reasoning_content" in (d.model_extra or {}) for d in deltas)
    assert "".join(d.content or "" for d in deltas) == "The quick brown fox jumps over"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10
    status, body = await chat(pod, stream=True)
    assert status == 200 and body.endswith(b"data: [DONE]\n\n") and b"reasoning_content" not in body
    assert all(event.startswith(b"data: ") for event in body.split(b"\n\n") if event)


async def test_history_with_reasoning_fields_is_accepted(pod: VllmPod) -> None:
    history = [*MESSAGES, {"role": "assistant", "content": "Hello", "reasoning": "greet", "reasoning_content": "x"},
               {"role": "user", "content": "Again"}]
    status, body = await raw(pod.url + "/chat/completions", {"model": NAMES[0], "messages": history,
                                                            "some_unknown_field": 1})
    assert status == 200 and json.loads(body)["object"] == "chat.completion"


async def test_text_completions(sdk: openai.AsyncOpenAI) -> None:
    text = await sdk.completions.create(model=NAMES[0], prompt="one two three", max_tokens=3)
    assert (text.object, text.choices[0].text, text.choices[0].finish_reason) == (
        "text_completion", "The quick brown", "length")
    assert text.usage is not None and text.usage.prompt_tokens == 3
    stream = await sdk.completions.create(model=NAMES[0], prompt="x", max_tokens=2, stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == "The quick"


async def test_errors_have_vllm_shapes(pod: VllmPod, sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert missing.value.body == {"message": "The model `gpt-4o` does not exist.", "type": "NotFoundError",
                                  "param": "model", "code": 404}
    with pytest.raises(openai.BadRequestError, match="maximum context length is 32768"):
        await sdk.chat.completions.create(model=NAMES[0], messages=MESSAGES, max_tokens=40000)
    status, body = await raw(pod.url + "/chat/completions", {"model": NAMES[0]})
    error = json.loads(body)["error"]
    assert (status, error["type"], error["code"]) == (400, "Bad Request", 400) and "messages" in error["message"]
    status, body = await raw(pod.base_url + "/nowhere", method="GET")
    assert (status, json.loads(body)) == (404, {"detail": "Not Found"})


async def test_api_key_guards_only_v1() -> None:
    async with VllmPod(VllmConfig(served_model_name="m", api_key="sk-pod-key")) as pod:
        async with asyncio.timeout(2):
            await pod.wait_ready()
        assert await raw(pod.url + "/models", method="GET") == (401, b'{"error": "Unauthorized"}')
        async with openai.AsyncOpenAI(base_url=pod.url, api_key="sk-wrong", max_retries=0) as wrong:
            with pytest.raises(openai.AuthenticationError):
                await wrong.models.list()
        async with openai.AsyncOpenAI(base_url=pod.url, api_key="sk-pod-key", max_retries=0) as right:
            assert (await right.chat.completions.create(model="m", messages=MESSAGES)).choices[0].message.content
        assert (await raw(pod.base_url + "/health", method="GET"))[0] == 200
        assert (await raw(pod.base_url + "/metrics", method="GET"))[0] == 200


async def test_metrics_show_running_waiting_and_kv_under_load() -> None:
    params = EngineParams(max_num_seqs=2, token_interval_s=0.02)
    async with VllmPod(VllmConfig(served_model_name="pool-model", answer_tokens=10), params) as pod:
        async with asyncio.timeout(2):
            await pod.wait_ready()
        requests = [asyncio.create_task(chat(pod, model="pool-model", stream=True)) for _ in range(5)]
        await until(lambda: pod.state.engine.waiting == 3)
        during = await metrics(pod)
        assert value(during, "vllm:num_requests_running", model_name="pool-model", engine="0") == 2
        assert value(during, "vllm:num_requests_waiting", model_name="pool-model", engine="0") == 3
        assert 0 < value(during, "vllm:kv_cache_usage_perc", model_name="pool-model") <= 1
        assert "vllm:gpu_cache_usage_perc" not in during and not any("gpu_" in name for name in during)
        assert all(status == 200 for status, _ in await asyncio.gather(*requests))
        after = await metrics(pod)
    assert value(after, "vllm:num_requests_running") == value(after, "vllm:num_requests_waiting") == 0
    assert value(after, "vllm:request_success_total", finished_reason="stop") == 5
    assert value(after, "vllm:generation_tokens_total") == 50
    assert value(after, "vllm:time_to_first_token_seconds_count") == 5
    assert value(after, "vllm:time_to_first_token_seconds_bucket", le="+Inf") == 5
    assert "process_cpu_seconds_total" in after or "python_info" in after  # the usual scrape noise
    assert pod.stats()["max_running"] == 2 and pod.stats()["max_waiting"] == 3


async def test_queued_request_waits_longer_for_its_first_token() -> None:
    params = EngineParams(max_num_seqs=1, prefill_s=0.03, token_interval_s=0.01)
    async with VllmPod(VllmConfig(served_model_name="m", answer_tokens=5), params) as pod, openai.AsyncOpenAI(
            base_url=pod.url, api_key="unused", max_retries=0) as sdk:
        async with asyncio.timeout(2):
            await pod.wait_ready()

        async def ttft() -> float:
            started = time.monotonic()
            stream = await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            first = None
            async for _ in stream:
                first = first or time.monotonic() - started
            assert first is not None
            return first

        unqueued, queued = await asyncio.gather(ttft(), ttft())
    assert unqueued >= 0.03 and queued >= unqueued + 0.04  # waited for the other's 5 tokens, then its prefill
    samples = scrape(pod.state.metrics.render(running=0, waiting=0, kv_usage=0).decode())
    assert value(samples, "vllm:request_queue_time_seconds_sum") >= 0.04


async def test_drain_rejects_new_requests_while_streams_finish() -> None:
    params = EngineParams(token_interval_s=0.02)
    async with VllmPod(VllmConfig(served_model_name="m", answer_tokens=8), params) as pod:
        async with asyncio.timeout(2):
            await pod.wait_ready()
        async with aiohttp.ClientSession() as session, session.post(
                pod.url + "/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}) as stream:
            first = await stream.content.readline()
            assert first.startswith(b"data: ")
            await pod.drain()
            status, body = await raw(pod.url + "/chat/completions", {"model": "m", "messages": MESSAGES})
            assert status == 503 and json.loads(body)["error"]["code"] == 503
            assert (await raw(pod.base_url + "/health", method="GET"))[0] == 503
            rest = await stream.read()
        assert stream.status == 200 and rest.endswith(b"data: [DONE]\n\n")
        assert (first + rest).count(b'"content"') == 1 + 8  # the role chunk's "" and every token
        async with asyncio.timeout(1):
            await pod.drain(wait=True)
        assert pod.stats()["served"] == 1


async def test_dead_engine_fails_health_requests_and_running_streams(pod: VllmPod) -> None:
    pod.set_params(token_interval_s=0.03)
    async with aiohttp.ClientSession() as session, session.post(
            pod.url + "/chat/completions", json={"model": NAMES[0], "messages": MESSAGES, "stream": True}) as stream:
        await stream.content.readline()
        status, body = await raw(pod.admin_url + "/params", {"engine_dead": True}, method="PUT")
        assert status == 200 and json.loads(body)["engine_dead"] is True
        rest = await stream.read()
    assert b'"type":"InternalServerError"' in rest and rest.endswith(b"data: [DONE]\n\n")
    assert await raw(pod.base_url + "/health", method="GET") == (503, b"")
    assert await chat(pod) == (500, b"")
    await raw(pod.admin_url + "/params", {"engine_dead": False}, method="PUT")
    assert (await raw(pod.base_url + "/health", method="GET"))[0] == 200
    assert pod.stats()["finished"]["error"] == 1


async def test_admin_api(pod: VllmPod) -> None:
    status, body = await raw(pod.admin_url + "/params", {"max_num_seqs": 0}, method="PUT")
    assert status == 400 and pod.params.max_num_seqs == 256
    status, body = await raw(pod.admin_url + "/params", {"extra_delay_s": 0.05}, method="PUT")
    assert status == 200 and json.loads(body)["extra_delay_s"] == 0.05
    started = time.monotonic()
    assert (await chat(pod))[0] == 200 and time.monotonic() - started >= 0.05
    stats = json.loads((await raw(pod.admin_url + "/stats", method="GET"))[1])
    assert stats["requests"] == {"/v1/chat/completions": 1} and stats["served"] == 1 and stats["ready"] is True
    stats = json.loads((await raw(pod.admin_url + "/reset"))[1])
    assert stats["total"] == 0 and stats["served"] == 0


async def test_same_seed_same_ids() -> None:
    ids: list[list[str]] = []
    for _ in range(2):
        async with VllmPod(VllmConfig(seed=3)) as pod:
            async with asyncio.timeout(2):
                await pod.wait_ready()
            answers = [json.loads((await raw(pod.url + "/completions", {"model": "Qwen/Qwen3-8B", "prompt": "x"}))[1])
                       for _ in range(3)]
            ids.append([answer["id"] for answer in answers])
    assert ids[0] == ids[1] and len(set(ids[0])) == 3


async def test_clients_that_leave_free_their_slot_or_queue_place() -> None:
    params = EngineParams(max_num_seqs=1, token_interval_s=0.05)
    async with VllmPod(VllmConfig(served_model_name="m", answer_tokens=20), params) as pod:
        async with asyncio.timeout(2):
            await pod.wait_ready()
        engine = pod.state.engine
        running = asyncio.create_task(chat(pod, model="m", stream=True))
        await until(lambda: engine.running == 1)
        queued = asyncio.create_task(chat(pod, model="m", stream=True))
        await until(lambda: engine.waiting == 1)
        queued.cancel()  # hangs up while waiting
        await until(lambda: engine.waiting == 0)
        running.cancel()  # hangs up mid-stream
        await until(lambda: engine.running == 0)
        assert pod.stats()["finished"] == {"abort": 2}
        assert value(await metrics(pod), "vllm:request_success_total", finished_reason="abort") == 2
