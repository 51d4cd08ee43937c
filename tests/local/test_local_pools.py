"""Local mode's pools: the compressed timers and the per-phase replica range (pure), and on loopback the pool's
pods following the operator's decision, the endpoints file, the demand endpoint and the watched-provider prober."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from llmroute.api.model_pool import ModelPool
from llmroute.api.provider_policy import HealthCheck, ProviderState
from llmroute.core.pools import watched_keys
from llmroute.documents import load
from llmroute.emulator import Emulator, FaultPlan
from llmroute.local import pools as lp
from llmroute.local import stack as stk
from llmroute.local.pools import EndpointsFile, LocalPool, PoolTimings, pool_timings
from llmroute.local.report import replica_range
from llmroute.local.signals import DemandEndpoint, LocalProber, ProbeTarget
from tests.conftest import EXAMPLE

KEY = "llm-serving/deepseek-v3"
WATCHED = "deepseek-residency/deepseek"


def example_pool() -> ModelPool:
    return load([EXAMPLE]).pools[("llm-serving", "deepseek-v3")]


# --- pure ------------------------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_examples_timers_fit_a_90s_drill() -> None:
    t = pool_timings(example_pool().spec, time_scale=10, phase_s=15)  # 90 s over six phases
    # 30m hold, 5m delay, 30m idle, 3m drain, 20 s cold start: /10, then at most a quarter of the phase
    assert (t.hold_after_recovery_s, t.scale_down_delay_s, t.idle_to_zero_s, t.drain_timeout_s) == (3.75,) * 4
    assert t.startup_s == 2.0
    assert t.interval_s == 0.375  # 5s / 10 = 0.5, but at most a tenth of the down timers
    assert "prewarm hold 3.75s" in t.describe() and "start-up 2s" in t.describe()


@pytest.mark.unit
def test_a_short_drill_shortens_timers_and_the_interval_with_them() -> None:
    t = pool_timings(example_pool().spec, time_scale=10, phase_s=5)  # the 30 s test drill
    assert t.hold_after_recovery_s == t.scale_down_delay_s == t.idle_to_zero_s == t.startup_s == 1.25
    assert t.interval_s == 0.125  # ten observations per down timer
    slow = pool_timings(example_pool().spec, time_scale=1, phase_s=3600)
    assert slow.scale_down_delay_s == 300 and slow.hold_after_recovery_s == 900  # 5m as written; 30m capped
    assert slow.interval_s == 5
    eager = example_pool().spec.model_copy(update={"scaling": example_pool().spec.scaling.model_copy(
        update={"scale_down_delay": "0s"})})
    assert pool_timings(eager, time_scale=10, phase_s=5).interval_s == lp.MIN_INTERVAL_S


@pytest.mark.unit
def test_the_scaler_gets_the_pools_settings(tmp_path: Path) -> None:
    spec = example_pool().spec
    t = pool_timings(spec, time_scale=10, phase_s=15)
    policy = LocalPool(example_pool(), "vllm", t, EndpointsFile(tmp_path / "endpoints.json", (KEY,)),
                       health=lambda _: ProviderState.HEALTHY, held=lambda _: 0).policy
    assert (policy.min_replicas, policy.max_replicas, policy.prewarm_replicas) == (0, 4, 2)
    assert policy.target_waiting_per_replica == 4 and policy.kv_cache_ceiling == pytest.approx(0.85)
    assert (policy.scale_down_delay_s, policy.idle_to_zero_s, policy.hold_after_recovery_s) == (3.75,) * 3
    assert watched_keys(spec) == (WATCHED,)


@pytest.mark.unit
def test_replica_range_counts_what_was_in_force_and_every_change() -> None:
    history = [(-0.5, 0), (7.0, 2), (12.0, 1), (20.0, 0)]
    assert replica_range(history, 0, 5) == {"min": 0, "max": 0}
    assert replica_range(history, 5, 10) == {"min": 0, "max": 2}
    assert replica_range(history, 10, 15) == {"min": 1, "max": 2}  # 2 in force at the start
    assert replica_range(history, 15, 20) == {"min": 1, "max": 1}  # a change at the end belongs to the next phase
    assert replica_range(history, 20, 25) == {"min": 0, "max": 0}  # a change at the start is in force
    assert replica_range([], 0, 5) == {"min": 0, "max": 0}


def test_endpoints_file_is_what_the_router_reads(tmp_path: Path) -> None:
    f = EndpointsFile(tmp_path / "e.json", (KEY,))
    assert json.loads(f.path.read_text()) == {KEY: []}
    mtimes = [f.path.stat().st_mtime_ns]
    for urls in (["http://127.0.0.1:2"], ["http://127.0.0.1:2", "http://127.0.0.1:1"], []):
        f.set(KEY, urls)
        mtimes.append(f.path.stat().st_mtime_ns)
        assert json.loads(f.path.read_text()) == {KEY: sorted(urls)}
    assert mtimes == sorted(set(mtimes))  # every write is newer, even within one filesystem tick
    f.set(KEY, [])
    assert f.path.stat().st_mtime_ns == mtimes[-1]  # nothing changed: no write


# --- on loopback -----------------------------------------------------------------------------------------------------

FAST = PoolTimings(interval_s=0.05, scale_down_delay_s=0.3, idle_to_zero_s=0.3, hold_after_recovery_s=0.3,
                   startup_s=0.2, drain_timeout_s=1.0)


async def until(check: Callable[[], bool], within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not check():  # noqa: ASYNC110 - polling what other tasks change, as a person watching would
            await asyncio.sleep(0.02)


@pytest.fixture()
async def running_pool(tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[LocalPool, dict[str, Any]]]:
    monkeypatch.setattr(lp, "DRAIN_GRACE_S", 0.1)
    knobs: dict[str, Any] = {"state": ProviderState.HEALTHY, "held": 0}
    endpoints = EndpointsFile(tmp_path / "e.json", (KEY,))
    pool = LocalPool(example_pool(), "vllm", FAST, endpoints, health=lambda key: knobs["state"],
                     held=lambda key: knobs["held"])
    task = asyncio.create_task(pool.run())
    try:
        yield pool, knobs
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pool.close()


def listed(pool: LocalPool) -> list[str]:
    return list(json.loads(pool.endpoints.path.read_text())[KEY])


@pytest.mark.router
async def test_the_pool_prewarms_lists_ready_pods_serves_and_drains_to_zero(
    running_pool: tuple[LocalPool, dict[str, Any]],
) -> None:
    pool, knobs = running_pool
    await asyncio.sleep(0.2)
    assert pool.replicas == 0 and pool.decision is not None and pool.decision.reason == "Steady"
    knobs["state"] = ProviderState.DOWN
    await until(lambda: pool.replicas == 2)
    assert pool.desired == 2 and pool.decision is not None and pool.decision.reason == "Prewarm"
    assert pool.decision.message == f"prewarm: {WATCHED} is Down (>= 2 replicas)"
    assert listed(pool) == []  # loading: the port refuses, nothing is listed
    await until(lambda: len(listed(pool)) == 2)
    assert pool.ready == 2
    body = {"model": "deepseek-ai/DeepSeek-V3", "messages": [{"role": "user", "content": "hi"}],
            "user": "llmroute-local/pii"}
    async with aiohttp.ClientSession() as http, http.post(listed(pool)[0] + "/v1/chat/completions", json=body) as r:
        assert r.status == 200
        answer = await r.json()
    assert "reasoning_content" not in answer["choices"][0]["message"]
    assert pool.users() == {"llmroute-local/pii": 1} and pool.requests() == 1
    knobs["state"] = ProviderState.HEALTHY  # recovered: the hold, then down one step at a time, then idle to 0
    await until(lambda: pool.replicas == 0)
    assert listed(pool) == []
    counts = [n for _, n in pool.history]
    assert counts[0] == 0 and max(counts) == 2 and counts[-1] == 0 and 1 in counts
    assert pool.users() == {"llmroute-local/pii": 1}  # what closed pods received still counts


@pytest.mark.router
async def test_requests_held_at_a_router_start_a_pool_at_zero(
    running_pool: tuple[LocalPool, dict[str, Any]],
) -> None:
    pool, knobs = running_pool
    knobs["held"] = 3
    pool.wake()
    await until(lambda: pool.replicas == 1, within_s=1.0)
    assert pool.decision is not None and pool.decision.reason == "Demand"


@pytest.mark.router
async def test_demand_endpoint_sums_router_reports_and_wakes_the_pool() -> None:
    woken: list[str] = []
    endpoint = await DemandEndpoint(frozenset({KEY}), woken.append).start()
    try:
        async with aiohttp.ClientSession() as http:
            report = {"router": "apps/deepseek/r1", "pools": {KEY: 2, "other/pool": 5}}
            async with http.post(endpoint.url, json=report) as r:
                assert r.status == 204
            assert endpoint.held(KEY) == 2 and woken == [KEY]
            async with http.post(endpoint.url, json={**report, "pools": {KEY: 3}}) as r:
                assert r.status == 204
            assert endpoint.held(KEY) == 3 and woken == [KEY]  # already > 0: no second wake
            async with http.post(endpoint.url, data=b"{") as r:
                assert r.status == 400 and "JSON" in (await r.json())["error"]
    finally:
        await endpoint.close()


@pytest.mark.router
async def test_the_prober_uses_the_operators_hysteresis() -> None:
    async with Emulator("deepseek", api_key="k") as emu:
        check = HealthCheck(failure_threshold=3, success_threshold=2, timeout="1s")
        prober = LocalProber((ProbeTarget(WATCHED, emu.url + check.path, "k", check, 0.02),))
        task = asyncio.create_task(prober.run())
        try:
            await until(lambda: prober.state(WATCHED) is ProviderState.HEALTHY)
            emu.set_faults(FaultPlan(refuse=True))
            await until(lambda: prober.state(WATCHED) is ProviderState.DOWN)
            assert prober.health[WATCHED].consecutive_failures == 3
            emu.set_faults(FaultPlan())
            await until(lambda: prober.state(WATCHED) is ProviderState.HEALTHY)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert prober.state("nobody/else") is ProviderState.UNKNOWN


@pytest.mark.router
async def test_a_request_only_the_pool_may_serve_is_held_until_the_pool_starts_for_it(tmp_path: Path) -> None:
    """The router's demand report reaches local mode's endpoint (``$LLMROUTE_DEMAND_URL``), the pool starts from
    zero, the router finds the pod in the endpoints file (``$LLMROUTE_POOL_ENDPOINTS_FILE``) and serves from it."""
    for f in EXAMPLE.glob("*.yaml"):  # without bedrock, phi may only go to our own GPUs
        lines = f.read_text().splitlines(keepends=True)
        (tmp_path / f.name).write_text("".join(line for line in lines if "provider: bedrock" not in line))
    async with stk.running(tmp_path, time_scale=10, phase_s=10) as st:
        pool = st.pools["vllm"]
        assert pool.replicas == 0
        body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}],
                "user": "llmroute-local/phi"}
        async with aiohttp.ClientSession() as http, http.post(
                st.router_url + "/v1/chat/completions", json=body, headers={"x-llmroute-data-class": "phi"}) as r:
            assert r.status == 200
            assert r.headers["x-llmroute-provider"] == "vllm"
        assert [n for _, n in pool.history] == [0, 1]
        assert pool.users() == {"llmroute-local/phi": 1}
