"""ModelPool pods in the router: who they are, how loaded they are, which one an attempt goes to, and what a
request does while its pools have none ready.

Owns, per pool of the loaded config (key ``<namespace>/<pool>``, :func:`llmroute.core.pools.key`), a :class:`Pool`:

* **discovery** every :data:`DISCOVERY_INTERVAL_S` through :mod:`llmroute.router.pod_discovery` (the headless
  Service's DNS records, or the endpoints file in local mode and tests). A pod that leaves discovery is never
  picked again; attempts already on it finish.
* **scraping** ``GET <pod>/metrics`` every :data:`SCRAPE_INTERVAL_S` while the pool has pods (and at once for a pod
  just discovered), through :meth:`llmroute.router.upstream.Upstream.fetch` (its keep-alive pool, off the request
  path), parsed by :func:`llmroute.core.scaling.parse_vllm_metrics` (``vllm:num_requests_waiting``/``running``). A
  pod is **ready** only while its last scrape answered within :data:`SCRAPE_TIMEOUT_S` with vLLM's gauges: a new
  pod from its first good scrape (a loading vLLM refuses connections, and DNS may lag a pod's death), a refused or
  slow one not until it answers again. A refused connection on an attempt also makes it not ready until then.
* **picking** by load (:func:`llmroute.core.pod_picking.pick_pod`: fewest waiting, then running, from metrics at
  most 1 s old plus this router's requests sent since the scrape, else this router's in-flight counts). Each
  attempt holds a :class:`Lease` from the pick until it ends (stream end included): that is the in-flight count.
  ``LLMROUTE_POD_PICKING=round-robin`` picks load-blind instead, for comparisons only.
* **cold starts**: :meth:`Pools.ready_plan` drops pools without a ready pod from an attempt plan
  (:func:`llmroute.core.cold_start.split_cold`) and, when nothing else is left, holds the request
  (:mod:`llmroute.router.holding`) until a pod of one of them is ready, at most ``coldStart.maxWait``.

Circuits stay per backend (provider/model), as for any provider: a pod's failures count against its pool's backend.
Lifecycle: :mod:`llmroute.router.app` creates one :class:`Pools` per process, calls :meth:`Pools.use` on every
config load (pools that appear start, pools that go stop) and :meth:`Pools.close` at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from llmroute import __version__
from llmroute.core import pools as pool_names
from llmroute.core.cold_start import HoldOutcome, split_cold
from llmroute.core.pod_picking import PodView, pick_pod, pick_round_robin
from llmroute.core.router_config import ColdStartSettings, PoolTarget
from llmroute.core.scaling import parse_vllm_metrics
from llmroute.core.selection import Plan
from llmroute.router import metrics, openai_errors
from llmroute.router.client import ClientSink
from llmroute.router.config_source import RouteEntry, Snapshot
from llmroute.router.holding import Holds
from llmroute.router.openai_errors import RouterError
from llmroute.router.pod_discovery import Discovery, from_environment
from llmroute.router.upstream import Upstream, UpstreamFailure

log = logging.getLogger("llmroute.router.pools")

DISCOVERY_INTERVAL_S = 1.0
SCRAPE_INTERVAL_S = 0.5
SCRAPE_TIMEOUT_S = 0.5
PICKING_ENV = "LLMROUTE_POD_PICKING"
_METRICS_LIMIT = 8 * 1024 * 1024
_GAUGES = tuple(b"\nvllm:" + name for name in (b"num_requests_waiting", b"num_requests_running",
                                                b"kv_cache_usage_perc", b"gpu_cache_usage_perc"))
_SCRAPE_HEADERS = {"Accept": "text/plain", "Accept-Encoding": "identity", "User-Agent": f"llmroute/{__version__}"}


def gauge_lines(exposition: bytes) -> bytes:
    """The sample lines of the gauges picking reads, out of a whole vLLM ``/metrics`` body.

    Measured on the emulated pod's 21 KB exposition: parsing all of it takes ~1.3 ms, on the event loop that serves
    every request (~7 ms for a 100 KB multi-model one); these lines, ~60 us (found with ``bytes.find``, 20 us
    per 21 KB). Only the selection is done here; :func:`llmroute.core.scaling.parse_vllm_metrics` parses."""
    body = b"\n" + exposition
    lines = []
    for name in _GAUGES:
        at = body.find(name)
        while at >= 0:
            end = body.find(b"\n", at + 1)
            line = body[at + 1:end if end >= 0 else len(body)]
            if line[len(name) - 1:len(name)] in (b"{", b" "):
                lines.append(line)
            at = body.find(name, at + 1)
    return b"\n".join(lines)


class Pod:
    """One pod: its addresses, its last scraped load and this router's attempts on it."""

    __slots__ = ("address", "base_url", "leases", "metrics_at", "metrics_url", "ready", "running", "sent_since",
                 "waiting")

    def __init__(self, address: str, api_path: str) -> None:
        self.address = address
        self.base_url = address + api_path  # what the provider's endpoint is for an attempt on this pod
        self.metrics_url = address + "/metrics"
        self.ready = False
        self.waiting = self.running = 0
        self.metrics_at: float | None = None
        self.leases: set[Lease] = set()
        self.sent_since = 0  # leases sent after the last good scrape started (not in waiting/running)

    def view(self) -> PodView:
        return PodView(self.address, self.ready, self.waiting, self.running, self.metrics_at, len(self.leases),
                       self.sent_since)


class Lease:
    """One attempt on a pod, from the pick until the attempt ends (call :meth:`release` exactly once)."""

    __slots__ = ("counted", "pod", "pool", "sent_at")

    def __init__(self, pool: Pool, pod: Pod, sent_at: float) -> None:
        self.pool = pool
        self.pod = pod
        self.sent_at = sent_at
        self.counted = pod.metrics_at is not None
        pod.sent_since += self.counted
        pod.leases.add(self)

    @property
    def base_url(self) -> str:
        return self.pod.base_url

    def release(self, *, refused: bool = False) -> None:
        """The attempt ended; ``refused``: the pod refused the connection (not ready until it answers a scrape)."""
        pod = self.pod
        if self in pod.leases:
            pod.leases.discard(self)
            pod.sent_since -= self.counted
        if refused and pod.ready:
            log.warning("pool %s: pod %s refused an attempt: not ready until it answers", self.pool.key, pod.address)
            self.pool.set_ready(pod, False)


class Pool:
    """One ModelPool's pods: discovery and scrape loops, picks, and waking the requests held for it."""

    def __init__(self, target: PoolTarget, api_path: str, upstream: Upstream, discovery: Discovery,
                 clock: Callable[[], float], rng: random.Random, round_robin: bool) -> None:
        self.target = target
        self.key = pool_names.key(target.name, target.namespace)
        self.api_path = api_path
        self.pods: dict[str, Pod] = {}
        self.ready_count = 0
        self.waiters: set[asyncio.Future[None]] = set()  # held requests, woken when a pod is ready
        self._upstream, self._discovery, self._clock, self._rng = upstream, discovery, clock, rng
        self._round_robin, self._turn = round_robin, 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._discover_forever(), name=f"pool-discovery {self.key}"),
                       asyncio.create_task(self._scrape_forever(), name=f"pool-scrape {self.key}")]

    def stop(self) -> list[asyncio.Task[None]]:
        """Cancel the loops; returns the tasks to await."""
        for task in self._tasks:
            task.cancel()
        return self._tasks

    def lease(self) -> Lease | None:
        """Pick a ready pod for one attempt; None when none is ready."""
        pods = [p.view() for p in self.pods.values()]
        if self._round_robin:
            pick = pick_round_robin(pods, self._turn)
            self._turn += 1
        else:
            pick = pick_pod(pods, now=self._clock(), rng=self._rng)
        if pick is None:
            return None
        metrics.pool_pick(self.key, pick.basis)
        log.debug("pool %s: picked %s (%s)", self.key, pick.address, pick.reason)
        return Lease(self, self.pods[pick.address], self._clock())

    async def _discover_forever(self) -> None:
        while True:
            try:
                await self._discover()
            except Exception:  # a bug must not stop discovery for the life of the process
                log.exception("pool %s: discovery failed", self.key)
            await asyncio.sleep(DISCOVERY_INTERVAL_S)

    async def _discover(self) -> None:
        found = await self._discovery.addresses(self.target)
        if found is None or found == self.pods.keys():
            return
        new = [Pod(a, self.api_path) for a in sorted(found - self.pods.keys())]
        gone = sorted(self.pods.keys() - found)
        for address in gone:
            del self.pods[address]
        self.pods.update((p.address, p) for p in new)
        log.info("pool %s: %d pods discovered (%d new, %d gone)", self.key, len(self.pods), len(new), len(gone))
        self._readiness_changed()
        await asyncio.gather(*(self._scrape(p) for p in new))  # a new pod is usable after its first scrape

    async def _scrape_forever(self) -> None:
        while True:
            await asyncio.sleep(SCRAPE_INTERVAL_S)
            if self.pods:
                try:
                    await asyncio.gather(*(self._scrape(p) for p in list(self.pods.values())))
                except Exception:
                    log.exception("pool %s: scraping failed", self.key)

    async def _scrape(self, pod: Pod) -> None:
        started = self._clock()
        try:
            status, body = await self._upstream.fetch("GET", pod.metrics_url, _SCRAPE_HEADERS,
                                                      timeout_s=SCRAPE_TIMEOUT_S, limit=_METRICS_LIMIT)
            if status != 200:
                raise ValueError(f"HTTP {status}")
            load = parse_vllm_metrics(gauge_lines(body).decode("utf-8", "replace"))
        except (UpstreamFailure, ValueError) as exc:
            if pod.ready:
                log.warning("pool %s: pod %s not ready: /metrics %s", self.key, pod.address, exc)
            self.set_ready(pod, False)
            return
        pod.waiting, pod.running, pod.metrics_at = round(load.waiting), round(load.running), self._clock()
        counted = 0
        for lease in pod.leases:  # what this scrape cannot have seen: sent after it started
            lease.counted = lease.sent_at >= started
            counted += lease.counted
        pod.sent_since = counted
        self.set_ready(pod, load.ready)

    def set_ready(self, pod: Pod, ready: bool) -> None:
        if pod.ready != ready:
            pod.ready = ready
            if ready:
                log.info("pool %s: pod %s ready", self.key, pod.address)
        self._readiness_changed()

    def _readiness_changed(self) -> None:
        count = sum(p.ready for p in self.pods.values())
        if count != self.ready_count:
            self.ready_count = count
            metrics.set_pool_ready_pods(self.key, count)
        if count:
            for fut in self.waiters:
                if not fut.done():
                    fut.set_result(None)


@dataclass(frozen=True, slots=True)
class ColdPlan:
    """:meth:`Pools.ready_plan`'s answer: the plan to try, how long the request was held, or why it ends here."""

    plan: Plan
    held_s: float = 0.0
    refusal: RouterError | None = None  # answer this (503 with Retry-After) instead of trying
    client_gone: bool = False


class Pools:
    """Every pool of the current config; single event loop, so no locks."""

    def __init__(self, upstream: Upstream, clock: Callable[[], float], *, discovery: Discovery | None = None,
                 rng: random.Random | None = None) -> None:
        self._upstream = upstream
        self._clock = clock
        self._discovery = discovery or from_environment()
        self._rng = rng or random.Random()
        self._round_robin = os.environ.get(PICKING_ENV, "load") == "round-robin"
        self._pools: dict[str, Pool] = {}
        self._by_provider: dict[str, Pool] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self.holds = Holds(upstream, clock)

    def use(self, snapshot: Snapshot) -> None:
        """Adopt a config: start the pools that appear, stop those that go (or whose target changed)."""
        wanted: dict[str, tuple[PoolTarget, str]] = {}
        providers: dict[str, str] = {}
        for p in snapshot.config.providers:
            if p.pool is not None:
                key = pool_names.key(p.pool.name, p.pool.namespace)
                wanted[key] = (p.pool, urlsplit(p.endpoint).path.rstrip("/"))
                providers[p.name] = key
        for key, pool in list(self._pools.items()):
            if wanted.get(key) != (pool.target, pool.api_path):
                self._stop(self._pools.pop(key))
        for key, (target, api_path) in wanted.items():
            if key not in self._pools:
                pool = Pool(target, api_path, self._upstream, self._discovery, self._clock, self._rng,
                            self._round_robin)
                self._pools[key] = pool
                metrics.prepare_pool(key)
                pool.start()
        self._by_provider = {name: self._pools[key] for name, key in providers.items()}
        self.holds.use(snapshot, list(wanted))

    def _stop(self, pool: Pool) -> None:
        metrics.remove_pool(pool.key)
        for task in pool.stop():
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def run(self) -> None:
        """The demand signal's sender (cancel to stop; pools run their own loops)."""
        await self.holds.demand.run()

    async def close(self) -> None:
        for pool in list(self._pools.values()):
            self._stop(pool)
        self._pools.clear()
        for task in list(self._stopping):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def lease(self, provider: str) -> Lease | None:
        """A pod of ``provider``'s pool for one attempt; None if it has none ready (or is no longer configured)."""
        pool = self._by_provider.get(provider)
        return pool.lease() if pool is not None else None

    def probe_url(self, provider: str) -> str | None:
        """A ready pod's base URL for ``provider``'s health probe; None when its pool has none."""
        pool = self._by_provider.get(provider)
        ready = [p for p in pool.pods.values() if p.ready] if pool is not None else []
        return self._rng.choice(ready).base_url if ready else None

    def _cold(self) -> Mapping[str, str]:
        return {name: pool.key for name, pool in self._by_provider.items() if not pool.ready_count}

    async def ready_plan(self, plan: Plan, max_attempts: int, entry: RouteEntry, settings: ColdStartSettings,
                         sink: ClientSink, *, hold: bool) -> ColdPlan:
        """``plan`` (not yet cut to ``max_attempts``) without pools that have no ready pod; if only such pools are
        left and ``hold``, the request is held until one has (then its plan includes it), or refused."""
        split = split_cold(plan, self._cold(), max_attempts)
        if not split.hold_for or not hold:
            return ColdPlan(split.plan)
        waiting = [self._pools[key] for key in split.hold_for]
        outcome, held_s = await self.holds.hold(waiting, settings, sink)
        if outcome is HoldOutcome.SERVED:
            return ColdPlan(split_cold(plan, self._cold(), max_attempts).plan, held_s)
        if outcome is HoldOutcome.CLIENT_CLOSED:
            return ColdPlan(split.plan, held_s, client_gone=True)
        why = (f"no pod was ready within coldStart.maxWait {settings.max_wait_s:g}s" if outcome is HoldOutcome.TIMEOUT
               else f"this router already holds coldStart.maxRequests {settings.max_requests} requests")
        error = openai_errors.pool_starting(entry.model, entry.class_header, split.hold_for, why)
        return ColdPlan(split.plan, held_s, error)
