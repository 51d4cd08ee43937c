"""LLMRoute handlers: one level-based reconcile for resume, create, update, owned-object changes and the resync.

``reconcile()`` recomputes everything from the route's spec, the ProviderPolicy found in the index and the owned
objects found in the watch cache (:mod:`llmroute.controller.cache`), never from the diff that triggered it: parse →
look up the policy → compile → build the desired objects → compare with the cache → write what differs → status. So
the same handler serves a restart (resume), a new route, a spec change, a policy change (the policy handler bumps the
route's ``llmroute.io/policy-hash`` annotation, which kopf sees as an update), drift and the router's readiness.
Objects are written only when they differ from the cache; status only when it changed. A reconcile on the same
inputs sends **no request at all** (no GET either).

Decisions:

* **Event-driven drift repair and readiness, not polling.** Each route has a worker (``on_worker``, a kopf daemon)
  that sleeps until the cache wakes it - an owned object was edited or deleted by someone else, or the Deployment's
  availability changed - and then reconciles at once. It also wakes every ``resync_seconds`` (jittered by
  ±:data:`RESYNC_JITTER`, so routes created together do not resync in one wave) as a safety net; that resync
  compares against the cache and sends nothing when nothing differs.
* **Status is remembered.** The operator is the only writer of an LLMRoute's status, so the status it last wrote
  (``memo.statuses``) is the current one, even when the route's body in hand predates the watch event of that
  write (a worker woken right after a reconcile): conditions and Events are computed against it, never twice.
* **Missing or broken policy, compile errors: keep the last good router.** The route gets ``Ready=False`` (reason
  ``PolicyNotFound``/``CompileFailed``...) and a Warning Event, and the operator leaves the ConfigMap and Deployment
  as they are. The running config was compiled under a policy that allowed it, and residency is enforced by the
  router from that config, so nothing is sent anywhere the last accepted policy forbade; scaling to zero instead
  would turn a typo or a delete-and-recreate of the policy into an outage for every application. A route that was
  never compiled gets no router at all.
* **Deletion** removes the owned objects explicitly (``@kopf.on.delete``), those the cache knows, besides the
  ownerReferences the API server's garbage collector follows: cheap, immediate, and observable on API servers
  without GC (the emulator).
* Reconciles of one route are serialised with a lock, as the worker may wake while a handler runs; at most
  ``setup.RECONCILE_CONCURRENCY`` run at once (bounded memory when a thousand routes start together).
* **Provider keys** are read through :class:`~llmroute.controller.cache.SourceSecrets` (a GET per Secret and TTL,
  not a watch; see there why): keys in other namespaces are copied into ``<route>-provider-keys``; of keys in the
  route's namespace only the digests are taken. Both feed the Deployment's ``llmroute.io/keys-hash``, so a rotated
  key rolls the router (env vars are read at pod start) within one TTL plus one resync.
* **Provider health** comes from the prober's in-memory view (``memo.health``, never behind the API), else from the
  policy's status in the index (right after a restart). The prober bumps ``llmroute.io/provider-health`` on the
  route when the set of Down/Misconfigured providers changes, which brings it here; health changes status and
  Events (``Failover``/``Failback``, ``lastFailover``) but never the compiled config, so no owned object is written.
* Every reconcile is counted and timed (:mod:`llmroute.controller.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import random
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderHealth, ProviderPolicy
from llmroute.controller import metrics
from llmroute.controller import status as st
from llmroute.controller.cache import CacheView, Owned, SourceSecrets
from llmroute.controller.indexes import ROUTES, first
from llmroute.controller.issuer import IssuerKeys
from llmroute.controller.kube import Kube, NotOwned, post_event
from llmroute.controller.settings import Settings
from llmroute.core import manifests
from llmroute.core.compile import Issuer, compile_route
from llmroute.core.router_config import RouterConfig
from llmroute.errors import CompileError, FieldError

logger = logging.getLogger(__name__)

Body = Mapping[str, Any]
RESYNC_JITTER = 0.25
WORKER_CANCELLATION_S = 5.0
COMPILED = st.Cond(st.TRUE, "Compiled", "the spec compiles against its ProviderPolicy")


class Rejected(Exception):
    """The route cannot be rolled out as it is; ``ready``/``accepted`` say why (becomes status, not a retry)."""

    def __init__(self, accepted: st.Cond, ready: st.Cond, permanent: bool = False) -> None:
        super().__init__(accepted.message or ready.message)
        self.accepted, self.ready, self.permanent = accepted, ready, permanent


async def on_route(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """resume + create + update: reconcile; an invalid spec is a permanent error (kopf stops retrying)."""
    rejected = await reconcile(body, memo, kwargs)
    if rejected is not None and rejected.permanent:
        raise kopf.PermanentError(str(rejected))


async def on_worker(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Daemon: reconcile when the cache reports a change to an owned object, and at each jittered resync. ``body``
    and the indexes in ``kwargs`` are kopf's live views, so each reconcile sees the latest route and cache."""
    uid, owned = body["metadata"]["uid"], memo.owned
    wake = owned.wakeups.setdefault(uid, asyncio.Event())
    interval: float = memo.settings.resync_seconds
    try:
        while not stopped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval * random.uniform(1 - RESYNC_JITTER, 1 + RESYNC_JITTER))
            wake.clear()
            if stopped:
                break
            try:
                await reconcile(body, memo, kwargs)
            except kopf.TemporaryError as exc:  # the API failed: try again soon, not only at the next resync
                logger.warning("reconcile of %s failed, retrying: %s", body["metadata"]["name"], exc)
                await stopped.wait(exc.delay or 1.0)
                wake.set()
    finally:
        if owned.wakeups.get(uid) is wake:
            del owned.wakeups[uid]


async def on_route_delete(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    meta = body["metadata"]
    kube: Kube = memo.kube
    cache = cache_view(memo, kwargs)
    for key in manifests.all_owned_keys(meta["name"], meta.get("namespace") or "default"):
        await kube.delete_owned(key, meta["uid"], cache)
    memo.locks.pop(meta["uid"], None)
    memo.statuses.pop(meta["uid"], None)


def cache_view(memo: kopf.Memo, indexes: Mapping[str, Any]) -> CacheView:
    owned: Owned = memo.owned
    return owned.view(indexes)


REJECTED_RESULTS = {"PolicyNotFound": metrics.Result.POLICY_NOT_FOUND, "CompileFailed": metrics.Result.COMPILE_ERROR,
                    "InvalidSpec": metrics.Result.COMPILE_ERROR, "PolicyInvalid": metrics.Result.COMPILE_ERROR}


async def reconcile(body: Body, memo: kopf.Memo, indexes: Mapping[str, Any]) -> Rejected | None:
    """Make the cluster match the route; returns why the route was rejected, if it was. ``indexes``: kopf's."""
    locks: dict[str, asyncio.Lock] = memo.locks
    gate: asyncio.Semaphore = memo.gate  # shared: kopf gives each object a shallow copy of the operator's memo
    async with locks.setdefault(body["metadata"]["uid"], asyncio.Lock()), gate:
        with metrics.timed_reconcile("LLMRoute") as outcome:
            kube: Kube = memo.kube
            try:
                route, policy = parse(body), find_policy(body, indexes["policies_by_name"])
                config = compile_checked(route, policy, await issuer_for(memo, route))
                obs = await roll_out(kube, memo, route, config, cache_view(memo, indexes), policy_health(memo, policy))
            except Rejected as rejected:
                outcome.result = REJECTED_RESULTS.get(rejected.ready.reason, metrics.Result.ERROR)
                await write_status(kube, memo, body, st.RouteObservation(accepted=rejected.accepted,
                                                                         ready=rejected.ready))
                return rejected
            await write_status(kube, memo, body, obs)
            return None


def policy_health(memo: kopf.Memo, policy: ProviderPolicy) -> Mapping[str, ProviderHealth]:
    """The prober's live view of the policy's providers, else what the policy's status says."""
    live: Mapping[str, ProviderHealth] | None = memo.get("health", {}).get(policy.metadata.name)
    return live if live else st.health_of(policy.status)


def parse(body: Body) -> LLMRoute:
    try:
        return LLMRoute.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body})
    except ValidationError as exc:
        msg = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" if e["loc"][:1] == ("spec",)
                        else f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise Rejected(st.Cond(st.FALSE, "InvalidSpec", msg), st.Cond(st.FALSE, "InvalidSpec", msg),
                       permanent=True) from None


def find_policy(body: Body, policies: kopf.Index[str, Any]) -> ProviderPolicy:
    name = body["spec"]["policyRef"]["name"]
    raw = first(policies, name)
    if raw is None:
        msg = f'ProviderPolicy "{name}" does not exist; the router keeps its last good config'
        raise Rejected(st.Cond(st.UNKNOWN, "PolicyNotFound", msg), st.Cond(st.FALSE, "PolicyNotFound", msg))
    try:
        return ProviderPolicy.model_validate(raw)
    except ValidationError:
        msg = f'ProviderPolicy "{name}" is invalid (see its status); the router keeps its last good config'
        raise Rejected(st.Cond(st.FALSE, "PolicyInvalid", msg), st.Cond(st.FALSE, "PolicyInvalid", msg)) from None


async def issuer_for(memo: kopf.Memo, route: LLMRoute) -> Issuer | None:
    """The cluster's service account issuer keys, read only for a route that accepts service account tokens."""
    wanted = route.spec.access is not None and route.spec.access.service_accounts is not None
    keys: IssuerKeys | None = memo.get("issuer")
    return await keys.get() if wanted and keys is not None else None


def compile_checked(route: LLMRoute, policy: ProviderPolicy, issuer: Issuer | None = None) -> RouterConfig:
    errors: list[FieldError] = manifests.route_errors(route)
    try:
        config = compile_route(route, policy, issuer)
    except CompileError as exc:
        errors.extend(exc.errors)
    if errors:
        msg = str(CompileError(errors))
        raise Rejected(st.Cond(st.FALSE, "CompileFailed", msg),
                       st.Cond(st.FALSE, "CompileFailed", msg + "; the router keeps its last good config"))
    return config


async def roll_out(kube: Kube, memo: kopf.Memo, route: LLMRoute, config: RouterConfig, cache: CacheView,
                   health: Mapping[str, ProviderHealth]) -> st.RouteObservation:
    """Copy foreign keys, apply the desired objects, remove unwanted ones; observe the router Deployment."""
    settings: Settings = memo.settings
    copied, missing = await copy_keys(memo.secrets, route, config)
    digests = await local_key_digests(memo.secrets, route, config)
    desired = manifests.desired_objects(route, config, settings.router, copied, digests)
    uid = route.metadata.uid or ""
    try:
        applied = {manifests.key_of(obj): await kube.apply(obj, uid, cache) for obj in desired.objects}
    except NotOwned as exc:
        raise Rejected(COMPILED, st.Cond(st.FALSE, "ObjectConflict", str(exc))) from None
    for key in desired.absent:
        await kube.delete_owned(key, uid, cache)
    deployment = next(a.live for k, a in applied.items() if k.kind == "Deployment")
    return st.RouteObservation(
        accepted=COMPILED, ready=st.deployment_ready(deployment), config=config, health=dict(health),
        extra_degraded=f"provider key missing: {', '.join(missing)}" if missing else "")


async def copy_keys(secrets: SourceSecrets, route: LLMRoute,
                    config: RouterConfig) -> tuple[dict[str, str], list[str]]:
    """Read the provider keys that live in other namespaces (values stay base64; never logged)."""
    copied: dict[str, str] = {}
    missing: list[str] = []
    for cred in manifests.foreign_credentials(route, config):
        value = (await secrets.data(cred.secret_namespace or "", cred.secret_name)).get(cred.secret_key)
        if value is None:
            missing.append(f"{cred.secret_namespace}/{cred.secret_name}[{cred.secret_key}]")
        else:
            copied[cred.env] = value
    return copied, missing


async def local_key_digests(secrets: SourceSecrets, route: LLMRoute, config: RouterConfig) -> dict[str, str]:
    """Env var → digest of the key it references, for keys in the route's own namespace (absent: missing)."""
    ns = route.metadata.namespace or "default"
    digests: dict[str, str] = {}
    foreign = {c.env for c in manifests.foreign_credentials(route, config)}
    for cred in (p.credential for p in config.providers if p.credential is not None):
        if cred.env in foreign:
            continue
        digest = (await secrets.digests(cred.secret_namespace or ns, cred.secret_name)).get(cred.secret_key)
        if digest is not None:
            digests[cred.env] = digest
    return digests


async def write_status(kube: Kube, memo: kopf.Memo, body: Body, obs: st.RouteObservation) -> None:
    """Patch the status when it changed since the one this operator last wrote (else the one on ``body``)."""
    meta = body["metadata"]
    statuses: dict[str, str] = memo.statuses  # JSON text: a third of the memory of a thousand parsed statuses
    previous = json.loads(statuses[meta["uid"]]) if meta["uid"] in statuses else body.get("status")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new, changes, moved = st.route_status(previous, meta.get("generation"), now, obs)
    patch = st.status_patch(previous, new)
    if patch is not None:
        await kube.patch_status("LLMRoute", meta["namespace"], meta["name"], patch)
    statuses[meta["uid"]] = json.dumps(new, separators=(",", ":"))
    post_events(body, changes, (previous or {}).get("configHash"), new.get("configHash"))
    post_move_events(body, moved)


def post_events(body: Body, changes: list[st.Transition], old_hash: str | None, new_hash: str | None) -> None:
    """An Event per condition change and per new config; a new route's first Degraded=False and not-yet-available
    router are progress, not news, and Unknown says nothing."""
    for change in changes:
        good = change.cond.status == (st.FALSE if change.type == "Degraded" else st.TRUE)
        quiet = change.first and ((change.type == "Degraded" and good) or (change.type == "Ready" and not good))
        if change.cond.status != st.UNKNOWN and not quiet:
            post_event(body, warning=not good, reason=change.cond.reason, message=change.cond.message)
    if new_hash is not None and new_hash != old_hash:
        what = "created" if old_hash is None else f"changed from {old_hash}; rolling the router"
        post_event(body, warning=False, reason="ConfigChanged", message=f"router config {new_hash} {what}")


def post_move_events(body: Body, moved: list[st.Move]) -> None:
    """One Event per (from, to) pair: ``Failover`` (Warning) away from an unhealthy provider, ``Failback`` (Normal)
    to a recovered one."""
    groups: dict[tuple[str | None, str | None, bool], list[st.Move]] = {}
    for m in moved:
        groups.setdefault((m.from_provider, m.to_provider, m.failover), []).append(m)
    for (src, dst, failover), ms in groups.items():
        which = ", ".join(f"{m.model}/{m.data_class}" for m in ms)
        post_event(body, warning=failover, reason="Failover" if failover else "Failback",
                   message=f"{which}: {src or 'none'} -> {dst or 'none'} ({ms[0].detail})")


def register(registry: kopf.OperatorRegistry) -> None:
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(*ROUTES, registry=registry, id="reconcile")(on_route)
    kopf.daemon(*ROUTES, registry=registry, id="worker", cancellation_timeout=WORKER_CANCELLATION_S)(on_worker)
    kopf.on.delete(*ROUTES, registry=registry, id="cleanup")(on_route_delete)
