"""Leader election: one active operator replica, chosen through a ``coordination.k8s.io/v1`` Lease.

**Why a Lease held by the process, and not kopf peering.** Everything the operator does must stop on a standby,
not only kopf's handlers: the provider prober and the ModelPool scalers are kopf daemons, but the demand endpoint
(:mod:`llmroute.controller.demand`) and the metrics server are not, and kopf peering pauses handlers only. Peering
also needs a cluster-wide ``ClusterKopfPeering`` CRD and RBAC for it, freezes replicas of equal priority against
each other (two identical pods would both stop), and only notices a dead peer after its lifetime. So the process
holds a Lease (the controller-runtime/client-go way): a standby starts nothing but its health, metrics and a demand
endpoint that answers 503; once it holds the Lease it starts kopf in-process (:func:`llmroute.controller.run
.run_operator`), and when it cannot renew the Lease it **exits** (crash-only: no half-stopped operator, no write
from a worker thread after the other replica took over; the kubelet restarts it as a standby). The RBAC it needs
is one namespaced Role: ``leases: create`` and ``get``/``update`` on the one named Lease (:func:`llmroute.controller
.rbac.lease_role`).

**Timing** (:class:`Timing`, client-go's algorithm with shorter periods): the holder renews every 2 s and gives up
(exits) when it has not renewed for 6 s; a standby polls every second and takes the Lease over when it has seen it
unchanged for its 8 s duration, measured on its own monotonic clock (no clock skew between nodes matters). The
holder's deadline (6 s from the *start* of its last successful renewal) ends before any standby's expiry (8 s from
*seeing* that renewal), so two replicas are never active at once. After a SIGKILL the takeover takes 8-9 s plus the
operator's start; after SIGTERM (rollouts, drains) the holder stops kopf, then releases the Lease (empty holder),
and the standby takes it within a second. A restarted container of the holder's own pod (same identity) takes the
Lease back at once: its previous process is gone.

**Who is active** is visible as the Lease's ``holderIdentity`` (``kubectl get lease``), the metric
``llmroute_operator_leader`` (1 on the active replica) and an Event ``LeaderElected`` on the Lease on each change
of holder (one per takeover, never per renewal).

The decisions (:func:`may_acquire`, :func:`taken`, :func:`released`, :class:`Observer`) are pure; :class:`Elector`
does the API calls through :class:`~llmroute.controller.kube.Kube` (its own client, so a busy reconcile pool never
delays a renewal), and :class:`Renewal` renews from a thread with its own event loop (client-go's goroutine), so
neither a long initial listing in kopf's loop nor a starved CPU stalls renewals past the deadline.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf

from llmroute.controller.kube import JsonObj, Kube
from llmroute.core.manifests import ObjectKey

logger = logging.getLogger(__name__)

API_VERSION = "coordination.k8s.io/v1"
EVENT_REASON = "LeaderElected"
COMPONENT = "llmroute-operator"
WARN_EVERY_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    """How often the holder renews, when it gives up, how long the Lease lasts and how often a standby looks."""

    lease_s: float = 8.0
    renew_every_s: float = 2.0
    renew_deadline_s: float = 6.0
    retry_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_every_s < self.renew_deadline_s < self.lease_s:
            raise ValueError("lease timing needs 0 < renew_every < renew_deadline < lease duration")


@dataclass(frozen=True)
class Record:
    """The Lease's spec as the election reads it."""

    holder: str
    lease_s: float
    transitions: int
    renew_time: str

    @classmethod
    def of(cls, lease: JsonObj) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_s=float(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            renew_time=str(spec.get("renewTime") or ""),
        )


class Observer:
    """When this replica last saw the Lease change (on its own clock): expiry is measured from there."""

    def __init__(self) -> None:
        self.record: Record | None = None
        self.since = 0.0

    def see(self, record: Record, now: float) -> None:
        if record != self.record:
            self.record, self.since = record, now


def may_acquire(record: Record | None, me: str, observed_since: float, now: float) -> bool:
    """Whether ``me`` may take the Lease: there is none, nobody or ``me`` holds it, or it has not changed for its
    duration since this replica first saw it that way."""
    if record is None or record.holder in ("", me):
        return True
    return now - observed_since >= record.lease_s


def micro_time(now: datetime.datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_lease(namespace: str, name: str, me: str, now: datetime.datetime, timing: Timing) -> JsonObj:
    stamp = micro_time(now)
    return {
        "apiVersion": API_VERSION,
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": COMPONENT, "app.kubernetes.io/component": "operator"},
        },
        "spec": {
            "holderIdentity": me,
            "leaseDurationSeconds": round(timing.lease_s),
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 0,
        },
    }


def taken(lease: JsonObj, me: str, now: datetime.datetime, timing: Timing) -> JsonObj:
    """``lease`` held (or renewed) by ``me`` at ``now``; a change of holder counts a transition and a new
    ``acquireTime``. Keeps ``metadata.resourceVersion``, which makes the PUT conditional."""
    spec = dict(lease.get("spec") or {})
    stamp = micro_time(now)
    if spec.get("holderIdentity") != me:
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec["acquireTime"] = stamp
    spec.update(holderIdentity=me, leaseDurationSeconds=round(timing.lease_s), renewTime=stamp)
    return {**lease, "spec": spec}


def released(lease: JsonObj, now: datetime.datetime) -> JsonObj:
    """``lease`` given up (client-go's release: no holder, a one-second duration), for a handover without waiting."""
    spec = {**(lease.get("spec") or {}), "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time(now)}
    return {**lease, "spec": spec}


def takeover_event(lease: JsonObj, me: str, previous: str, now: datetime.datetime) -> JsonObj:
    meta = lease["metadata"]
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = f"{me} is the active operator replica" + (f", taking over from {previous}" if previous else "")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:10]}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": "Lease",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "reason": EVENT_REASON,
        "message": message,
        "type": "Normal",
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": me,
    }


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Elector:
    """Acquires, renews and releases one Lease for this replica (``identity``)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.timing = timing or Timing()
        self.clock, self.wall = clock, wall
        self.observer = Observer()
        self.leading = False
        self._lease: JsonObj | None = None
        self._renewed_at = 0.0
        self._last_warning = -WARN_EVERY_S

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(API_VERSION, "Lease", self.namespace, self.name)

    async def _within(self, call: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(call, max(seconds, 0.05))

    async def acquire(self) -> None:
        """Return once this replica holds the Lease (polls every ``retry_s``; API errors are retried)."""
        while True:
            try:
                if await self._try_acquire():
                    return
            except (kopf.TemporaryError, TimeoutError) as exc:
                now = self.clock()
                if now - self._last_warning >= WARN_EVERY_S:  # a standby polls every second: do not flood the log
                    self._last_warning = now
                    logger.warning(
                        "lease %s/%s: %s (logged at most once a minute)",
                        self.namespace,
                        self.name,
                        exc or type(exc).__name__,
                    )
            await asyncio.sleep(self.timing.retry_s)

    async def _try_acquire(self) -> bool:
        budget = self.timing.renew_deadline_s
        lease = await self._within(self.kube.get(self.key), budget)
        started = self.clock()
        if lease is None:
            won = await self._within(
                self.kube.create(new_lease(self.namespace, self.name, self.identity, self.wall(), self.timing)), budget
            )
            previous = ""
        else:
            record = Record.of(lease)
            self.observer.see(record, started)
            if not may_acquire(record, self.identity, self.observer.since, started):
                return False
            won = await self._within(self.kube.replace(taken(lease, self.identity, self.wall(), self.timing)), budget)
            previous = "" if record.holder == self.identity else record.holder
        if won is None:
            return False  # another replica wrote first
        self._lease, self._renewed_at, self.leading = won, started, True
        logger.info(
            "lease %s/%s acquired by %s%s",
            self.namespace,
            self.name,
            self.identity,
            f" (was {previous})" if previous else "",
        )
        if lease is None or previous or Record.of(lease).holder == "":
            await self._post_event(won, previous)
        return True

    async def _post_event(self, lease: JsonObj, previous: str) -> None:
        try:
            await self._within(
                self.kube.create(takeover_event(lease, self.identity, previous, self.wall())), self.timing.retry_s
            )
        except (kopf.TemporaryError, TimeoutError) as exc:
            logger.warning("could not post the %s Event: %s", EVENT_REASON, exc)

    async def hold(self) -> None:
        """Renew the Lease until that fails for ``renew_deadline_s`` or another replica holds it; then return
        (the caller must stop acting at once)."""
        while self.leading:
            await asyncio.sleep(self.timing.renew_every_s)
            while True:
                started = self.clock()
                remaining = self._renewed_at + self.timing.renew_deadline_s - started
                if remaining <= 0:
                    logger.error(
                        "lease %s/%s: not renewed for %.1fs", self.namespace, self.name, self.timing.renew_deadline_s
                    )
                    self.leading = False
                    return
                try:
                    renewed = await self._within(self._renew(), remaining)
                except (kopf.TemporaryError, TimeoutError) as exc:
                    logger.warning("lease %s/%s: renewal failed: %s", self.namespace, self.name, exc)
                    await asyncio.sleep(min(self.timing.retry_s, max(remaining - 0.1, 0.0)))
                    continue
                if not renewed:
                    logger.error("lease %s/%s is held by another replica", self.namespace, self.name)
                    self.leading = False
                    return
                self._renewed_at = started
                break

    async def _renew(self) -> bool:
        assert self._lease is not None
        updated = await self.kube.replace(taken(self._lease, self.identity, self.wall(), self.timing))
        if updated is None:  # our copy is stale: still ours?
            fresh = await self.kube.get(self.key)
            if fresh is None or Record.of(fresh).holder != self.identity:
                return False
            updated = await self.kube.replace(taken(fresh, self.identity, self.wall(), self.timing))
            if updated is None:
                return False
        self._lease = updated
        return True

    async def release(self) -> None:
        """Give the Lease up (after this replica has stopped acting), so a standby takes over within a second."""
        if not self.leading or self._lease is None:
            return
        self.leading = False
        try:
            await self._within(self.kube.replace(released(self._lease, self.wall())), self.timing.retry_s * 2)
            logger.info("lease %s/%s released by %s", self.namespace, self.name, self.identity)
        except (kopf.TemporaryError, TimeoutError) as exc:
            logger.warning("lease %s/%s not released (it expires by itself): %s", self.namespace, self.name, exc)


class Renewal:
    """:meth:`Elector.hold` in a thread of its own, with its own event loop: a busy or stalled operator loop (a large
    initial listing, a starved CPU) must not delay renewals and cost the leadership. When the Lease is lost,
    ``on_lost`` is called from that thread (the operator ends the process there); :meth:`stop` ends the renewals
    (then :meth:`Elector.release` may run in the caller's loop)."""

    def __init__(self, elector: Elector, on_lost: Callable[[], object]) -> None:
        self.elector, self.on_lost = elector, on_lost
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        self._started.set()
        try:
            await self.elector.hold()
        except asyncio.CancelledError:
            return
        self.on_lost()

    async def stop(self) -> None:
        if self._loop is not None and self._task is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._task.cancel)
        await asyncio.to_thread(self._thread.join, self.elector.timing.renew_deadline_s)


def status(elector: Elector) -> dict[str, Any]:
    """What ``/healthz`` says about this replica."""
    record = elector.observer.record
    holder = elector.identity if elector.leading else (record.holder if record else "")
    return {"identity": elector.identity, "leader": elector.leading, "holder": holder}
