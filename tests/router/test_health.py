"""Circuits: a failing backend leaves the path and comes back in steps, detected by unbilled probes.

Each test runs its own router (circuits are process state). Aspects: repeated failures open the circuit, after
which requests do not touch that provider at all; probes (GET /models, never a completion) bring it back through
recovery; 401 marks the backend misconfigured at once; 402 takes every backend of the provider out until a probe
succeeds; circuit states are exported as a gauge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from llmroute.emulator import FaultPlan

from .conftest import MESSAGES, Hub, RouterProcess, config_docs, make_client, write_config
from .test_streaming import counter

pytestmark = pytest.mark.router
CIRCUIT = {"consecutiveFailures": 3, "errorRatePercent": 50, "minRequests": 10, "openDuration": "300ms",
           "recoverySteps": [50, 100], "recoveryStepDuration": "200ms"}
StartRouter = Callable[..., RouterProcess]


def completions(hub: Hub, name: str) -> int:
    return hub[name].stats.requests["/chat/completions"]


def provider_of(client: openai.OpenAI, model: str = "deepseek-chat") -> str:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=1)
    raw.parse()
    return raw.headers["x-llmroute-provider"]


def state(router: RouterProcess, backend: str, provider: str = "together") -> float:
    return counter(router, f'llmroute_circuit_state{{backend="{backend}",provider="{provider}",state="open"}}')


def wait_for(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_circuit_opens_then_recovers_through_probes(fresh_router: StartRouter, hub: Hub, tmp_path: Path) -> None:
    router = fresh_router(write_config(tmp_path / "cfg", config_docs(hub, circuit=CIRCUIT)))
    hub["together"].set_faults(status=503)
    with make_client(router) as client:
        assert [provider_of(client) for _ in range(8)] == ["fireworks"] * 8
        assert completions(hub, "together") == 3  # opened after 3 consecutive failures; then left alone
        assert state(router, "deepseek-ai/DeepSeek-V3") == 1
        wait_for(lambda: hub["together"].stats.requests["/models"] >= 2)  # probes, not completions, while open
        assert completions(hub, "together") == 3
        hub["together"].set_faults(FaultPlan())
        wait_for(lambda: state(router, "deepseek-ai/DeepSeek-V3") == 0)
        wait_for(lambda: provider_of(client) == "together")
        healthy = 'llmroute_circuit_state{backend="deepseek-ai/DeepSeek-V3",provider="together",state="healthy"}'
        wait_for(lambda: counter(router, healthy) == 1)
        assert [provider_of(client) for _ in range(3)] == ["together"] * 3


def test_401_marks_backend_misconfigured_at_once(fresh_router: StartRouter, hub: Hub, tmp_path: Path) -> None:
    router = fresh_router(write_config(tmp_path / "cfg", config_docs(hub)))
    hub["together"].set_faults(status=401)
    with make_client(router) as client:
        assert [provider_of(client) for _ in range(3)] == ["fireworks"] * 3
    assert completions(hub, "together") == 1
    assert state(router, "deepseek-ai/DeepSeek-V3") == 1
    assert "misconfigured: unauthorized" in router.log()


def test_402_takes_every_backend_of_the_provider_out(fresh_router: StartRouter, hub: Hub, tmp_path: Path) -> None:
    router = fresh_router(write_config(tmp_path / "cfg", config_docs(hub)))
    hub["together"].set_faults(status=402)
    with make_client(router) as client:
        assert provider_of(client) == "fireworks"
        # deepseek-reasoner's only internal-class backend is together's other model: out too, without a call.
        with pytest.raises(openai.InternalServerError) as info:
            provider_of(client, "deepseek-reasoner")
        assert "balance_exhausted" in info.value.response.json()["error"]["message"]
        assert completions(hub, "together") == 1
        assert state(router, "deepseek-ai/deepseek-reasoner") == 1
        hub["together"].set_faults(FaultPlan())  # balance topped up: the next probe brings it back
        wait_for(lambda: state(router, "deepseek-ai/deepseek-reasoner") == 0)
        assert provider_of(client, "deepseek-reasoner") == "together"
