"""ProviderPolicy handlers: validate, report ``Accepted``, and fan a change out to every route that uses the policy.

Fan-out decision: the policy handler does not reconcile routes itself; it patches the annotation
``llmroute.io/policy-hash`` (a hash of the policy spec) on each dependent route found in the ``routes_by_policy``
index, and only on routes whose annotation is stale. kopf sees that as an update of the route and runs the route's
own reconcile, so every route is still reconciled by exactly one handler, serialised per object by kopf, with its
retries and status, and the annotation records on the route which policy version it was last compiled against.
The same path runs when a policy appears (routes waiting with ``PolicyNotFound`` deploy) and when it is deleted
(routes turn ``Ready=False PolicyNotFound``). A policy edit that does not change a route's compiled config changes
its ConfigMap hash not at all, so it rolls no router.

A provider whose endpoint is plain ``http://`` outside the cluster gets a ``PlaintextEndpoint`` Warning Event when
the policy is created or changed (:func:`llmroute.core.transport.plaintext`; routers warn on every config load).

Provider health (``status.providers``, ``summary`` and the ``Ready`` condition) belongs to the shared prober,
:mod:`llmroute.controller.prober`; this handler writes only ``observedGeneration`` and ``Accepted`` (a partial patch).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from llmroute.api.provider_policy import ProviderPolicy
from llmroute.controller import metrics
from llmroute.controller import status as st
from llmroute.controller.indexes import POLICIES, POLICY_HASH_ANNOTATION, RouteRef
from llmroute.controller.kube import Kube, post_event
from llmroute.core import transport

log = logging.getLogger("llmroute.controller.policies")

DELETED_HASH = "deleted"
FAN_OUT_CONCURRENCY = 16


def policy_hash(spec: Mapping[str, Any]) -> str:
    """A short, stable hash of a policy spec (canonical JSON)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def validate(body: Mapping[str, Any]) -> st.Cond:
    try:
        ProviderPolicy.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body})
    except ValidationError as exc:
        msg = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return st.Cond(st.FALSE, "InvalidSpec", msg)
    return st.Cond(st.TRUE, "Valid", "the policy is valid")


async def on_policy(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """resume + create + update: status, then fan-out (also for an invalid policy: its routes must learn of it)."""
    kube: Kube = memo.kube
    with metrics.timed_reconcile("ProviderPolicy") as outcome:
        accepted = validate(body)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        new, changes = st.policy_status(body.get("status"), body["metadata"].get("generation"), now, accepted)
        patch = st.status_patch(body.get("status"), new, partial=True)
        if patch is not None:
            await kube.patch_status("ProviderPolicy", "", body["metadata"]["name"], patch)
        for change in changes:
            post_event(body, warning=change.cond.status != st.TRUE, reason=change.cond.reason,
                       message=change.cond.message)
        if accepted.status == st.TRUE and kwargs.get("reason") != "resume":
            warn_plaintext(body)
        dependents = kwargs["routes_by_policy"].get(body["metadata"]["name"], [])
        await fan_out(kube, dependents, policy_hash(dict(body["spec"])))
        if accepted.status != st.TRUE:
            outcome.result = metrics.Result.COMPILE_ERROR
    if accepted.status != st.TRUE:
        raise kopf.PermanentError(accepted.message)


def warn_plaintext(body: Mapping[str, Any]) -> None:
    """A Warning Event (and log line) per provider whose endpoint sends keys and prompts unencrypted; posted when
    the policy is created or changed, not on every operator start."""
    for p in body["spec"].get("providers") or []:
        why = transport.plaintext(p.get("endpoint"), self_hosted=bool(p.get("selfHosted")) or "pool" in p)
        if why is not None:
            log.warning("ProviderPolicy %s, provider %s: %s", body["metadata"]["name"], p.get("name"), why)
            post_event(body, warning=True, reason="PlaintextEndpoint", message=f"provider {p.get('name')}: {why}")


async def on_policy_event(type: str, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """A deleted policy: tell its routes (they keep their last config and report PolicyNotFound)."""
    if type == "DELETED":
        await fan_out(memo.kube, kwargs["routes_by_policy"].get(name, []), DELETED_HASH)


async def fan_out(kube: Kube, routes: Iterable[RouteRef], new_hash: str) -> int:
    """Patch ``llmroute.io/policy-hash`` on every stale route; returns how many were patched."""
    stale = [r for r in routes if r.policy_hash != new_hash]
    gate = asyncio.Semaphore(FAN_OUT_CONCURRENCY)

    async def bump(ref: RouteRef) -> None:
        async with gate:
            await kube.annotate("LLMRoute", ref.namespace, ref.name, {POLICY_HASH_ANNOTATION: new_hash})

    await asyncio.gather(*(bump(r) for r in stale))
    return len(stale)


def register(registry: kopf.OperatorRegistry) -> None:
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(*POLICIES, registry=registry, id="accept")(on_policy)
    kopf.on.event(*POLICIES, registry=registry, id="deleted")(on_policy_event)
