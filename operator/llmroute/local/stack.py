"""The local stack: one emulator per hosted provider, emulated vLLM pods per ModelPool, the example's YAML pointed at
them, and the real router process.

The example files are copied, not edited: every ProviderPolicy provider ``endpoint`` is replaced by its emulator's
loopback URL, and nothing else changes, so the router compiles and serves exactly the policy and route the user
wrote. Each emulator checks the provider key from the example's Secret, which proves the router sends the provider's
key (and never the client's). Self-hosted providers with an endpoint get vLLM's ``reasoning`` field name.

A provider that names a ModelPool (``pool:``) keeps it: as in a cluster, the router finds the pool's ready pods
itself, here through the endpoints file (``$LLMROUTE_POOL_ENDPOINTS_FILE``) that :mod:`llmroute.local.pools` keeps,
and reports the requests it holds to a demand endpoint on loopback (``$LLMROUTE_DEMAND_URL``,
:mod:`llmroute.local.signals`). Each pool runs for the whole session, sized by the operator's decision (at
zero while nothing needs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

from llmroute.api.base import parse_duration
from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool
from llmroute.api.provider_policy import Provider, ProviderPolicy
from llmroute.core.manifests import DEMAND_URL_ENV
from llmroute.core.pools import key as pool_key
from llmroute.core.pools import watched_keys
from llmroute.documents import Bundle, load, yaml_files
from llmroute.emulator import Emulator
from llmroute.errors import InputError
from llmroute.local.pools import EndpointsFile, LocalPool, pool_timings, tick
from llmroute.local.signals import DemandEndpoint, LocalProber, ProbeTarget
from llmroute.local.traffic import CLIENT_KEY
from llmroute.router.pod_discovery import ENDPOINTS_FILE_ENV


@dataclass
class Stack:
    """Everything running for one local session."""

    route: LLMRoute
    policy: ProviderPolicy
    emulators: dict[str, Emulator]  # hosted providers (and self-hosted ones with an endpoint)
    router_url: str  # http://127.0.0.1:PORT
    router: asyncio.subprocess.Process
    pools: dict[str, LocalPool] = field(default_factory=dict)  # provider name -> its ModelPool, run locally
    prober: LocalProber | None = None
    client_key: str = CLIENT_KEY  # what the traffic sends as its API key: a route's bearer token when it checks callers

    def provider(self, name: str) -> Provider:
        found = self.policy.spec.provider(name)
        assert found is not None
        return found


def pick_route(bundle: Bundle) -> tuple[LLMRoute, ProviderPolicy]:
    """The example's one LLMRoute and its ProviderPolicy; a clear error when the folder is not such an example."""
    if not bundle.routes:
        raise InputError("no LLMRoute in the example folder")
    route = bundle.route(None)
    policy = bundle.policies.get(route.spec.policy_ref.name)
    if policy is None:
        raise InputError(f'the example has no ProviderPolicy "{route.spec.policy_ref.name}" for its LLMRoute')
    return route, policy


def used_pools(bundle: Bundle, route: LLMRoute, policy: ProviderPolicy) -> dict[str, ModelPool]:
    """Provider name -> the ModelPool it names, for the route's pool providers; a clear error when the example does
    not hold that ModelPool (local mode has nothing else to run)."""
    used = {b.provider for m in route.spec.models for b in m.backends}
    out: dict[str, ModelPool] = {}
    for p in policy.spec.providers:
        if p.name in used and p.pool is not None:
            pool = bundle.pools.get((p.pool.namespace, p.pool.name))
            if pool is None:
                raise InputError(f'provider "{p.name}" names ModelPool {p.pool.namespace}/{p.pool.name}, which is '
                                 "not in the example folder")
            out[p.name] = pool
    return out


def client_key(bundle: Bundle, route: LLMRoute) -> str:
    """The API key local traffic sends: any key when the route lets anyone call, else the first of its
    ``spec.access.bearerTokens`` the example's Secret documents hold. A route that accepts only ServiceAccount tokens
    cannot be called here (no cluster issues them): a clear error naming the field."""
    spec = route.spec.access
    if spec is None:
        return CLIENT_KEY
    namespace = route.metadata.namespace or "default"
    for t in spec.bearer_tokens:
        token = (bundle.secret(namespace, t.secret_ref.name, t.secret_ref.key) or "").strip()
        if token:
            return token
    raise InputError(
        "spec.access: local mode calls the route with a bearer token from the example's Secret documents, and none "
        f'of spec.access.bearerTokens is in them (namespace "{namespace}"); ServiceAccount tokens need a cluster'
    )


def provider_key(bundle: Bundle, route: LLMRoute, p: Provider) -> str | None:
    """The provider key from the example's Secret documents (None for keyless self-hosted providers)."""
    if p.credentials is None:
        return None
    ref = p.credentials.secret_ref
    namespace = ref.namespace or route.metadata.namespace or "default"
    return bundle.secret(namespace, ref.name, ref.key)


SCALED_CIRCUIT = ("window", "openDuration", "recoveryStepDuration")
"""Circuit-breaker durations that local mode divides by the time scale (incidents last seconds, not hours)."""


def rewrite(example: Path, out: Path, urls: dict[str, str], time_scale: float = 1.0) -> None:
    """Copy the example's YAML into ``out`` with each provider endpoint replaced by ``urls[name]``.

    With ``time_scale`` > 1, the circuit breaker's window/open/recovery durations and the providers' probe
    intervals are divided by it, so a compressed drill also shows recovery. Latency budgets (timeouts,
    timeToFirstToken) are never scaled: the incidents' latencies are replayed as they were.
    """
    for path in yaml_files([example]):
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            spec = doc.get("spec") or {}
            if doc.get("kind") == "ProviderPolicy":
                for provider in spec.get("providers", []):
                    if provider.get("name") in urls:  # a pool provider keeps its pool: the router finds the pods
                        provider["endpoint"] = urls[provider["name"]]
                    check = provider.setdefault("healthCheck", {})
                    check["interval"] = scaled(check.get("interval", "15s"), time_scale)
            elif doc.get("kind") == "LLMRoute":
                circuit = spec.setdefault("circuitBreaker", {})
                for key, default in zip(SCALED_CIRCUIT, ("30s", "30s", "15s"), strict=True):
                    circuit[key] = scaled(circuit.get(key, default), time_scale)
        (out / path.name).write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


def scaled(duration: str, time_scale: float) -> str:
    """``duration`` divided by ``time_scale``, as a duration string in milliseconds (at least 100ms)."""
    if time_scale == 1.0:
        return duration
    return f"{max(100, round(parse_duration(duration) * 1000 / time_scale))}ms"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise InputError(f"port {port} on {host} is in use; pick another with --port") from None


@contextlib.asynccontextmanager
async def running(example: Path, *, port: int | None = None, seed: int = 0, time_scale: float = 1.0,
                  phase_s: float = 60.0) -> AsyncIterator[Stack]:
    """Start emulators, pools and the router on ``example``; stop everything on exit (also on Ctrl-C).
    ``phase_s`` (a drill phase's length) caps the pools' timers (:func:`llmroute.local.pools.pool_timings`)."""
    bundle = load([example])
    route, policy = pick_route(bundle)
    caller_key = client_key(bundle, route)
    used = {b.provider for m in route.spec.models for b in m.backends}
    pool_of = used_pools(bundle, route, policy)
    emulators: dict[str, Emulator] = {}
    async with contextlib.AsyncExitStack() as stack:
        for i, p in enumerate(q for q in policy.spec.providers if q.name in used and q.name not in pool_of):
            emu = Emulator(p.name, api_key=provider_key(bundle, route, p), seed=seed + i,
                           reasoning_field="reasoning" if p.self_hosted else "reasoning_content")
            emulators[p.name] = await stack.enter_async_context(emu)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmroute-local-")))
        config = tmp / "config"
        config.mkdir()
        rewrite(example, config, {name: emu.url for name, emu in emulators.items()}, time_scale)
        if port is None:
            port = free_port()
        else:
            check_port("127.0.0.1", port)
        env: dict[str, str] = {}
        pools: dict[str, LocalPool] = {}
        prober: LocalProber | None = None
        if pool_of:
            pools, prober, env = await _start_pools(stack, bundle, route, policy, pool_of, emulators, tmp,
                                                    seed=seed, time_scale=time_scale, phase_s=phase_s)
        router = await _start_router(config, port, env)
        log: deque[str] = deque(maxlen=50)
        reader = asyncio.create_task(_keep_tail(router.stderr, log))
        stack.push_async_callback(_cancel, [reader])
        stack.push_async_callback(_stop, router)
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(url, router, reader, log)
        yield Stack(route=route, policy=policy, emulators=emulators, router_url=url, router=router, pools=pools,
                    prober=prober, client_key=caller_key)


async def _start_pools(stack: contextlib.AsyncExitStack, bundle: Bundle, route: LLMRoute, policy: ProviderPolicy,
                       pool_of: dict[str, ModelPool], emulators: dict[str, Emulator], tmp: Path, *, seed: int,
                       time_scale: float, phase_s: float) -> tuple[dict[str, LocalPool], LocalProber, dict[str, str]]:
    """The operator's part for the pools: the watched providers' prober, the demand endpoint and each pool's scaler
    and pods (stopped, pods closed, when ``stack`` unwinds). Returns the router's environment for them."""
    targets: dict[str, ProbeTarget] = {}
    for pool in pool_of.values():
        for key in watched_keys(pool.spec):
            policy_name, _, name = key.partition("/")
            p = policy.spec.provider(name)
            if policy_name != policy.metadata.name or p is None or name not in emulators:
                continue  # not in this example: never Down here
            targets[key] = ProbeTarget(key, emulators[name].url + p.health_check.path,
                                       provider_key(bundle, route, p), p.health_check,
                                       tick(p.health_check.interval, time_scale, phase_s))
    prober = LocalProber(tuple(targets.values()))
    keys = tuple(sorted({_pool_key(pool) for pool in pool_of.values()}))
    endpoints = EndpointsFile(tmp / "pool-endpoints.json", keys)
    by_key: dict[str, LocalPool] = {}
    demand = await DemandEndpoint(frozenset(keys), lambda key: by_key[key].wake()).start()
    stack.push_async_callback(demand.close)
    pools: dict[str, LocalPool] = {}
    for i, (provider, pool) in enumerate(pool_of.items()):
        local = LocalPool(pool, provider, pool_timings(pool.spec, time_scale, phase_s), endpoints,
                          health=prober.state, held=demand.held, seed=seed + 100 * (i + 1))
        pools[provider] = by_key[local.key] = local
        stack.push_async_callback(local.close)
    tasks = [asyncio.create_task(prober.run())] + [asyncio.create_task(p.run()) for p in pools.values()]
    stack.push_async_callback(_cancel, tasks)
    return pools, prober, {ENDPOINTS_FILE_ENV: str(endpoints.path), DEMAND_URL_ENV: demand.url}


def _pool_key(pool: ModelPool) -> str:
    return pool_key(pool.metadata.name, pool.metadata.namespace or "default")


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _start_router(config: Path, port: int, env: dict[str, str]) -> asyncio.subprocess.Process:
    argv = [sys.executable, "-m", "llmroute", "router", "--listen", f"127.0.0.1:{port}", "--config", str(config),
            "--log-level", "warning"]
    return await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})


async def _keep_tail(stream: asyncio.StreamReader | None, tail: deque[str]) -> None:
    """Read the router's stderr as it comes (a full pipe would block the router) and keep its last lines."""
    if stream is None:
        return
    while line := await stream.readline():
        tail.append(line.decode(errors="replace").rstrip())


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, reader: asyncio.Task[None], log: deque[str],
                      within_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            if proc.returncode is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), 2)  # the rest of its output
                last = next((line for line in reversed(log) if line.strip()), "(no output)")
                raise InputError(f"the router exited with code {proc.returncode}: {last}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise InputError(f"the router did not become ready within {within_s:.0f}s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape_metrics(session: aiohttp.ClientSession, url: str) -> Metrics:
    """The router's /metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out

