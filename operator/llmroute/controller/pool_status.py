"""What a ModelPool's handlers read and write, as pure functions: no I/O, no kopf.

Called by :mod:`llmroute.controller.pools` (which does the I/O and holds the scaler's memory): the spec parsed and
checked (:func:`parse`), the scaler's inputs (:func:`current_size`, which pods count,
:func:`restored_state` after a restart) and the status (:func:`pool_status`, :func:`worth_writing`).

Status (``ModelPoolStatus``): ``replicas`` = pods that exist (not terminating), ``readyReplicas`` = Ready pods whose
``/metrics`` answered, ``desiredReplicas``, ``reason`` and ``message`` of the scaler's last decision,
``lastScaleTime`` (when the size last changed), and two conditions:

* ``Accepted`` - the spec parses and the objects can be built from it (``InvalidSpec`` naming every offending field).
* ``Ready`` - ``ReplicasReady`` with at least one ready replica; ``ScaledToZero`` (False: nothing runs, requests held
  at routers start a replica); ``ReplicasStarting``; ``ObjectConflict`` when an object of the pool's name belongs to
  someone else; ``Pending`` (Unknown) until the scaler's first step.

The message carries timers ("step down in 45s") and would change at every interval, so it is written only with a
change of anything else (:func:`worth_writing`).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from llmroute.api.model_pool import ModelPool, ModelPoolStatus
from llmroute.controller import status as st
from llmroute.core import pool_manifests, pools
from llmroute.core.manifests import ObjectKey
from llmroute.core.scaling import Decision, Reason, ScalerState, WatchedProvider

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
VALID = st.Cond(st.TRUE, "Valid", "the spec is valid")
PENDING = st.Cond(st.UNKNOWN, "Pending", "the scaler has not observed the pool yet")
PREWARMED = (Reason.PREWARM, Reason.PREWARM_HOLD)


class Rejected(Exception):
    """The pool's objects cannot be applied as they are; the conditions say why (status, not a retry)."""

    def __init__(self, accepted: st.Cond, ready: st.Cond | None = None, permanent: bool = False) -> None:
        super().__init__((ready or accepted).message)
        self.accepted, self.ready, self.permanent = accepted, ready, permanent


def parse(body: Mapping[str, Any]) -> ModelPool:
    """The pool from ``body``; :class:`Rejected` (permanent) naming every offending field."""
    try:
        pool = ModelPool.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body})
    except ValidationError as exc:
        msg = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" if e["loc"][:1] == ("spec",)
                        else f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise Rejected(st.Cond(st.FALSE, "InvalidSpec", msg), permanent=True) from None
    errors = pool_manifests.pool_errors(pool)
    if errors:
        raise Rejected(st.Cond(st.FALSE, "InvalidSpec", "; ".join(str(e) for e in errors)), permanent=True)
    with contextlib.suppress(ValidationError):
        pool = pool.model_copy(update={"status": ModelPoolStatus.model_validate(dict(body.get("status") or {}))})
    return pool


def deployment_key(pool: ModelPool) -> ObjectKey:
    return ObjectKey("apps/v1", "Deployment", pool.metadata.namespace or "default", pool.metadata.name)


def owned_keys(name: str, namespace: str) -> tuple[ObjectKey, ...]:
    """Every object a pool may own, whether or not its spec wants it now (deletion removes them all)."""
    return (ObjectKey("apps/v1", "Deployment", namespace, name),
            ObjectKey("v1", "Service", namespace, pools.service_name(name)),
            ObjectKey("v1", "Service", namespace, pools.pods_service_name(name)),
            ObjectKey("v1", "PersistentVolumeClaim", namespace, pool_manifests.cache_claim_name(name)))


def current_size(pool: ModelPool, live: Mapping[str, Any] | None, remembered: int | None) -> int:
    """The Deployment's size before the scaler decides: the live one; without a Deployment, the size last decided
    (in memory, else in status), within the bounds; a new pool starts at ``replicas.min``."""
    if live is not None:
        return max(int((live.get("spec") or {}).get("replicas", 1)), 0)
    bounds = pool.spec.replicas
    if remembered is None and pool.status is not None and pool.status.reason is not None:  # a scaler wrote it
        remembered = pool.status.desired_replicas
    return min(max(remembered if remembered is not None else bounds.min, bounds.min), bounds.max)


def parse_time(stamp: str | None) -> float | None:
    if stamp is None:
        return None
    try:
        return datetime.datetime.strptime(stamp, TIME_FORMAT).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return None


def format_time(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime(TIME_FORMAT)


def restored_state(status: ModelPoolStatus | None, watched: tuple[WatchedProvider, ...], now: float) -> ScalerState:
    """The scaler's memory after an operator restart (see the module notes): the last change from status, and a
    prewarm hold starting now for watched providers no longer Down if status says the pool was prewarmed."""
    if status is None:
        return ScalerState()
    last = parse_time(status.last_scale_time)
    holding = tuple(sorted((w.key, now) for w in watched if not w.down)) if status.reason in PREWARMED else ()
    return ScalerState(last_scale_time=min(last, now) if last is not None else None, recovered_at=holding)


@dataclass(frozen=True)
class Sizing:
    """What one scaler step observed and decided, for status."""

    replicas: int
    ready: int
    decision: Decision
    scaled_at: str | None = None
    unreadable: int = 0


def ready_condition(s: Sizing) -> st.Cond:
    desired = s.decision.replicas
    unreadable = (f"; /metrics of {s.unreadable} Ready pod(s) did not answer or parse (counted as not ready)"
                  if s.unreadable else "")
    if s.ready > 0:
        return st.Cond(st.TRUE, "ReplicasReady", f"{s.ready}/{desired} replicas ready{unreadable}")
    if desired == 0:
        return st.Cond(st.FALSE, "ScaledToZero", "scaled to zero; requests held at routers start a replica")
    return st.Cond(st.FALSE, "ReplicasStarting", f"0/{desired} replicas ready{unreadable}")


def pool_status(previous: Mapping[str, Any] | None, generation: int | None, now: str, accepted: st.Cond,
                ready: st.Cond | None = None,
                sizing: Sizing | None = None) -> tuple[dict[str, Any], list[st.Transition]]:
    """The new ``status`` (wire form) and the condition transitions; what ``sizing`` does not give is kept."""
    old = ModelPoolStatus.model_validate(dict(previous or {}))
    fields: dict[str, Any] = {"replicas": old.replicas, "ready_replicas": old.ready_replicas,
                              "desired_replicas": old.desired_replicas, "reason": old.reason, "message": old.message,
                              "last_scale_time": old.last_scale_time}
    if sizing is not None:
        fields.update(replicas=sizing.replicas, ready_replicas=sizing.ready, desired_replicas=sizing.decision.replicas,
                      reason=str(sizing.decision.reason), message=sizing.decision.message,
                      last_scale_time=sizing.scaled_at or old.last_scale_time)
        ready = ready or ready_condition(sizing)
    if ready is None:
        ready = next((st.Cond(c.status, c.reason, c.message) for c in old.conditions if c.type == "Ready"), PENDING)
    new = {"Accepted": accepted, "Ready": ready}
    conditions = st.merge_conditions(old.conditions, new, generation, now)
    status = ModelPoolStatus(observed_generation=generation, conditions=conditions, **fields)
    return status.wire(), st.transitions(old.conditions, new)


def worth_writing(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether ``new`` differs from ``previous`` in more than the message (see the module notes)."""
    def essence(status: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (status or {}).items() if k != "message"}
    return essence(previous) != essence(new)


# --- pods -----------------------------------------------------------------------------------------------------------


def leaving(pod: Mapping[str, Any]) -> bool:
    """Terminating or finished: not part of the pool any more."""
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) or (pod.get("status") or {}).get(
        "phase") in ("Succeeded", "Failed")


def pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and bool(status.get("podIP")) and ready


def metrics_url(pod_ip: str, port: int) -> str:
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{port}{pool_manifests.METRICS_PATH}"
