"""ModelPools in the real router process: pods found through the endpoints file, picked by load from their vLLM
metrics, requests held while a pool has no ready pod, and the demand signal.

Aspects: a held request is served once a pod that starts after it becomes ready (non-streaming and streaming); the
hold is bounded (503 with Retry-After after ``coldStart.maxWait``) and counted (``maxRequests``: beyond, 503 at
once); a client that leaves while held frees its slot; a request with another allowed backend is never held; a pod
absent from discovery, or whose port refuses, is never sent to; with one pod queueing, load-aware picking sends
the requests to the idle one; the demand POSTs (exact JSON, at once, every second, a final 0); pools start and stop
with config reloads; an open pool backend is probed on a ready pod; discovery by DNS and by the endpoints file; the
scrape reads only vLLM's request gauges.

The pods are :class:`llmroute.emulator.vllm.VllmPod` on loopback, in the test's event loop; one router process is
shared by the module, with ``LLMROUTE_POOL_ENDPOINTS_FILE`` (rewritten per test) and ``LLMROUTE_DEMAND_URL`` (a small
aiohttp receiver on the emulators' loop). ``phi`` may go only to the pool (self-hosted exempt from the BAA),
``internal`` to the pool first and ``together`` next.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from llmroute.core.router_config import PoolTarget
from llmroute.core.scaling import PodLoad, parse_vllm_metrics
from llmroute.emulator.vllm import EngineParams, VllmConfig, VllmPod
from llmroute.router.pod_discovery import DnsDiscovery, FileDiscovery
from llmroute.router.pools import gauge_lines

from .conftest import KEYS, Hub, RouterProcess, make_aclient, write_config

pytestmark = pytest.mark.router

POOL = "llm/gpu"
MODEL = "Qwen/Qwen3-8B"  # the emulated pods' served name
MAX_WAIT_S = 3.0
MAX_HELD = 2
PHI = {"x-llmroute-data-class": "phi"}
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


def pool_docs(hub: Hub) -> dict[str, dict[str, Any]]:
    policy = {
        "apiVersion": "llmroute.io/v1alpha1", "kind": "ProviderPolicy", "metadata": {"name": "pools"},
        "spec": {
            "defaultDataClass": "internal",
            "providers": [
                {"name": "together", "endpoint": hub["together"].url, "jurisdiction": "US",
                 "dataUse": {"training": "NotUsed", "retention": "Zero"},
                 "credentials": {"secretRef": {"name": "provider-keys", "namespace": "llm", "key": "together"}}},
                {"name": "gpu", "pool": {"name": "gpu", "namespace": "llm"}, "jurisdiction": "US"},
            ],
            "dataClasses": [
                {"name": "internal", "allow": {"training": "NotUsed"}},
                {"name": "phi", "allow": {"requireCertifications": ["hipaa-baa"], "selfHostedExempt": True}},
            ],
        },
    }
    route = {
        "apiVersion": "llmroute.io/v1alpha1", "kind": "LLMRoute", "metadata": {"name": "pools", "namespace": "llm"},
        "spec": {
            "policyRef": {"name": "pools"},
            "models": [{"name": "chat", "backends": [{"provider": "gpu", "model": MODEL, "priority": 0},
                                                     {"provider": "together", "model": "deepseek-chat",
                                                      "priority": 1}]}],
            "failover": {"maxAttempts": 3, "connectTimeout": "1s", "timeToFirstToken": "2s", "idleTimeout": "2s",
                         "totalTimeout": "10s", "backoff": "10ms"},
            "circuitBreaker": {"consecutiveFailures": 1000, "errorRatePercent": 100, "minRequests": 100000,
                               "window": "30s", "openDuration": "200ms", "recoverySteps": [50, 100],
                               "recoveryStepDuration": "200ms"},
            "coldStart": {"maxWait": f"{MAX_WAIT_S:g}s", "maxRequests": MAX_HELD},
        },
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "provider-keys", "namespace": "llm"},
              "stringData": {"together": KEYS["together"]}}
    return {"policy": policy, "route": route, "secrets": secret}


class DemandReceiver:
    """The operator's demand endpoint, on the emulators' loop: every POST with its arrival time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.posts: list[tuple[float, str, dict[str, Any]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/demand", self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1/demand"

    async def _receive(self, request: web.Request) -> web.Response:
        self.posts.append((time.monotonic(), request.content_type, json.loads(await request.read())))
        return web.json_response({"ok": True})

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Endpoints:
    """The endpoints file the router discovers pods from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set()

    def set(self, *pods: VllmPod | str) -> None:
        urls = [p if isinstance(p, str) else p.base_url for p in pods]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({POOL: urls}), encoding="utf-8")
        tmp.replace(self.path)


@pytest.fixture(scope="module")
def demand(hub: Hub) -> Iterator[DemandReceiver]:
    receiver = DemandReceiver(hub)
    hub.call(receiver.start())
    yield receiver
    hub.call(receiver.close())


@pytest.fixture(scope="module")
def pool_router(hub: Hub, demand: DemandReceiver,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RouterProcess, Endpoints]]:
    folder = tmp_path_factory.mktemp("pools")
    endpoints = Endpoints(folder / "endpoints.json")
    config = write_config(folder / "config", pool_docs(hub))
    proc = RouterProcess([str(config)], folder / "router.log",
                         env={"LLMROUTE_POOL_ENDPOINTS_FILE": str(endpoints.path), "LLMROUTE_DEMAND_URL": demand.url})
    yield proc, endpoints
    proc.stop()


@pytest.fixture()
async def router(pool_router: tuple[RouterProcess, Endpoints], demand: DemandReceiver) -> AsyncIterator[RouterProcess]:
    proc, endpoints = pool_router
    endpoints.set()
    await until(proc, lambda m: sample(m, "llmroute_pool_ready_pods") == 0 and sample(m, "llmroute_pool_held_requests")
                == 0)
    demand.posts.clear()
    yield proc


@pytest.fixture()
def endpoints(pool_router: tuple[RouterProcess, Endpoints]) -> Endpoints:
    return pool_router[1]


@pytest.fixture()
async def aclient(router: RouterProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    async with make_aclient(router) as c:
        yield c


@pytest.fixture()
async def pods() -> AsyncIterator[list[VllmPod]]:
    started: list[VllmPod] = []
    yield started
    for pod in started:
        await pod.close()


async def start_pod(pods: list[VllmPod], *, startup_delay_s: float = 0.0, **params: Any) -> VllmPod:
    pod = VllmPod(VllmConfig(startup_delay_s=startup_delay_s, answer_tokens=4),
                  EngineParams(**params) if params else None)
    pods.append(await pod.start())
    return pod


def sample(text: str, name: str, **labels: str) -> float:
    """The value of ``name{pool="llm/gpu", **labels}`` in a Prometheus exposition (-1 if absent)."""
    wanted = {"pool": POOL, **labels}
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if match and match.group(1) == name and dict(re.findall(r'(\w+)="([^"]*)"', match.group(2))) == wanted:
            return float(match.group(3))
    return -1.0


async def until(router: RouterProcess, check: Any, timeout_s: float = 5.0) -> str:
    """Poll the router's /metrics until ``check(text)``; returns the text."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = await asyncio.to_thread(router.metrics)
        if check(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s:\n"
                                 + "\n".join(ln for ln in text.splitlines() if ln.startswith("llmroute_pool")))
        await asyncio.sleep(0.05)


def held(n: int) -> Any:
    return lambda m: sample(m, "llmroute_pool_held_requests") == n


def ready_pods(n: int) -> Any:
    return lambda m: sample(m, "llmroute_pool_ready_pods") == n


def chats(pod: VllmPod) -> int:
    return pod.state.requests["/v1/chat/completions"]


async def phi_chat(client: openai.AsyncOpenAI, **kw: Any) -> tuple[str, str]:
    raw = await client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES,
                                                                 extra_headers=PHI, **kw)
    return raw.headers["x-llmroute-provider"], raw.parse().choices[0].message.content or ""


@pytest.mark.parametrize("stream", [False, True])
async def test_held_request_is_served_once_a_pod_becomes_ready(router: RouterProcess, aclient: openai.AsyncOpenAI,
                                                               endpoints: Endpoints, pods: list[VllmPod],
                                                               stream: bool) -> None:
    async def request() -> str:
        if not stream:
            return (await phi_chat(aclient))[0]
        raw = await aclient.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES,
                                                                      extra_headers=PHI, stream=True)
        assert [c async for c in raw.parse()]
        return raw.headers["x-llmroute-provider"]

    task = asyncio.create_task(request())
    await until(router, held(1))
    pod = await start_pod(pods, startup_delay_s=0.3)  # the port refuses until loaded, as vLLM's does
    endpoints.set(pod)
    assert await asyncio.wait_for(task, MAX_WAIT_S) == "gpu"
    assert chats(pod) == 1
    text = await until(router, held(0))
    assert sample(text, "llmroute_pool_hold_total", outcome="served") >= 1


async def test_hold_is_bounded_then_503_with_retry_after(router: RouterProcess, aclient: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as err:
        await phi_chat(aclient)
    waited = time.monotonic() - started
    assert MAX_WAIT_S <= waited < MAX_WAIT_S + 1.0
    assert err.value.status_code == 503 and err.value.response.headers["retry-after"] == "5"
    body = err.value.response.json()["error"]
    assert body["code"] == "no_healthy_backend"
    assert "pool llm/gpu is starting (no pod was ready within coldStart.maxWait 3s)" in body["message"]
    text = await until(router, held(0))
    assert sample(text, "llmroute_pool_hold_total", outcome="timeout") >= 1


async def test_beyond_max_requests_is_refused_at_once(router: RouterProcess, aclient: openai.AsyncOpenAI,
                                                      endpoints: Endpoints, pods: list[VllmPod]) -> None:
    holding = [asyncio.create_task(phi_chat(aclient)) for _ in range(MAX_HELD)]
    await until(router, held(MAX_HELD))
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as err:
        await phi_chat(aclient)
    assert time.monotonic() - started < 0.5
    assert err.value.response.headers["retry-after"] == "5"
    assert "already holds coldStart.maxRequests 2 requests" in err.value.response.json()["error"]["message"]
    endpoints.set(await start_pod(pods))  # the held ones are still served
    assert [p for p, _ in await asyncio.gather(*holding)] == ["gpu"] * MAX_HELD
    text = await asyncio.to_thread(router.metrics)
    assert sample(text, "llmroute_pool_hold_total", outcome="overflow") >= 1


async def test_a_client_that_leaves_while_held_frees_its_slot(router: RouterProcess) -> None:
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0,
                                  timeout=0.5) as impatient:
        with pytest.raises(openai.APITimeoutError):
            await phi_chat(impatient)
    text = await until(router, held(0), timeout_s=1.0)  # well before maxWait
    assert sample(text, "llmroute_pool_hold_total", outcome="client_closed") >= 1


async def test_a_request_with_another_allowed_backend_is_never_held(router: RouterProcess, aclient: openai.AsyncOpenAI,
                                                                    hub: Hub) -> None:
    before = await asyncio.to_thread(router.metrics)
    started = time.monotonic()
    raw = await aclient.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)  # internal
    assert time.monotonic() - started < 0.5
    assert (raw.headers["x-llmroute-provider"], raw.headers["x-llmroute-attempts"]) == ("together", "1")
    assert hub.requests("together") == 1
    after = await asyncio.to_thread(router.metrics)
    for outcome in ("served", "timeout", "overflow", "client_closed"):
        assert sample(after, "llmroute_pool_hold_total", outcome=outcome) == sample(
            before, "llmroute_pool_hold_total", outcome=outcome)


async def test_never_sends_to_a_pod_absent_from_discovery_or_refusing(router: RouterProcess,
                                                                       aclient: openai.AsyncOpenAI,
                                                                       endpoints: Endpoints,
                                                                       pods: list[VllmPod]) -> None:
    a, b, hidden = await start_pod(pods), await start_pod(pods), await start_pod(pods)
    with socket.socket() as s:  # a reserved port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        refusing = f"http://127.0.0.1:{s.getsockname()[1]}"
        endpoints.set(a, b, refusing)
        await until(router, ready_pods(2))
        results = await asyncio.gather(*(phi_chat(aclient) for _ in range(8)))
    assert {p for p, _ in results} == {"gpu"}
    assert chats(a) + chats(b) == 8 and chats(hidden) == 0
    endpoints.set(a)  # b leaves discovery
    await until(router, ready_pods(1))
    for _ in range(4):
        await phi_chat(aclient)
    assert chats(a) + chats(b) == 12 and chats(hidden) == 0
    assert chats(a) >= 4


async def test_load_aware_picks_send_requests_to_the_idle_pod(router: RouterProcess, aclient: openai.AsyncOpenAI,
                                                              endpoints: Endpoints, pods: list[VllmPod]) -> None:
    idle = await start_pod(pods, token_interval_s=0.01)
    queued = await start_pod(pods, max_num_seqs=1, token_interval_s=0.5)  # one sequence runs for 1.5 s
    async with openai.AsyncOpenAI(base_url=queued.url, api_key="unused", max_retries=0) as direct:
        backlog = [asyncio.create_task(direct.chat.completions.create(model=MODEL, messages=MESSAGES))
                   for _ in range(3)]  # another router's traffic: 1 running, 2 waiting
        endpoints.set(idle, queued)
        await until(router, ready_pods(2))
        for _ in range(10):
            await phi_chat(aclient)
        for task in backlog:
            task.cancel()
    assert chats(idle) >= 9, (chats(idle), chats(queued))


async def test_demand_signal(router: RouterProcess, aclient: openai.AsyncOpenAI, endpoints: Endpoints,
                             pods: list[VllmPod], demand: DemandReceiver) -> None:
    sent_at = time.monotonic()
    task = asyncio.create_task(phi_chat(aclient))
    await until(router, held(1))
    # three posts while held (at once, then each second), then the pod comes, well within maxWait (3 s)
    await until(router, lambda _: sum(post[0] > sent_at for post in demand.posts) >= 3, timeout_s=2.6)
    endpoints.set(await start_pod(pods))
    assert (await task)[0] == "gpu"
    await asyncio.sleep(0.3)
    posts = [post for post in demand.posts if post[0] > sent_at]
    me = f"llm/pools/{socket.gethostname()}"
    assert all(content_type == "application/json" for _, content_type, _ in posts)
    bodies = [body for _, _, body in posts]
    assert bodies[0] == {"router": me, "pools": {POOL: 1}}
    assert bodies[-1] == {"router": me, "pools": {POOL: 0}}
    assert all(body == {"router": me, "pools": {POOL: 1}} for body in bodies[:-1])
    times = [t for t, _, _ in posts[:-1]]
    assert times[0] - sent_at < 0.5  # at once
    assert len(times) >= 3  # then every second while held (2.2 s + the pod's discovery)
    assert all(0.8 < later - earlier < 1.5 for earlier, later in itertools.pairwise(times))


async def test_picking_reads_only_the_gauges_it_needs(pods: list[VllmPod]) -> None:
    pod = await start_pod(pods, max_num_seqs=1, token_interval_s=0.5)
    async with openai.AsyncOpenAI(base_url=pod.url, api_key="unused", max_retries=0) as direct:
        backlog = [asyncio.create_task(direct.chat.completions.create(model=MODEL, messages=MESSAGES))
                   for _ in range(3)]
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as session, session.get(pod.base_url + "/metrics") as resp:
            exposition = await resp.read()
        for task in backlog:
            task.cancel()
    selected = gauge_lines(exposition)
    assert len(selected) < len(exposition) / 20
    assert parse_vllm_metrics(selected.decode()) == parse_vllm_metrics(exposition.decode())
    assert parse_vllm_metrics(selected.decode()) == PodLoad(ready=True, waiting=2.0, running=1.0,
                                                           kv_cache=parse_vllm_metrics(selected.decode()).kv_cache)


async def test_dns_discovery_resolves_the_headless_service_name() -> None:
    target = PoolTarget(name="gpu", namespace="llm", pods_host="localhost", port=8000)
    found = await DnsDiscovery().addresses(target)
    assert found is not None and "http://127.0.0.1:8000" in found
    assert all(a in ("http://127.0.0.1:8000", "http://[::1]:8000") for a in found)


async def test_file_discovery_rereads_on_change_and_keeps_the_last_good_content(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    target = PoolTarget(name="gpu", namespace="llm", pods_host="unused", port=8000)
    files = FileDiscovery(str(path))
    assert await files.addresses(target) == frozenset()  # no file yet: no pods
    path.write_text(json.dumps({POOL: ["http://127.0.0.1:1/"], "llm/other": []}))
    assert await files.addresses(target) == {"http://127.0.0.1:1"}
    path.write_text("{not json")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert await files.addresses(target) == {"http://127.0.0.1:1"}
    path.write_text(json.dumps({"llm/other": ["http://127.0.0.1:2"]}))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert await files.addresses(target) == frozenset()


async def test_pools_follow_config_reloads(hub: Hub, tmp_path: Path, fresh_router: Any, pods: list[VllmPod]) -> None:
    docs = pool_docs(hub)
    route = docs["route"]["spec"]
    pooled = route["models"][0]["backends"]
    route["models"][0]["backends"] = pooled[1:]  # together only: the pool is not in the config
    folder = write_config(tmp_path / "config", docs)
    endpoints = Endpoints(tmp_path / "endpoints.json")
    proc = fresh_router(folder, env={"LLMROUTE_POOL_ENDPOINTS_FILE": str(endpoints.path)})
    assert sample(await asyncio.to_thread(proc.metrics), "llmroute_pool_ready_pods") == -1
    pod = await start_pod(pods)
    endpoints.set(pod)
    route["models"][0]["backends"] = pooled
    write_config(folder, docs)
    await until(proc, ready_pods(1))
    async with make_aclient(proc) as client:
        assert (await phi_chat(client))[0] == "gpu"
    route["models"][0]["backends"] = pooled[1:]
    write_config(folder, docs)
    await until(proc, lambda m: sample(m, "llmroute_pool_ready_pods") == -1)


async def test_an_open_pool_backend_is_probed_on_a_ready_pod(hub: Hub, tmp_path: Path, fresh_router: Any,
                                                             pods: list[VllmPod]) -> None:
    docs = pool_docs(hub)
    docs["route"]["spec"]["circuitBreaker"].update(consecutiveFailures=1, openDuration="100ms")
    docs["policy"]["spec"]["providers"][1]["healthCheck"] = {"path": "/models", "interval": "100ms",
                                                             "timeout": "500ms"}
    endpoints = Endpoints(tmp_path / "endpoints.json")
    proc = fresh_router(write_config(tmp_path / "config", docs),
                        env={"LLMROUTE_POOL_ENDPOINTS_FILE": str(endpoints.path)})
    pod = await start_pod(pods)
    endpoints.set(pod)
    await until(proc, ready_pods(1))
    pod.set_params(engine_dead=True)  # chat answers 500: the backend's circuit opens
    async with make_aclient(proc) as client:
        with pytest.raises(openai.InternalServerError):
            await phi_chat(client)
    pod.set_params(engine_dead=False)
    # the pool's Service name does not resolve here: only a probe sent to the pod can close the circuit again
    await until(proc, lambda m: 'llmroute_circuit_state{backend="Qwen/Qwen3-8B",provider="gpu",state="open"} 0.0' in m)
    assert pod.state.requests["/v1/models"] >= 1
