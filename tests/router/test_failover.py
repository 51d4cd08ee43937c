"""Failover: each fault the emulator injects, on the first allowed backend, is hidden from the client by the next.

Aspects: 5xx and 429 fail over at once (a Retry-After is honoured only when the same backend is tried again),
connection refused, connection reset, slow first token (stream and non-stream: DeepSeek's 5-10 s TTFT incident),
error events before the first token, 50% error rates, embeddings, a failure mid-answer of a non-streaming request.
The default class ``internal`` tries together -> fireworks -> bedrock; ``public`` starts at deepseek.
"""

from __future__ import annotations

import threading
import time

import openai
import pytest

from llmroute.emulator import FaultPlan

from .conftest import MESSAGES, Hub

pytestmark = pytest.mark.router
PUBLIC = {"x-llmroute-data-class": "public"}
PHI = {"x-llmroute-data-class": "phi"}


def chat(client: openai.OpenAI, **kw: object) -> tuple[str, str, str]:
    """(provider, attempts, content) of one non-streaming chat request."""
    raw = client.chat.completions.with_raw_response.create(model="deepseek-chat", messages=MESSAGES, **kw)
    content = raw.parse().choices[0].message.content or ""
    return raw.headers["x-llmroute-provider"], raw.headers["x-llmroute-attempts"], content


def stream_text(client: openai.OpenAI, **kw: object) -> tuple[str, str]:
    """(provider header, text) of one streaming chat request."""
    raw = client.chat.completions.with_raw_response.create(model="deepseek-chat", messages=MESSAGES, stream=True,
                                                           **kw)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    return raw.headers["x-llmroute-provider"], text


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_status_fails_over_to_next_allowed(client: openai.OpenAI, hub: Hub, status: int) -> None:
    hub["together"].set_faults(status=status, retry_after=30)
    started = time.monotonic()
    provider, attempts, content = chat(client)
    assert (provider, attempts) == ("fireworks", "2") and content.startswith("Lorem")
    assert time.monotonic() - started < 1.0  # no waiting on a Retry-After when another backend is there
    assert hub["together"].stats.statuses[status] == 1


def test_retry_after_is_honoured_when_the_only_backend_is_retried(client: openai.OpenAI, hub: Hub) -> None:
    hub["bedrock"].set_faults(status=503, retry_after=1)  # phi: bedrock is the only allowed backend
    timer = threading.Timer(0.3, lambda: hub["bedrock"].set_faults(FaultPlan()))
    timer.start()
    started = time.monotonic()
    provider, attempts, _ = chat(client, extra_headers=PHI)
    timer.join()
    assert (provider, attempts) == ("bedrock", "2")
    assert time.monotonic() - started >= 1.0


def test_connection_refused_fails_over(client: openai.OpenAI, hub: Hub) -> None:
    hub.call(hub["together"].stop_listening())
    assert chat(client)[:2] == ("fireworks", "2")
    assert stream_text(client)[0] == "fireworks"


def test_connection_reset_fails_over(client: openai.OpenAI, hub: Hub) -> None:
    hub["together"].set_faults(refuse=True)
    assert chat(client)[:2] == ("fireworks", "2")
    assert stream_text(client)[0] == "fireworks"
    assert hub["together"].stats.outcomes["refused"] == 2


def test_slow_first_token_stream_fails_over_within_ttft(client: openai.OpenAI, hub: Hub) -> None:
    hub["deepseek"].set_faults(first_token_delay=3.0)
    started = time.monotonic()
    provider, text = stream_text(client, extra_headers=PUBLIC)
    assert provider == "together" and text.startswith("Lorem")
    assert time.monotonic() - started < 1.5  # TTFT budget 0.5 s, not the 3 s the provider would take


def test_slow_first_token_non_stream_fails_over(client: openai.OpenAI, hub: Hub) -> None:
    hub["deepseek"].set_faults(first_token_delay=3.0, keepalive_interval=0.1)  # blank lines / keep-alives meanwhile
    started = time.monotonic()
    provider, attempts, content = chat(client, extra_headers=PUBLIC)
    assert (provider, attempts) == ("together", "2") and content.startswith("Lorem")
    assert time.monotonic() - started < 1.5


def test_slow_but_producing_answer_is_not_cut_by_ttft(client: openai.OpenAI, hub: Hub) -> None:
    hub["together"].set_faults(token_interval=0.1)  # 16 tokens over 1.5 s: longer than TTFT, but progressing
    provider, attempts, content = chat(client, max_tokens=12)
    assert (provider, attempts) == ("together", "1") and len(content.split()) == 12


def test_failure_mid_answer_of_non_stream_request_fails_over_invisibly(client: openai.OpenAI, hub: Hub) -> None:
    hub["together"].set_faults(cut_after_tokens=4)
    assert chat(client)[:2] == ("fireworks", "2")
    hub["fireworks"].set_faults(stall_after_tokens=2)
    assert chat(client)[:2] == ("bedrock", "3")


def test_half_error_rate_never_reaches_the_client(client: openai.OpenAI, hub: Hub) -> None:
    hub["together"].set_faults(error_rate=0.5, error_status=503)
    providers = [chat(client, max_tokens=1)[0] for _ in range(12)]
    assert set(providers) == {"together", "fireworks"}
    assert hub["together"].stats.statuses[503] == providers.count("fireworks")


def test_embeddings_fail_over(client: openai.OpenAI, hub: Hub) -> None:
    hub["together"].set_faults(status=503)
    raw = client.embeddings.with_raw_response.create(model="embedder", input="hello")
    assert raw.headers["x-llmroute-provider"] == "fireworks" and len(raw.parse().data) == 1


def test_embeddings_slow_response_fails_over(client: openai.OpenAI, hub: Hub) -> None:
    hub["together"].set_faults(latency=2.0)
    started = time.monotonic()
    raw = client.embeddings.with_raw_response.create(model="embedder", input="hello")
    assert raw.headers["x-llmroute-provider"] == "fireworks"
    assert time.monotonic() - started < 1.5


def test_max_attempts_bounds_the_request(client: openai.OpenAI, hub: Hub) -> None:
    for name in ("deepseek", "together", "fireworks", "bedrock"):
        hub[name].set_faults(status=500)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, extra_headers=PUBLIC)
    assert info.value.response.headers["x-llmroute-attempts"] == "4"
    assert sum(hub.requests(n) for n in ("deepseek", "together", "fireworks", "bedrock")) == 4
