"""Self-hosted pools in local mode: each ModelPool the route uses, run as emulated vLLM pods and sized by the
operator's own decision (:func:`llmroute.core.scaling.decide`).

The cluster in miniature, piece by piece:

* **Deployment**: :class:`LocalPool` keeps ``desired`` pods starting or serving. Each pod is a
  :class:`~llmroute.emulator.vllm.VllmPod` on loopback serving the pool's ``servedModelName`` as current vLLM does
  (``reasoning``, never ``reasoning_content``); its port refuses connections while its weights load
  (:attr:`PoolTimings.startup_s`), as a loading vLLM pod's does.
* **Readiness and the headless Service**: every :data:`READINESS_PERIOD_S` each pod's ``/health`` is asked (the
  kubelet's readiness probe); the endpoints file the router reads (``$LLMROUTE_POOL_ENDPOINTS_FILE``,
  :class:`EndpointsFile`) lists the pods that answered 200 and nothing else, as the headless Service's DNS does.
* **Scaler**: every ``scaling.interval`` the Ready pods' ``/metrics``
  (:func:`~llmroute.core.scaling.parse_vllm_metrics`), the requests routers hold
  (:class:`~llmroute.local.signals.DemandEndpoint`) and the prober states of the ``prewarm.whenDown`` providers
  (:class:`~llmroute.local.signals.LocalProber`) go into ``decide()``, and the pods follow its answer. Demand going
  from 0 to more wakes the scaler at once, as in the operator.
* **Termination**: a pod leaving is unlisted first and keeps serving for :data:`DRAIN_GRACE_S` (the preStop sleep:
  the router re-reads the file about once a second), then drains (new requests 503, admitted ones finish, for at
  most ``drainTimeout``) and closes. Pods still starting go first, then the newest, like a Deployment's scale-down.

**Replicas**, as reported (:attr:`LocalPool.history`, the summary's ``pool_replicas``): pods that exist - starting,
serving or draining - i.e. pods that would hold GPUs in a cluster. ``desired`` is the Deployment's
``spec.replicas``; ``ready`` the pods listed in the endpoints file.

**Time**: the pool's timers are written for hours-long incidents. :func:`pool_timings` divides them by the time
scale, like the circuit timings, and caps them so that the whole story fits in a drill phase: timers (prewarm hold,
scale-down delay, idle to zero, weights loading, drain) at most :data:`TIMER_FRACTION` of a phase, intervals
(scaling, health probes) at most :data:`TICK_FRACTION`, and the scaling interval at most a tenth of the down timers
(:data:`OBSERVATIONS_PER_TIMER`). Weights loading is :data:`COLD_START_S` before scaling (the
pool's ``startupTimeout`` is a budget, not a duration).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from llmroute.api.base import parse_duration
from llmroute.api.model_pool import ModelPool, ModelPoolSpec
from llmroute.api.provider_policy import ProviderState
from llmroute.core import pools
from llmroute.core.scaling import (
    Decision,
    Observation,
    PodLoad,
    ScalerState,
    WatchedProvider,
    decide,
    parse_vllm_metrics,
)
from llmroute.emulator.vllm import EngineParams, VllmConfig, VllmPod

TIMER_FRACTION = 1 / 4
"""Pool timers (hold, scale-down delay, idle to zero, start-up, drain) take at most this share of a drill phase: a
hold and a scale-down delay after the prober sees DeepSeek recover still end within the recovery phase, even when
the partial outage before it made DeepSeek Down again at its very end."""
TICK_FRACTION = 1 / 10
"""Intervals (scaling, watched-provider probes) are at most this share of a drill phase."""
OBSERVATIONS_PER_TIMER = 10
"""The scaling interval is also at most a tenth of the scale-down delay and of idle-to-zero: a step down needs that
many observations in a row allowing it (the example has 60: 5s against 5m), so one scrape that happens to find no
request running cannot scale a busy pool to zero."""
MIN_INTERVAL_S = 0.05
"""The scaler never runs more often than this (a pool with a zero scale-down delay must not spin)."""
COLD_START_S = 20.0
"""How long an emulated pod loads its weights, before the time scale (2 s at the default 10x). A real 8-GPU
DeepSeek-V3 cold start takes minutes even from a warm cache; what matters here is that it is not instant."""
READINESS_PERIOD_S = 0.2
"""How often each pod's /health is asked (the readiness probe's period)."""
DRAIN_GRACE_S = 1.5
"""How long an unlisted pod keeps serving before it drains: routers re-read the endpoints file about once a second.
Not scaled (the router's discovery period is not)."""
POD_ENGINE = EngineParams(prefill_s=0.02, token_interval_s=0.005)
"""A pod's speed: about 0.1 s per 16-token answer (the hosted emulators answer at once), so that scrapes see the
requests it runs: the scaler's activity signal."""
_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=1.0)


@dataclass(frozen=True)
class PoolTimings:
    """A pool's timers in seconds as local mode runs them (see "Time" above)."""

    interval_s: float
    scale_down_delay_s: float
    idle_to_zero_s: float
    hold_after_recovery_s: float
    startup_s: float
    drain_timeout_s: float

    def describe(self) -> str:
        return (f"start-up {_s(self.startup_s)}, prewarm hold {_s(self.hold_after_recovery_s)}, scale-down delay "
                f"{_s(self.scale_down_delay_s)}, idle to zero {_s(self.idle_to_zero_s)}, "
                f"interval {_s(self.interval_s)}")


def compress(seconds: float, time_scale: float, cap: float) -> float:
    """``seconds`` divided by ``time_scale``, at most ``cap``."""
    return min(seconds / time_scale, cap)


def tick(duration: str, time_scale: float, phase_s: float) -> float:
    """An interval (``"5s"``) as local mode runs it: scaled, at most :data:`TICK_FRACTION` of a phase."""
    return compress(parse_duration(duration), time_scale, phase_s * TICK_FRACTION)


def pool_timings(spec: ModelPoolSpec, time_scale: float, phase_s: float) -> PoolTimings:
    """``spec``'s timers scaled by ``time_scale`` and capped by the drill's phase length ``phase_s``."""
    cap = phase_s * TIMER_FRACTION

    def timer(duration: str) -> float:
        return compress(parse_duration(duration), time_scale, cap)

    hold = spec.prewarm.hold_after_recovery if spec.prewarm is not None else "0s"
    delay, idle = timer(spec.scaling.scale_down_delay), timer(spec.scaling.idle_to_zero)
    interval = max(MIN_INTERVAL_S, min(tick(spec.scaling.interval, time_scale, phase_s),
                                       min(delay, idle) / OBSERVATIONS_PER_TIMER))
    return PoolTimings(
        interval_s=interval, scale_down_delay_s=delay, idle_to_zero_s=idle, hold_after_recovery_s=timer(hold),
        startup_s=compress(COLD_START_S, time_scale, cap), drain_timeout_s=timer(spec.drain_timeout),
    )


class EndpointsFile:
    """The router's view of every pool's ready pods: ``{"<namespace>/<pool>": ["http://127.0.0.1:PORT", ...]}``.

    Replaced atomically; each write gets a strictly newer mtime (the router re-reads on an mtime change, and two
    writes within one coarse filesystem tick would otherwise look like one)."""

    def __init__(self, path: Path, keys: tuple[str, ...]) -> None:
        self.path = path
        self._pools: dict[str, list[str]] = {key: [] for key in keys}
        self._mtime_ns = 0
        self._write()

    def set(self, key: str, urls: list[str]) -> None:
        urls = sorted(urls)
        if self._pools.get(key) != urls:
            self._pools[key] = urls
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self._pools, sort_keys=True) + "\n", encoding="utf-8")
        self._mtime_ns = max(time.time_ns(), self._mtime_ns + 1_000_000)
        os.utime(tmp, ns=(self._mtime_ns, self._mtime_ns))
        tmp.replace(self.path)


@dataclass(eq=False)
class Pod:
    """One pool pod: starting until its /health answers 200, then ready (listed) until it is told to leave."""

    name: str
    number: int
    vllm: VllmPod
    ready: bool = False
    leaving: bool = False

    def requests(self) -> int:
        counts = self.vllm.state.requests
        return counts["/v1/chat/completions"] + counts["/v1/completions"]

    def errors(self) -> int:
        """Answers with an error status (the pod's own probes excepted: they are not sent to leaving pods)."""
        return sum(n for status, n in self.vllm.state.statuses.items() if status >= 400)


@dataclass
class _Gone:
    """What pods that closed had counted (the totals outlive the pods)."""

    users: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    errors: int = 0


class LocalPool:
    """One ModelPool: its pods, its scaler state and what happened (``history``: (loop time, replicas) on change)."""

    def __init__(self, pool: ModelPool, provider: str, timings: PoolTimings, endpoints: EndpointsFile, *,
                 health: Callable[[str], ProviderState], held: Callable[[str], int], seed: int = 0) -> None:
        self.pool, self.provider, self.timings = pool, provider, timings
        self.name = pool.metadata.name
        self.key = pools.key(self.name, pool.metadata.namespace or "default")
        self.policy = dataclasses.replace(  # the operator's policy, with local mode's compressed timers
            pools.scaling_policy(pool.spec), scale_down_delay_s=timings.scale_down_delay_s,
            idle_to_zero_s=timings.idle_to_zero_s, hold_after_recovery_s=timings.hold_after_recovery_s)
        self.watched = pools.watched_keys(pool.spec)
        self.endpoints, self._health, self._held, self._seed = endpoints, health, held, seed
        self.desired = 0
        self.state = ScalerState()
        self.decision: Decision | None = None
        self.pods: list[Pod] = []
        self.history: list[tuple[float, int]] = []
        self._gone = _Gone()
        self._started = 0
        self._wake = asyncio.Event()
        self._leaving: set[asyncio.Task[None]] = set()

    # --- what the view and the summary read ------------------------------------------------------------------------

    @property
    def replicas(self) -> int:
        """Pods that exist: starting, ready or draining."""
        return len(self.pods)

    @property
    def ready(self) -> int:
        return sum(1 for p in self.pods if p.ready and not p.leaving)

    def held(self) -> int:
        return self._held(self.key)

    def users(self) -> Counter[str]:
        """The ``user`` field of every completion request the pool's pods received, closed pods included."""
        out = Counter(self._gone.users)
        for p in self.pods:
            out.update(p.vllm.state.users)
        return out

    def requests(self) -> int:
        return self._gone.requests + sum(p.requests() for p in self.pods)

    def errors(self) -> int:
        return self._gone.errors + sum(p.errors() for p in self.pods)

    def wake(self) -> None:
        """Decide now (requests are held at a router)."""
        self._wake.set()

    # --- running -----------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Scale and probe readiness until cancelled (then :meth:`close`)."""
        self._record()
        async with aiohttp.ClientSession(timeout=_PROBE_TIMEOUT) as http:
            await asyncio.gather(self._scale_loop(http), self._ready_loop(http))

    async def close(self) -> None:
        """Stop every pod at once (the session is over; nothing is drained)."""
        for task in list(self._leaving):
            task.cancel()
        await asyncio.gather(*self._leaving, return_exceptions=True)
        for p in list(self.pods):
            await p.vllm.close()
        self.pods.clear()
        self.endpoints.set(self.key, [])

    async def _scale_loop(self, http: aiohttp.ClientSession) -> None:
        while True:
            await self.tick(http)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.timings.interval_s)
            self._wake.clear()

    async def tick(self, http: aiohttp.ClientSession) -> Decision:
        """One scaler interval: observe, decide, make the pods match."""
        live = [p for p in self.pods if not p.leaving]
        loads = await asyncio.gather(*(self._load(http, p) for p in live))
        now = asyncio.get_running_loop().time()
        watched = tuple(WatchedProvider.from_state(k, self._health(k)) for k in self.watched)
        obs = Observation(now=now, replicas=self.desired, pods=tuple(loads), router_waiting=self.held(),
                          watched=watched)
        decision = decide(self.policy, obs, self.state)
        self.state, self.decision, self.desired = decision.state, decision, decision.replicas
        await self._reconcile()
        return decision

    async def _load(self, http: aiohttp.ClientSession, pod: Pod) -> PodLoad:
        if not pod.ready:
            return PodLoad(ready=False)
        try:
            async with http.get(pod.vllm.base_url + "/metrics") as resp:
                text = await resp.text()
            return parse_vllm_metrics(text, self.pool.spec.served_name) if resp.status == 200 else PodLoad(False)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return PodLoad(ready=False)

    async def _reconcile(self) -> None:
        live = [p for p in self.pods if not p.leaving]
        for _ in range(self.desired - len(live)):
            await self._start_pod()
        extra = len(live) - self.desired
        if extra > 0:
            for pod in sorted(live, key=lambda p: (p.ready, -p.number))[:extra]:
                pod.leaving = True
                task = asyncio.create_task(self._terminate(pod))
                self._leaving.add(task)
                task.add_done_callback(self._leaving.discard)
            self._publish()

    async def _start_pod(self) -> None:
        self._started += 1
        spec = self.pool.spec
        config = VllmConfig(model=spec.model, served_model_name=spec.served_name,
                            startup_delay_s=self.timings.startup_s, seed=self._seed + self._started)
        vllm = await VllmPod(config, POD_ENGINE).start()
        self.pods.append(Pod(f"{self.name}-{self._started}", self._started, vllm))
        self._record()

    async def _terminate(self, pod: Pod) -> None:
        try:
            if pod.ready:  # it was listed: let routers see the new list, then SIGTERM and wait for its requests
                await asyncio.sleep(DRAIN_GRACE_S)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timings.drain_timeout_s):
                        await pod.vllm.drain(wait=True)
        finally:
            self._gone.users.update(pod.vllm.state.users)
            self._gone.requests += pod.requests()
            self._gone.errors += pod.errors()
            await pod.vllm.close()
            self.pods.remove(pod)
            self._record()

    async def _ready_loop(self, http: aiohttp.ClientSession) -> None:
        while True:
            live = [p for p in self.pods if not p.leaving]
            answers = await asyncio.gather(*(self._healthy(http, p) for p in live))
            changed = False
            for pod, ok in zip(live, answers, strict=True):
                if not pod.leaving and ok != pod.ready:
                    pod.ready, changed = ok, True
            if changed:
                self._publish()
            await asyncio.sleep(READINESS_PERIOD_S)

    @staticmethod
    async def _healthy(http: aiohttp.ClientSession, pod: Pod) -> bool:
        try:
            async with http.get(pod.vllm.base_url + "/health") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _publish(self) -> None:
        self.endpoints.set(self.key, [p.vllm.base_url for p in self.pods if p.ready and not p.leaving])

    def _record(self) -> None:
        now = asyncio.get_running_loop().time()
        if not self.history or self.history[-1][1] != len(self.pods):
            self.history.append((now, len(self.pods)))


def _s(seconds: float) -> str:
    return f"{seconds:.3g}s"
