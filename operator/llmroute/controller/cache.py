"""The watch cache of owned objects (the informer pattern): what reconciles read instead of GETs, and what wakes a
route when something it owns changes. Registered by :func:`llmroute.controller.register`; read by
:mod:`llmroute.controller.routes` through :class:`CacheView` (an :class:`~llmroute.controller.kube.ObjectCache`).

* **Indexes.** One kopf index per owned kind (ConfigMap, Deployment, Service, PodDisruptionBudget,
  HorizontalPodAutoscaler, Secret, PersistentVolumeClaim, NetworkPolicy) holds every object labelled
  ``app.kubernetes.io/managed-by: llmroute-operator`` under (namespace, name), in its
  :func:`~llmroute.core.manifests.comparable` form: identity,
  labels, owner references, spec, the Deployment's status, and SHA-256 digests instead of ConfigMap/Secret values (no
  provider key is ever held by the cache, and a compiled config costs 71 bytes). Each is kept as compact JSON text and
  parsed only when a reconcile looks it up: a third of the memory of the parsed form, which matters at thousands of
  objects (the 1,000-route benchmark's operator stays under its 200 MB budget). The label is filtered twice:
  server-side, by a label selector on each watch (:func:`configure`), so a real API server streams only the operator's
  own objects - in particular not every Secret of the cluster; and client-side by the handlers' ``labels=`` filter (the
  API emulator of the tests ignores selectors). kopf fills every index before any handler runs, so a restarted operator
  sees what exists and creates nothing twice.
* **Write-through.** The watch delivers the operator's own writes a little later. Until then :class:`Owned` keeps
  each written object (``pending``, in comparable form, dropped when the watch echoes the same ``resourceVersion``
  or after :data:`PENDING_TTL_S`), and :class:`CacheView` answers from it: a reconcile that follows right after
  another compares against what was written, not against a stale copy, and sends nothing. Events older than the
  write (the stream is ordered, so anything before the echo) neither replace it nor wake anybody.
* **Wake-ups (event-driven drift repair and readiness).** Every watch event that is not the echo of the operator's own
  write and changes an object's fingerprint (its comparable form without ``resourceVersion`` and status, plus the
  router's readiness for a Deployment) sets the owning route's (or ModelPool scaler's) wake-up event (found by the
  controller owner reference's uid); the route's worker (:func:`llmroute.controller.routes.on_worker`) then reconciles
  from the cache right away. So a ConfigMap deleted or a Deployment edited by hand is repaired within one reconcile, and
  ``Ready`` follows the Deployment's availability as soon as it changes; status-only churn (an HPA's current metrics, a
  Deployment's observedGeneration) wakes nobody. The periodic resync stays as a safety net and costs no request when
  nothing differs.
* **Source Secrets are not watched.** The provider key Secrets a ProviderPolicy names live outside the operator's
  objects (often in a platform namespace, or in the route's own namespace without the operator's label). Watching
  them would mean a watch on *all* Secrets (a selector cannot name them), i.e. every secret of the cluster held in
  the operator's memory, which a platform team will not accept. :class:`SourceSecrets` reads each named Secret with
  a direct GET and keeps it for the TTL (``Settings.secret_ttl_seconds``, default :data:`SECRET_TTL_S`; one read
  per Secret and TTL, however many routes use it). Foreign keys are copied from it; for keys in the route's own
  namespace (referenced by the router directly) only their digests are used, for the router's
  ``llmroute.io/keys-hash`` (:mod:`llmroute.core.manifests`). So a rotated key reaches the copies, and rolls the
  routers that use it, at the first reconcile or resync after the TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from llmroute.controller import status as st
from llmroute.controller.indexes import first
from llmroute.controller.kube import JsonObj, Kube
from llmroute.core.manifests import MANAGED_BY, ObjectKey, comparable, key_of, value_digest

MANAGED_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
OWNED_RESOURCES: Mapping[str, tuple[str, str]] = {
    "ConfigMap": ("v1", "configmaps"), "Deployment": ("apps/v1", "deployments"), "Service": ("v1", "services"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"), "Secret": ("v1", "secrets"),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims"),
    "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicies"),
}
OWNER_KINDS = ("LLMRoute", "ModelPool")
"""Kinds whose workers a change to an object they control wakes (routes, and the scalers of ModelPools)."""
INDEX_IDS: Mapping[str, str] = {kind: f"owned_{plural}" for kind, (_, plural) in OWNED_RESOURCES.items()}
PENDING_TTL_S = 30.0
"""How long a written object stands in for the watch's copy at most (a watch that reconnected may never echo it)."""
SECRET_TTL_S = 30.0


@dataclass(frozen=True)
class Pending:
    """An object the operator wrote and the watch has not echoed yet (``obj`` None: deleted by the operator)."""

    resource_version: str | None
    obj: JsonObj | None
    until: float


def fingerprint(obj: Mapping[str, Any]) -> str:
    """What a change must touch to concern the owning route: the comparable form minus resourceVersion and status,
    plus the router's readiness for a Deployment."""
    form = comparable(obj)
    form["metadata"].pop("resourceVersion", None)
    status = form.pop("status", None)
    if form.get("kind") == "Deployment":
        ready = st.deployment_ready({"spec": form.get("spec") or {}, "status": status or {}})
        form["ready"] = [ready.status, ready.message]
    text = json.dumps(form, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the LLMRoute or ModelPool that controls ``obj``, if any."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((r.get("uid") for r in refs if r.get("controller") and r.get("kind") in OWNER_KINDS), None)


class Owned:
    """Operator-wide state next to the indexes (``memo.owned``): pending writes, fingerprints, route wake-ups."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pending: dict[ObjectKey, Pending] = {}
        self.fingerprints: dict[ObjectKey, str] = {}
        self.wakeups: dict[str, asyncio.Event] = {}

    def view(self, indexes: Mapping[str, Any]) -> CacheView:
        """The cache as a handler sees it (kopf passes the indexes to every handler as keyword arguments)."""
        return CacheView(self, indexes)

    def fresh_pending(self, key: ObjectKey) -> Pending | None:
        pending = self.pending.get(key)
        if pending is not None and pending.until <= self.clock():
            del self.pending[key]
            return None
        return pending

    def observe(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """Take note of a watch event; True if it is someone else's change that concerns the owning route.
        ``event_type`` None is kopf's initial listing: noted, never a wake-up (every route is resumed anyway)."""
        key = key_of(obj)
        pending = self.fresh_pending(key)
        if event_type == "DELETED":
            self.fingerprints.pop(key, None)
            self.pending.pop(key, None)
            return pending is None or pending.obj is not None  # not the echo of the operator's own delete
        if pending is not None:
            if pending.resource_version != (obj.get("metadata") or {}).get("resourceVersion"):
                return False  # older than the operator's write: the watch has not caught up yet
            del self.pending[key]
        new = fingerprint(obj)
        changed = self.fingerprints.get(key) != new
        self.fingerprints[key] = new
        return changed and event_type is not None

    def wake(self, obj: Mapping[str, Any]) -> bool:
        """Wake the worker of the route that controls ``obj``; False if it has none (no route, or being deleted)."""
        uid = controller_uid(obj)
        event = self.wakeups.get(uid) if uid is not None else None
        if event is not None:
            event.set()
        return event is not None


class CacheView:
    """:class:`~llmroute.controller.kube.ObjectCache` over the kopf indexes and the operator's pending writes."""

    def __init__(self, owned: Owned, indexes: Mapping[str, Any]) -> None:
        self.owned, self.indexes = owned, indexes

    def _indexed(self, key: ObjectKey) -> JsonObj | None:
        index = self.indexes.get(INDEX_IDS.get(key.kind, ""))
        text = first(index, (key.namespace, key.name)) if index is not None else None
        found: JsonObj | None = json.loads(text) if text is not None else None
        return found

    def get(self, key: ObjectKey) -> JsonObj | None:
        pending = self.owned.fresh_pending(key)
        return pending.obj if pending is not None else self._indexed(key)

    def wrote(self, key: ObjectKey, live: JsonObj | None) -> None:
        rv = (live or {}).get("metadata", {}).get("resourceVersion")
        indexed = self._indexed(key)
        if live is not None and indexed is not None and indexed["metadata"].get("resourceVersion") == rv:
            return  # the watch was faster than the API's answer: the index already holds this write
        obj = comparable(live) if live is not None else None
        self.owned.pending[key] = Pending(rv, obj, self.owned.clock() + PENDING_TTL_S)
        if live is not None:
            self.owned.fingerprints[key] = fingerprint(live)


@dataclass(frozen=True)
class _Read:
    at: float
    data: dict[str, str]
    digests: dict[str, str]


class SourceSecrets:
    """Provider key Secrets named by policies, read with a direct GET and kept for ``ttl`` (see the module notes);
    concurrent reconciles wanting the same Secret share one read. Values stay base64 and are never logged; their
    digests (:func:`~llmroute.core.manifests.value_digest`) are computed once per read."""

    def __init__(self, kube: Kube, ttl: float = SECRET_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube, self._ttl, self._clock = kube, ttl, clock
        self._reads: dict[tuple[str, str], _Read] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def _read(self, namespace: str, name: str) -> _Read:
        where = (namespace, name)
        async with self._locks.setdefault(where, asyncio.Lock()):
            cached = self._reads.get(where)
            if cached is None or self._clock() - cached.at >= self._ttl:
                data = await self._kube.read_secret_data(namespace, name)
                cached = _Read(self._clock(), data, {k: value_digest(v) for k, v in data.items()})
                self._reads[where] = cached
            return cached

    async def data(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's base64 values (empty if it is missing)."""
        return (await self._read(namespace, name)).data

    async def digests(self, namespace: str, name: str) -> dict[str, str]:
        """The SHA-256 digest of each of the Secret's values, from the same read as :meth:`data`."""
        return (await self._read(namespace, name)).digests


def index_owned(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], str]:
    return {(namespace or "", name): json.dumps(comparable(body), separators=(",", ":"))}


async def on_owned_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Someone else changed an owned object: wake its route (the index already holds the new version)."""
    owned: Owned = memo.owned
    if owned.observe(type, body):
        owned.wake(body)


def configure(settings: kopf.OperatorSettings) -> None:
    """Server-side label selectors on the owned kinds' watches (see the module notes)."""
    for api_version, plural in OWNED_RESOURCES.values():
        settings.watching.label_selectors[api_version, plural] = MANAGED_SELECTOR


def register(registry: kopf.OperatorRegistry) -> None:
    for kind, (api_version, plural) in OWNED_RESOURCES.items():
        kopf.index(api_version, plural, registry=registry, id=INDEX_IDS[kind], labels=MANAGED_LABELS)(index_owned)
        kopf.on.event(api_version, plural, registry=registry, id=f"watch_{plural}",
                      labels=MANAGED_LABELS)(on_owned_event)
