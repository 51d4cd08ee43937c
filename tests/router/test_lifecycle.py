"""How the router process stops: SIGTERM drains through the real process, with the openai SDK as the client.

Aspects: readiness drops first (``/readyz`` 503 at the signal while the port still serves new requests for
``$LLMROUTE_DRAIN_DELAY``), then new connections are refused while every in-flight request and stream - streaming and
not - runs to its last token, and the process exits 0; a stream longer than ``$LLMROUTE_DRAIN_TIMEOUT`` is cut at that
deadline and the process still exits 0 within it; the operator's Deployment gives the pod a preStop sleep (it leaves the
Service's endpoints before the signal) and a grace period longer than sleep + drain, so the kubelet never SIGKILLs a
draining router.
Figures go to ``sigterm-drain`` (:mod:`tests.figures`).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from llmroute.router.server import DRAIN_TIMEOUT_S, drain_timings
from tests.figures import record
from tests.unit.test_manifests import build

from .conftest import Hub, RouterProcess, make_aclient

pytestmark = pytest.mark.router
StartRouter = Callable[..., RouterProcess]
PROMPT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]
TOKENS = 30
TOKEN_INTERVAL_S = 0.15  # each answer takes ~4.5 s: the drain has real work to wait for


def refused(port: int) -> bool:
    """A new TCP connection to the router is refused (the listener is closed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


async def answer(client: openai.AsyncOpenAI, stream: bool, tokens: int = TOKENS) -> int:
    """One chat completion of ``tokens`` to its end; the number of content words received."""
    if stream:
        chunks = await client.chat.completions.create(
            model="deepseek-chat",
            messages=PROMPT,
            max_tokens=tokens,
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    else:
        done = await client.chat.completions.create(
            model="deepseek-chat",
            messages=PROMPT,
            max_tokens=tokens,
        )
        text = done.choices[0].message.content or ""
    return len(text.split())


async def wait_arrived(hub: Hub, provider: str, count: int, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while hub[provider].stats.requests["/chat/completions"] < count:
        assert time.monotonic() < deadline, f"{count} requests never reached {provider}"
        await asyncio.sleep(0.02)


async def test_sigterm_drops_readiness_first_then_drains_streams_and_requests(
    fresh_router: StartRouter, hub: Hub, config_dir: Path
) -> None:
    delay = 1.0
    router = fresh_router(config_dir, env={"LLMROUTE_DRAIN_DELAY": str(delay)})
    hub["together"].set_faults(token_interval=TOKEN_INTERVAL_S)
    in_flight = 16
    async with make_aclient(router) as client:
        calls = [asyncio.create_task(answer(client, stream=i % 2 == 0)) for i in range(in_flight)]
        await wait_arrived(hub, "together", in_flight)
        signalled = time.monotonic()
        router.proc.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(router.get, "/readyz")
        not_ready_after_s = time.monotonic() - signalled
        assert status[0] == 503  # the load balancer's cue, while the port still serves
        async with make_aclient(router) as late:  # a request that arrives during the delay is served in full
            assert await answer(late, stream=True, tokens=2) == 2
        assert time.monotonic() - signalled < delay and not refused(router.port)  # still accepting, not ready
        deadline = time.monotonic() + delay + 2
        while not refused(router.port):
            assert time.monotonic() < deadline, "the listener stayed open after the drain delay"
            await asyncio.sleep(0.05)
        refused_after_s = time.monotonic() - signalled
        still_running = sum(not c.done() for c in calls)
        words = await asyncio.gather(*calls)
    exit_code = await asyncio.to_thread(router.proc.wait, 10)
    stopped_after_s = time.monotonic() - signalled
    assert words == [TOKENS] * in_flight  # every stream and request ran to its last token
    assert still_running > 0  # the refusal was checked while answers were still being relayed
    assert refused_after_s >= delay
    assert exit_code == 0
    assert stopped_after_s < delay + DRAIN_TIMEOUT_S
    record(
        "sigterm-drain",
        {
            "inFlightAtSignal": in_flight,
            "completedInFull": sum(w == TOKENS for w in words),
            "notReadyAfterS": not_ready_after_s,
            "refusedAfterS": refused_after_s,
            "drainDelayS": delay,
            "stoppedAfterS": stopped_after_s,
            "exitCode": exit_code,
        },
    )


async def test_a_stream_longer_than_the_drain_timeout_is_cut_and_the_process_exits_0(
    fresh_router: StartRouter, hub: Hub, config_dir: Path
) -> None:
    timeout = 1.5
    router = fresh_router(config_dir, env={"LLMROUTE_DRAIN_TIMEOUT": str(timeout)})
    hub["together"].set_faults(token_interval=0.3)  # 100 tokens: 30 s, far past the drain timeout
    async with make_aclient(router) as client:
        chunks = await client.chat.completions.create(
            model="deepseek-chat",
            messages=PROMPT,
            max_tokens=100,
            stream=True,
        )
        received = 0
        signalled = 0.0
        with pytest.raises(Exception) as cut:  # httpx's or the SDK's: the stream ends without [DONE]
            async for chunk in chunks:
                received += bool(chunk.choices and chunk.choices[0].delta.content)
                if received == 1:
                    signalled = time.monotonic()
                    router.proc.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(router.proc.wait, 10)
    stopped_after_s = time.monotonic() - signalled
    assert exit_code == 0
    assert 0 < received < 100, cut.value
    assert timeout <= stopped_after_s < timeout + 5
    record("sigterm-drain", {"drainTimeoutS": timeout, "cutStreamStoppedAfterS": stopped_after_s})


def test_the_router_pod_leaves_the_endpoints_before_sigterm_and_drains_within_its_grace() -> None:
    """The operator's Deployment: a preStop sleep (the endpoints' propagation) plus the router's default drain fit
    in terminationGracePeriodSeconds, so the kubelet never SIGKILLs a draining router."""
    pod = next(o for o in build().objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    sleep = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = pod["terminationGracePeriodSeconds"]
    assert sleep > 0
    assert sleep + DRAIN_TIMEOUT_S < grace
    record("sigterm-drain", {"preStopSleepS": sleep, "defaultDrainTimeoutS": DRAIN_TIMEOUT_S, "podGraceS": grace})


async def test_a_second_signal_ends_the_drain_delay(fresh_router: StartRouter, config_dir: Path) -> None:
    router = fresh_router(config_dir, env={"LLMROUTE_DRAIN_DELAY": "60"})
    router.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert (await asyncio.to_thread(router.get, "/readyz"))[0] == 503  # not ready, still serving
    signalled = time.monotonic()
    router.proc.send_signal(signal.SIGINT)  # Ctrl-C again: no more waiting
    assert await asyncio.to_thread(router.proc.wait, 10) == 0
    assert time.monotonic() - signalled < 5


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (0.0, DRAIN_TIMEOUT_S)),
        ({"LLMROUTE_DRAIN_DELAY": "5", "LLMROUTE_DRAIN_TIMEOUT": "12.5"}, (5.0, 12.5)),
        ({"LLMROUTE_DRAIN_DELAY": "soon", "LLMROUTE_DRAIN_TIMEOUT": "-1"}, (0.0, DRAIN_TIMEOUT_S)),
    ],
    ids=["defaults", "set", "unusable-values-keep-defaults"],
)
def test_drain_timings_from_the_environment(
    env: dict[str, str], expected: tuple[float, float], caplog: pytest.LogCaptureFixture
) -> None:
    assert drain_timings(env) == expected
    assert ("LLMROUTE_DRAIN_DELAY must be seconds" in caplog.text) == (env.get("LLMROUTE_DRAIN_DELAY") == "soon")
