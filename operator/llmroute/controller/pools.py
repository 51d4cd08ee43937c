"""ModelPool handlers: the pool's objects, and one scaler per pool that sizes its vLLM Deployment.

Two handlers write a pool's objects, always through :meth:`~llmroute.controller.kube.Kube.apply` (watch cache, no
request when nothing differs) and under the pool's lock (:attr:`Scaler.lock`):

* ``on_pool`` (resume, create, update): parse the spec (pydantic, then
  :func:`~llmroute.core.pool_manifests.pool_errors`); an invalid spec gets ``Accepted=False`` naming the field and a
  Warning Event, and nothing is applied (pods keep running as they are). A valid one applies
  :func:`~llmroute.core.pool_manifests.owned_objects` **at the size the Deployment has**
  (:func:`~llmroute.controller.pool_status.current_size`) and wakes the scaler, so new bounds or prewarm settings
  take effect at once.
* ``on_scaler`` (a kopf daemon per pool): every ``scaling.interval``, and at once when woken, it lists the pool's
  pods (one label-selected LIST), reads ``/metrics`` of the Ready ones concurrently with a short timeout (a pod that
  does not answer, or whose metrics do not parse, counts as not ready), adds the requests routers hold for the pool
  (:mod:`llmroute.controller.demand`) and the prober's view of the ``prewarm.whenDown`` providers, calls
  :func:`llmroute.core.scaling.decide` and applies the objects at the decided size. It is woken by router demand
  going 0 -> >0, by a watched provider turning Down or back (:mod:`llmroute.controller.prober`), by a change to an
  owned object (:mod:`llmroute.controller.cache`: drift is repaired at once) and by ``on_pool``. The ``/metrics``
  reads are the one HTTP this module does itself (pods, not the Kubernetes API; one client per daemon).

**Two writers, one size.** Only the scaler changes ``spec.replicas``; ``on_pool`` applies the Deployment with the
replicas it already has (from the watch cache), so a spec edit never resets the size, and both hold the same lock, so
neither applies a stale size over the other's. The scaler observes ``replicas`` from the live Deployment too: a hand
``kubectl scale`` within the bounds is taken as the current size and then moved by the usual rules (up at once when
load needs it, down one step per ``scaleDownDelay``).

**Restart.** The scaler's memory (:class:`~llmroute.core.scaling.ScalerState`) lives in this process only. A fresh
state starts every clock at the first observation, so a restarted operator neither steps a busy pool down before a
whole ``scaleDownDelay`` nor takes an idle one to zero before ``idleToZero`` (kubeai's "a restart can load an empty
state and scale down" cannot happen); the size comes from the live Deployment, never from the empty memory; the last
change is taken from ``status.lastScaleTime``; and a pool whose status says it was held by a prewarm keeps the
prewarm floor for a whole ``holdAfterRecovery`` after the restart unless the provider is still Down.

**Status** (built by :mod:`llmroute.controller.pool_status`) is written only when something but the message changed;
the live decision is logged at DEBUG. Every change of size posts a ``Scaled`` Event with the decision, and is
counted (``llmroute_pool_scales_total{reason}``, :mod:`llmroute.controller.metrics`).

Deletion removes the owned objects explicitly, like routes do, and forgets the pool's scaler, demand and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import kopf

from llmroute import __version__
from llmroute.api.base import GROUP, VERSION
from llmroute.api.model_pool import ModelPool, ModelPoolSpec
from llmroute.api.provider_policy import ProviderPolicyStatus, ProviderState
from llmroute.controller import metrics
from llmroute.controller import status as st
from llmroute.controller.cache import CacheView, Owned
from llmroute.controller.indexes import first
from llmroute.controller.kube import JsonObj, Kube, NotOwned, post_event
from llmroute.controller.pool_status import (
    VALID,
    Rejected,
    Sizing,
    current_size,
    deployment_key,
    format_time,
    leaving,
    metrics_url,
    owned_keys,
    parse,
    pod_ready,
    pool_status,
    restored_state,
    worth_writing,
)
from llmroute.controller.settings import Settings
from llmroute.core import pool_manifests, pools
from llmroute.core.demand import DemandBook, Report
from llmroute.core.manifests import ObjectKey
from llmroute.core.scaling import (
    Decision,
    Observation,
    PodLoad,
    ScalerState,
    WatchedProvider,
    decide,
    parse_vllm_metrics,
)

logger = logging.getLogger(__name__)

POOLS = (GROUP, VERSION, "modelpools")
SCRAPE_TIMEOUT_S = 2.0
"""A pod whose ``/metrics`` takes longer counts as not ready this interval (capped by the interval)."""
SCRAPE_CONCURRENCY = 32
MIN_INTERVAL_S = 0.05
IDLE_S = 15.0
"""How often the scaler of a pool with an invalid spec looks again (an update wakes it at once anyway)."""
RETRY_S = 5.0
CANCELLATION_TIMEOUT_S = 5.0


@dataclass
class Scaler:
    """One pool's shared state: the lock both writers hold, the scaler's wake-up and memory, the status written."""

    uid: str
    key: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    watched: frozenset[str] = frozenset()
    state: ScalerState | None = None
    replicas: int | None = None
    status: dict[str, Any] | None = None
    unreadable: int = 0


class PoolRegistry:
    """``memo.pools``: every pool's :class:`Scaler` by ``<namespace>/<name>``, and the routers' demand."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock: Callable[[], float] = clock or (lambda: datetime.datetime.now(datetime.UTC).timestamp())
        self.scalers: dict[str, Scaler] = {}
        self.demand = DemandBook()

    def scaler(self, body: Mapping[str, Any]) -> Scaler:
        meta = body["metadata"]
        key = pools.key(meta["name"], meta.get("namespace") or "default")
        found = self.scalers.get(key)
        if found is None or found.uid != meta["uid"]:  # new, or deleted and created again under the same name
            found = self.scalers[key] = Scaler(meta["uid"], key)
        return found

    def forget(self, key: str, uid: str) -> None:
        if key in self.scalers and self.scalers[key].uid == uid:
            del self.scalers[key]
        self.demand.forget(key)

    def report(self, report: Report) -> list[str]:
        """Record a router's demand report; wakes (and returns) the pools whose demand went from 0 to more."""
        started = self.demand.record(report, self.clock(), known=self.scalers.__contains__)
        for key in started:
            self.scalers[key].wake.set()
        return started

    def ready(self, key: str) -> int | None:
        """Ready replicas of the pool as its scaler last wrote them: 0 for a pool this operator does not know (no
        ModelPool, so no pod a router could use), None for a known pool whose scaler has written nothing yet."""
        scaler = self.scalers.get(key)
        if scaler is None:
            return 0
        ready = scaler.status.get("readyReplicas") if scaler.status is not None else None
        return ready if isinstance(ready, int) else None

    def held(self, key: str) -> int:
        return self.demand.held(key, self.clock())

    def provider_changed(self, policy: str, provider: str) -> None:
        """The prober saw ``provider`` of ``policy`` turn Down or stop being Down: wake the pools watching it."""
        watched = f"{policy}/{provider}"
        for scaler in self.scalers.values():
            if watched in scaler.watched:
                scaler.wake.set()


# --- pods -----------------------------------------------------------------------------------------------------------


async def read_pod(client: httpx.AsyncClient, pod: Mapping[str, Any], port: int, model: str,
                   timeout_s: float) -> tuple[PodLoad, bool]:
    """The pod's load, and whether it is a Ready pod whose metrics could not be read."""
    if not pod_ready(pod):
        return PodLoad(ready=False), False
    url = metrics_url(pod["status"]["podIP"], port)
    try:
        async with asyncio.timeout(timeout_s):
            resp = await client.get(url, timeout=timeout_s)
        resp.raise_for_status()
        return parse_vllm_metrics(resp.text, model), False
    except (TimeoutError, httpx.HTTPError, ValueError) as exc:
        logger.debug("metrics of pod %s not read: %s", (pod.get("metadata") or {}).get("name"), exc)
        return PodLoad(ready=False), True


async def read_pods(client: httpx.AsyncClient, pods: list[JsonObj], port: int, model: str,
                    timeout_s: float) -> tuple[list[PodLoad], int]:
    """Every pod's load (concurrently, at most :data:`SCRAPE_CONCURRENCY` at once) and how many were unreadable."""
    gate = asyncio.Semaphore(SCRAPE_CONCURRENCY)

    async def one(pod: JsonObj) -> tuple[PodLoad, bool]:
        async with gate:
            return await read_pod(client, pod, port, model, timeout_s)

    results = await asyncio.gather(*(one(p) for p in pods))
    return [load for load, _ in results], sum(bad for _, bad in results)


# --- I/O ------------------------------------------------------------------------------------------------------------


async def apply(kube: Kube, pool: ModelPool, replicas: int, cache: CacheView) -> None:
    """Create or patch the pool's objects at ``replicas``; delete the cache claim the spec no longer wants."""
    uid = pool.metadata.uid or ""
    try:
        for obj in pool_manifests.owned_objects(pool, replicas):
            await kube.apply(obj, uid, cache)
    except NotOwned as exc:
        k = exc.key
        msg = f"{k.kind} {k.namespace}/{k.name} exists and is not owned by this ModelPool; it is left alone"
        raise Rejected(VALID, st.Cond(st.FALSE, "ObjectConflict", msg)) from None
    if pool_manifests.cache_claim(pool) is None:
        claim = pool_manifests.cache_claim_name(pool.metadata.name)
        await kube.delete_owned(ObjectKey("v1", "PersistentVolumeClaim", deployment_key(pool).namespace, claim), uid,
                                cache)


async def write_status(kube: Kube, scaler: Scaler, body: Mapping[str, Any], accepted: st.Cond,
                       ready: st.Cond | None = None, sizing: Sizing | None = None) -> None:
    """Patch status when it changed in more than its message (the status last written is remembered: this
    operator is its only writer); Warning Events for a spec or an object conflict turning up."""
    meta = body["metadata"]
    previous = scaler.status if scaler.status is not None else body.get("status")
    now = format_time(datetime.datetime.now(datetime.UTC).timestamp())
    new, changes = pool_status(previous, meta.get("generation"), now, accepted, ready, sizing)
    if worth_writing(previous, new):
        patch = st.status_patch(previous, new)
        if patch is not None:
            await kube.patch_status("ModelPool", meta["namespace"], meta["name"], patch)
        scaler.status = new
    for change in changes:
        if change.cond.status == st.FALSE and change.cond.reason in ("InvalidSpec", "ObjectConflict"):
            post_event(body, warning=True, reason=change.cond.reason, message=change.cond.message)


def watched_providers(memo: kopf.Memo, indexes: Mapping[str, Any], spec: ModelPoolSpec) -> tuple[WatchedProvider, ...]:
    """``prewarm.whenDown`` with the prober's live view of each provider (else the policy's status)."""
    if spec.prewarm is None:
        return ()
    out = []
    for w in spec.prewarm.when_down:
        health = memo.get("health", {}).get(w.policy)
        if not health:
            raw = first(indexes["policies_by_name"], w.policy) if "policies_by_name" in indexes else None
            health = st.health_of(ProviderPolicyStatus.model_validate((raw or {}).get("status") or {}))
        state = health[w.provider].state if w.provider in health else ProviderState.UNKNOWN
        out.append(WatchedProvider.from_state(f"{w.policy}/{w.provider}", state))
    return tuple(out)


async def scale_once(scaler: Scaler, body: kopf.Body, memo: kopf.Memo, indexes: Mapping[str, Any],
                     client: httpx.AsyncClient) -> float:
    """One scaler step (see the module notes); returns the seconds until the next one."""
    settings: Settings = memo.settings
    registry: PoolRegistry = memo.pools
    kube: Kube = memo.kube
    owned: Owned = memo.owned
    async with scaler.lock:
        try:
            pool = parse(body)
        except Rejected:
            return IDLE_S  # on_pool has reported it; an update wakes this scaler
        spec, cache = pool.spec, owned.view(indexes)
        interval = max(spec.interval_s(), MIN_INTERVAL_S)
        scaler.watched = frozenset(pools.watched_keys(spec))
        ns, name = deployment_key(pool).namespace, pool.metadata.name
        size = current_size(pool, cache.get(deployment_key(pool)), scaler.replicas)
        pods = [p for p in await kube.list_labelled("v1", "Pod", ns, pool_manifests.selector_labels(name))
                if not leaving(p)]
        loads, unreadable = await read_pods(client, pods, settings.pool_metrics_port, spec.served_name,
                                            min(SCRAPE_TIMEOUT_S, interval))
        now, held = registry.clock(), registry.held(scaler.key)
        watched = watched_providers(memo, indexes, spec)
        state = scaler.state if scaler.state is not None else restored_state(pool.status, watched, now)
        decision = decide(pools.scaling_policy(spec), Observation(now, size, tuple(loads), held, watched), state)
        logger.debug("pool %s: %s", scaler.key, decision.message)
        try:
            await apply(kube, pool, decision.replicas, cache)
        except Rejected as rejected:
            await write_status(kube, scaler, body, rejected.accepted, rejected.ready)
            return interval
        scaler.state, scaler.replicas = decision.state, decision.replicas
        if decision.changed:
            scaled(body, scaler.key, size, decision)
        if unreadable != scaler.unreadable:
            logger.log(logging.WARNING if unreadable else logging.INFO, "pool %s: /metrics of %d Ready pod(s) did "
                       "not answer or parse (counted as not ready)", scaler.key, unreadable)
            scaler.unreadable = unreadable
        ready = sum(load.ready for load in loads)
        metrics.set_pool(ns, name, decision.replicas, ready, held)
        metrics.pool_scrape_failures(ns, name, unreadable)
        sizing = Sizing(len(pods), ready, decision, format_time(now) if decision.changed else None, unreadable)
        await write_status(kube, scaler, body, VALID, sizing=sizing)
        return interval


def scaled(body: kopf.Body, key: str, old: int, decision: Decision) -> None:
    message = f"scaled from {old} to {decision.replicas} replicas: {decision.message}"
    logger.info("pool %s %s", key, message)
    post_event(body, warning=False, reason="Scaled", message=message)
    meta = body["metadata"]
    metrics.pool_scaled(meta.get("namespace") or "default", meta["name"], decision.reason)


# --- handlers -------------------------------------------------------------------------------------------------------


async def on_pool(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """resume + create + update: apply the objects at the current size, report Accepted, wake the scaler."""
    registry: PoolRegistry = memo.pools
    owned: Owned = memo.owned
    kube: Kube = memo.kube
    scaler = registry.scaler(body)
    async with scaler.lock:
        with metrics.timed_reconcile("ModelPool") as outcome:
            try:
                pool = parse(body)
                size = current_size(pool, owned.view(kwargs).get(deployment_key(pool)), scaler.replicas)
                await apply(kube, pool, size, owned.view(kwargs))
            except Rejected as rejected:
                outcome.result = metrics.Result.COMPILE_ERROR if rejected.permanent else metrics.Result.ERROR
                await write_status(kube, scaler, body, rejected.accepted, rejected.ready)
                if rejected.permanent:
                    raise kopf.PermanentError(str(rejected)) from None
                return
            scaler.replicas = size
            scaler.watched = frozenset(pools.watched_keys(pool.spec))
            await write_status(kube, scaler, body, VALID)
    scaler.wake.set()


async def on_scaler(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """The daemon: a scaler step every interval or when woken, until the pool is deleted or the operator stops
    (kopf cancels it then). ``body`` and the indexes in ``kwargs`` are kopf's live views."""
    registry: PoolRegistry = memo.pools
    owned: Owned = memo.owned
    scaler = registry.scaler(body)
    uid = body["metadata"]["uid"]
    owned.wakeups[uid] = scaler.wake  # drift of an owned object wakes the scaler (controller.cache)
    headers = {"User-Agent": f"llmroute-operator/{__version__} (pool metrics)"}
    try:
        async with httpx.AsyncClient(headers=headers, follow_redirects=False) as client:
            while not stopped:
                try:
                    delay = await scale_once(scaler, body, memo, kwargs, client)
                except kopf.TemporaryError as exc:
                    logger.warning("scaling %s failed, retrying: %s", scaler.key, exc)
                    delay = exc.delay or RETRY_S
                except Exception:  # a bug must not end scaling for good (kopf does not restart exited daemons)
                    logger.exception("scaling %s failed; trying again in %gs", scaler.key, IDLE_S)
                    delay = IDLE_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(scaler.wake.wait(), delay)
                scaler.wake.clear()
    finally:
        if owned.wakeups.get(uid) is scaler.wake:
            del owned.wakeups[uid]


async def on_pool_delete(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    meta = body["metadata"]
    ns = meta.get("namespace") or "default"
    owned: Owned = memo.owned
    kube: Kube = memo.kube
    for key in owned_keys(meta["name"], ns):
        await kube.delete_owned(key, meta["uid"], owned.view(kwargs))
    registry: PoolRegistry = memo.pools
    registry.forget(pools.key(meta["name"], ns), meta["uid"])
    metrics.forget_pool(ns, meta["name"])


def register(registry: kopf.OperatorRegistry) -> None:
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(*POOLS, registry=registry, id="reconcile")(on_pool)
    kopf.daemon(*POOLS, registry=registry, id="scaler", cancellation_timeout=CANCELLATION_TIMEOUT_S)(on_scaler)
    kopf.on.delete(*POOLS, registry=registry, id="cleanup")(on_pool_delete)
