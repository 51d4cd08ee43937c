"""Same weights, same answer shape: reasoning reaches clients under the name the published model promises, whichever
backend served, and each upstream gets a history it accepts.

Two emulators of the same weights beside the hub's: ``dsapi`` speaks DeepSeek's API (``reasoning_content``, and its
400s for reasoning in the history), ``pool`` a self-hosted vLLM (``reasoning``). Published models: ``rc-pool``
promises ``reasoning_content`` and is served by the pool; ``r-api`` promises ``reasoning`` and is served by DeepSeek's
API; ``rc-failover`` (DeepSeek's API, then the pool) and ``r-failover`` (the pool, then DeepSeek's API) promise the
name of their first backend. Aspects, through the official SDK: the client sees only the promised name in messages
and stream deltas; an answer after a failover (503 before the answer, or a slow first token after keep-alives went
out) has exactly the shape of one without; a history echoing either name is accepted by DeepSeek's API, which
rejects it when sent as the client wrote it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llmroute.emulator import Emulator, FaultPlan

from .conftest import Hub, RouterProcess, router_on, serving

pytestmark = pytest.mark.router
API_KEY = "sk-dsapi-test-key-0123456789"
QUESTION = {"role": "user", "content": "Which is greater, 9.11 or 9.8?"}
TOOL_CALLS = [{"id": "call_1", "type": "function", "function": {"name": "compare", "arguments": '{"a": 9.11}'}}]


@pytest.fixture(scope="module")
def emulators(hub: Hub) -> Iterator[dict[str, Emulator]]:
    with serving(hub, {"dsapi": Emulator("dsapi", api_key=API_KEY, seed=3),
                       "pool": Emulator("pool", reasoning_field="reasoning", seed=3)}) as emus:
        yield emus


@pytest.fixture(autouse=True)
def _healthy(emulators: dict[str, Emulator]) -> Iterator[None]:
    yield
    for emu in emulators.values():
        emu.set_faults(FaultPlan())
        emu.reset()


def config(emulators: dict[str, Emulator]) -> dict[str, dict[str, Any]]:
    health = {"path": "/models", "interval": "100ms", "timeout": "500ms"}
    policy = {
        "apiVersion": "llmroute.io/v1alpha1", "kind": "ProviderPolicy", "metadata": {"name": "weights"},
        "spec": {"defaultDataClass": "public", "dataClasses": [{"name": "public"}], "providers": [
            {"name": "dsapi", "endpoint": emulators["dsapi"].url, "jurisdiction": "CN", "healthCheck": health,
             "credentials": {"secretRef": {"name": "keys", "namespace": "llm", "key": "dsapi"}}},
            {"name": "pool", "endpoint": emulators["pool"].url, "jurisdiction": "DE", "selfHosted": True,
             "healthCheck": health},
        ]},
    }

    def model(name: str, field: str, *providers: str) -> dict[str, Any]:
        backends = [{"provider": p, "model": "deepseek-reasoner", "priority": i} for i, p in enumerate(providers)]
        return {"name": name, "reasoningField": field, "backends": backends}

    route = {
        "apiVersion": "llmroute.io/v1alpha1", "kind": "LLMRoute", "metadata": {"name": "chat", "namespace": "llm"},
        "spec": {
            "policyRef": {"name": "weights"},
            "models": [model("rc-pool", "reasoning_content", "pool"), model("r-api", "reasoning", "dsapi"),
                       model("rc-failover", "reasoning_content", "dsapi", "pool"),
                       model("r-failover", "reasoning", "pool", "dsapi")],
            "failover": {"maxAttempts": 3, "connectTimeout": "1s", "timeToFirstToken": "500ms", "idleTimeout": "500ms",
                         "totalTimeout": "10s", "backoff": "10ms"},
            "circuitBreaker": {"consecutiveFailures": 1000, "errorRatePercent": 100, "minRequests": 100000,
                               "window": "30s", "openDuration": "200ms", "recoverySteps": [50, 100],
                               "recoveryStepDuration": "200ms"},
        },
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "llm"},
              "stringData": {"dsapi": API_KEY}}
    return {"policy": policy, "route": route, "secrets": secret}


@pytest.fixture(scope="module")
def router(emulators: dict[str, Emulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with router_on(tmp_path_factory, "reasoning", config(emulators)) as proc:
        yield proc


async def answer(client: openai.AsyncOpenAI, model: str, messages: list[dict[str, Any]] | None = None
                 ) -> tuple[dict[str, Any], str]:
    """The message (as JSON) of a non-streaming answer, and the provider that served it."""
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=messages or [QUESTION])
    return raw.parse().choices[0].message.model_dump(exclude_none=True), raw.headers["x-llmroute-provider"]


async def deltas(client: openai.AsyncOpenAI, model: str) -> list[dict[str, Any]]:
    """The deltas of a streamed answer, as JSON (nulls included: they are part of the shape)."""
    stream = await client.chat.completions.create(model=model, messages=[QUESTION], stream=True)
    return [c.choices[0].delta.model_dump() async for c in stream if c.choices]


def reasoning_names(items: list[dict[str, Any]]) -> set[str]:
    return {k for item in items for k in item if k.startswith("reasoning")}


THOUGHT = "Let me think about this step by step"


async def test_promised_reasoning_content_from_a_vllm_pool(aclient: openai.AsyncOpenAI,
                                                           emulators: dict[str, Emulator]) -> None:
    message, provider = await answer(aclient, "rc-pool")
    assert provider == "pool"
    assert message["reasoning_content"] == THOUGHT and "reasoning" not in message
    streamed = await deltas(aclient, "rc-pool")
    assert reasoning_names(streamed) == {"reasoning_content"}
    assert "".join(d["reasoning_content"] or "" for d in streamed) == THOUGHT
    assert emulators["pool"].stats.requests["/chat/completions"] == 2


async def test_promised_reasoning_from_deepseeks_api(aclient: openai.AsyncOpenAI) -> None:
    message, provider = await answer(aclient, "r-api")
    assert provider == "dsapi"
    assert message["reasoning"] == THOUGHT and "reasoning_content" not in message
    streamed = await deltas(aclient, "r-api")
    assert reasoning_names(streamed) == {"reasoning"}
    assert "".join(d["reasoning"] or "" for d in streamed) == THOUGHT


@pytest.mark.parametrize(("model", "first", "second"), [("rc-failover", "dsapi", "pool"),
                                                         ("r-failover", "pool", "dsapi")])
async def test_failover_to_the_other_name_keeps_the_shape(aclient: openai.AsyncOpenAI, emulators: dict[str, Emulator],
                                                          model: str, first: str, second: str) -> None:
    plain, provider = await answer(aclient, model)
    streamed = await deltas(aclient, model)
    assert provider == first
    emulators[first].set_faults(status=503)
    after, provider = await answer(aclient, model)
    assert provider == second and after == plain
    assert await deltas(aclient, model) == streamed
    emulators[first].set_faults(first_token_delay=5.0, keepalive_interval=0.1)  # fails over behind sent headers
    assert await deltas(aclient, model) == streamed
    assert emulators[second].stats.requests["/chat/completions"] == 3


async def test_history_with_reasoning_is_accepted_by_deepseeks_api(aclient: openai.AsyncOpenAI,
                                                                    emulators: dict[str, Emulator]) -> None:
    history = [QUESTION, {"role": "assistant", "content": "9.8", "reasoning_content": THOUGHT, "reasoning": THOUGHT},
               {"role": "user", "content": "Why?"}]
    async with openai.AsyncOpenAI(base_url=emulators["dsapi"].url, api_key=API_KEY, max_retries=0) as direct:
        with pytest.raises(openai.BadRequestError, match="reasoning_content"):
            await direct.chat.completions.create(model="deepseek-reasoner", messages=history)
    message, provider = await answer(aclient, "r-api", history)
    assert provider == "dsapi" and message["reasoning"] == THOUGHT


async def test_tool_call_turns_keep_their_reasoning_under_the_upstreams_name(
        aclient: openai.AsyncOpenAI, emulators: dict[str, Emulator]) -> None:
    # a client of a model promising "reasoning" echoes that name; DeepSeek's thinking mode needs it back on tool
    # calls, as reasoning_content
    history = [QUESTION, {"role": "assistant", "content": None, "reasoning": THOUGHT, "tool_calls": TOOL_CALLS},
               {"role": "tool", "tool_call_id": "call_1", "content": "9.8"}]
    async with openai.AsyncOpenAI(base_url=emulators["dsapi"].url, api_key=API_KEY, max_retries=0) as direct:
        with pytest.raises(openai.BadRequestError, match="must be passed back"):
            await direct.chat.completions.create(model="deepseek-reasoner", messages=history)
    message, provider = await answer(aclient, "r-api", history)
    assert provider == "dsapi" and message["reasoning"] == THOUGHT
    message, provider = await answer(aclient, "rc-pool", history)  # vLLM gets it as "reasoning"
    assert provider == "pool" and message["reasoning_content"] == THOUGHT

