"""Drills against the real router process: a rehearsed outage fails over like a real one and sends nothing.

Aspects: a FullOutage drill on deepseek for ``public`` traffic - 0 requests (completions or probes) reach the deepseek
emulator while it is active, clients see 0 errors, the circuit opens, the drill metrics count, ``pii`` still never
reaches CN; once ``until`` passes, probes go out again and traffic returns to deepseek. Then, in cluster mode (a
compiled RouterConfig file, as the operator's ConfigMap holds): a SlowFirstToken drill added and removed by rewriting
the file is picked up live, costs the time-to-first-token budget before failover, and never changes the config hash.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core.compile import compile_route, credential_env

from .conftest import KEYS, Hub, RouterProcess, config_docs, make_client, write_config
from .test_health import wait_for
from .test_streaming import counter

pytestmark = pytest.mark.router
StartRouter = Callable[..., RouterProcess]
CIRCUIT = {"consecutiveFailures": 3, "errorRatePercent": 50, "minRequests": 10, "openDuration": "300ms",
           "recoverySteps": [50, 100], "recoveryStepDuration": "200ms"}
INJECTED = 'llmroute_drill_injections_total{fault="%s",provider="deepseek"}'
ACTIVE = 'llmroute_drill_active{fault="%s",provider="deepseek"}'
DEEPSEEK_OPEN = 'llmroute_circuit_state{backend="deepseek-chat",provider="deepseek",state="open"}'


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def served_by(client: openai.OpenAI, data_class: str = "public") -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "Say hello"}], max_tokens=1,
        extra_headers={"x-llmroute-data-class": data_class})
    raw.parse()
    return raw.headers["x-llmroute-provider"]


def test_full_outage_drill_fails_over_sends_nothing_and_ends_on_time(
    fresh_router: StartRouter, hub: Hub, tmp_path: Path
) -> None:
    docs = config_docs(hub, circuit=CIRCUIT)
    until = time.time() + 5.0
    docs["route"]["spec"]["drills"] = [{"provider": "deepseek", "fault": "FullOutage", "until": rfc3339(until)}]
    router = fresh_router(write_config(tmp_path / "cfg", docs))
    assert time.time() < until - 2.0, "the router took too long to start for this drill's window"
    with make_client(router) as client:
        assert [served_by(client) for _ in range(6)] == ["together"] * 6  # 0 client-visible errors
        assert [served_by(client, "pii") for _ in range(3)] == ["together"] * 3  # pii never had CN to go to
        assert counter(router, DEEPSEEK_OPEN) == 1  # opened by 3 simulated failures, as a real outage would
        assert counter(router, INJECTED % "FullOutage") == 3  # then the open circuit skips deepseek
        assert counter(router, ACTIVE % "FullOutage") == 1
        failovers = 'llmroute_failovers_total{from_provider="deepseek",model="deepseek-chat",reason="connect_error"}'
        assert counter(router, failovers) == 3
        time.sleep(0.5)  # open longer than openDuration: only the (simulated, failing) probes keep it open
        assert counter(router, DEEPSEEK_OPEN) == 1
        assert hub.requests("deepseek") == 0  # not one completion, not one probe

        time.sleep(max(until - time.time(), 0.0))
        wait_for(lambda: served_by(client) == "deepseek", timeout_s=5.0)  # real probes again -> recovering -> back
    assert hub["deepseek"].stats.requests["/models"] >= 1
    assert counter(router, ACTIVE % "FullOutage") == 0
    log = router.log()
    assert "drill started: provider deepseek, fault FullOutage" in log
    assert "drill ended (its end passed): provider deepseek, fault FullOutage" in log
    assert KEYS["deepseek"] not in log


def compiled(docs: dict[str, dict[str, Any]]) -> str:
    route = LLMRoute.model_validate(docs["route"])
    return compile_route(route, ProviderPolicy.model_validate(docs["policy"])).to_json()


def test_drill_added_and_removed_live_in_a_compiled_config_without_a_new_hash(
    fresh_router: StartRouter, hub: Hub, tmp_path: Path
) -> None:
    docs = config_docs(hub, circuit=CIRCUIT)
    config = tmp_path / "cm" / "config.json"  # as the operator's ConfigMap mounts it
    config.parent.mkdir()
    config.write_text(compiled(docs), encoding="utf-8")
    router = fresh_router(config.parent, env={credential_env(name): key for name, key in KEYS.items()})
    hash_before = json.loads(router.get("/readyz")[1])["configHash"]
    with make_client(router) as client:
        assert served_by(client) == "deepseek"

        docs["route"]["spec"]["drills"] = [
            {"provider": "deepseek", "fault": "SlowFirstToken", "until": rfc3339(time.time() + 600)}]
        config.write_text(compiled(docs), encoding="utf-8")
        wait_for(lambda: counter(router, ACTIVE % "SlowFirstToken") == 1)
        completions = hub["deepseek"].stats.requests["/chat/completions"]
        started = time.monotonic()
        assert served_by(client) == "together"
        assert time.monotonic() - started >= 0.5  # the timeToFirstToken budget, spent without sending anything
        assert hub["deepseek"].stats.requests["/chat/completions"] == completions
        assert counter(router, INJECTED % "SlowFirstToken") == 1
        ttft = 'llmroute_failovers_total{from_provider="deepseek",model="deepseek-chat",reason="ttft_timeout"}'
        assert counter(router, ttft) == 1

        del docs["route"]["spec"]["drills"]
        config.write_text(compiled(docs), encoding="utf-8")
        wait_for(lambda: counter(router, ACTIVE % "SlowFirstToken") == 0)
        assert served_by(client) == "deepseek"  # one failure left the circuit closed
    assert json.loads(router.get("/readyz")[1])["configHash"] == hash_before
    assert "drill ended (removed from the LLMRoute): provider deepseek, fault SlowFirstToken" in router.log()
