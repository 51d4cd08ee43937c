"""Status of LLMRoute and ProviderPolicy as pure functions of what a reconcile observed. No I/O, no kopf.

Called by :mod:`llmroute.controller.routes` and :mod:`llmroute.controller.policies`, which write the result through
:mod:`llmroute.controller.kube` only when it differs from the status already on the object (so a resync that finds
nothing new writes nothing).

Conditions (``metav1.Condition`` shape, each with ``observedGeneration``):

* ``Accepted`` - the spec parses and compiles against its ProviderPolicy (Unknown while the policy is missing).
* ``Ready`` - the router Deployment is Available (False with ``PolicyNotFound``/``CompileFailed``/... when the route
  cannot be rolled out; the router then keeps serving its last good config).
* ``Degraded`` - some published model has no healthy allowed backend for some data class.

``lastTransitionTime`` changes only when a condition's status changes. Per model and data class the active backend
is the first allowed backend, in the compiled order, whose provider the shared prober does not report Down or
Misconfigured (provider health comes from the prober, :mod:`llmroute.controller.prober`).

``lastFailover`` records the last time the active backend of a model/data class moved **because of provider
health** - the compiled config (hash) being the same before and after; a new config moving it is a rollout, not a
failover. A move away from a Down/Misconfigured provider is a failover (reason ``ProviderDown`` /
``ProviderMisconfigured``), a move back to a preferred provider that recovered is a failback (``ProviderRecovered``);
both are recorded, as both move traffic. :func:`route_status` returns the moves so the caller posts Events for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmroute.api.base import Condition, ConditionStatus
from llmroute.api.llm_route import ActiveBackend, FailoverRecord, LLMRouteStatus
from llmroute.api.provider_policy import ProviderHealth, ProviderPolicyStatus, ProviderState
from llmroute.core.router_config import RouterConfig

UNHEALTHY = frozenset({ProviderState.DOWN, ProviderState.MISCONFIGURED})
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


@dataclass(frozen=True)
class Cond:
    """A condition's status, reason and message, before observedGeneration and transition time are added."""

    status: ConditionStatus
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Transition:
    """A condition whose status or reason changed in this reconcile (the callers post an Event for it)."""

    type: str
    cond: Cond
    first: bool = False


def merge_conditions(previous: Sequence[Condition], new: Mapping[str, Cond], generation: int | None,
                     now: str) -> list[Condition]:
    """New conditions in ``new``'s order, keeping ``lastTransitionTime`` where the status did not change."""
    old = {c.type: c for c in previous}
    out = []
    for type_, cond in new.items():
        before = old.get(type_)
        since = before.last_transition_time if before is not None and before.status == cond.status else now
        out.append(Condition(type=type_, status=cond.status, reason=cond.reason, message=cond.message,
                             last_transition_time=since or now, observed_generation=generation))
    return out


def transitions(previous: Sequence[Condition], new: Mapping[str, Cond]) -> list[Transition]:
    old = {c.type: (c.status, c.reason) for c in previous}
    return [Transition(t, c, t not in old) for t, c in new.items() if old.get(t) != (c.status, c.reason)]


def health_of(status: ProviderPolicyStatus | None) -> dict[str, ProviderHealth]:
    """Provider name → health from a ProviderPolicy's status (empty until the prober has written any)."""
    return {p.name: p for p in status.providers} if status is not None else {}


def state_of(health: Mapping[str, ProviderHealth], provider: str | None) -> ProviderState:
    found = health.get(provider) if provider is not None else None
    return found.state if found is not None else ProviderState.UNKNOWN


def active_backends(config: RouterConfig, health: Mapping[str, ProviderHealth]) -> list[ActiveBackend]:
    out = []
    for model in config.models:
        for route in model.classes:
            healthy = [b for b in route.allowed if state_of(health, b.provider) not in UNHEALTHY]
            warm = [b for b in healthy if not _cold(config, health, b.provider)]
            candidates = warm or healthy  # a cold pool serves (held requests) only when nothing else can
            first = candidates[0] if candidates else None
            out.append(ActiveBackend(model=model.name, data_class=route.data_class,
                                     provider=first.provider if first else None,
                                     upstream_model=first.model if first else None,
                                     allowed=len(route.allowed), healthy=len(healthy)))
    return out


def _cold(config: RouterConfig, health: Mapping[str, ProviderHealth], provider: str) -> bool:
    """A ModelPool provider with no ready replica, or whose readiness nobody has reported (routers skip a pool they
    find no pod of, so that is the safe reading)."""
    target = config.provider(provider)
    if target is None or target.pool is None:
        return False
    return state_of(health, provider) in (ProviderState.COLD, ProviderState.UNKNOWN)


def degraded(active: Sequence[ActiveBackend]) -> Cond:
    stuck = [f"{a.model}/{a.data_class}" for a in active if a.provider is None]
    if not stuck:
        return Cond(FALSE, "AllClassesServed", "every model has a healthy allowed backend for every data class")
    no_allowed = [f"{a.model}/{a.data_class}" for a in active if a.allowed == 0]
    reason = "NoAllowedBackend" if len(no_allowed) == len(stuck) else "NoHealthyBackend"
    return Cond(TRUE, reason, "no healthy allowed backend for " + ", ".join(stuck))


def deployment_ready(deployment: Mapping[str, Any] | None) -> Cond:
    """Ready from the router Deployment's ``Available`` condition."""
    if deployment is None:
        return Cond(FALSE, "RouterMissing", "the router Deployment does not exist yet")
    status = deployment.get("status") or {}
    available = next((c for c in status.get("conditions") or [] if c.get("type") == "Available"), None)
    counts = f"{status.get('availableReplicas', 0)}/{deployment.get('spec', {}).get('replicas', '?')} available"
    if available is not None and available.get("status") == "True":
        return Cond(TRUE, "RouterAvailable", f"router Deployment is available ({counts})")
    return Cond(FALSE, "RouterUnavailable", f"router Deployment is not available yet ({counts})")


@dataclass(frozen=True)
class Move:
    """The active backend of one model/data class moved because of provider health (``failover``: away from an
    unhealthy provider; otherwise back to a recovered one). ``detail`` is for the Event (names and reasons)."""

    model: str
    data_class: str
    from_provider: str | None
    to_provider: str | None
    failover: bool
    reason: str
    detail: str


def moves(old: Sequence[ActiveBackend], new: Sequence[ActiveBackend],
          health: Mapping[str, ProviderHealth]) -> list[Move]:
    """Active backends that moved between two computations under the same compiled config."""
    before = {(a.model, a.data_class): a.provider for a in old}
    out = []
    for a in new:
        key = (a.model, a.data_class)
        if key not in before or before[key] == a.provider:
            continue
        src = before[key]
        src_health = health.get(src) if src is not None else None
        if src_health is not None and src_health.state in UNHEALTHY:
            detail = f"{src} is {src_health.state}" + (f": {src_health.reason}" if src_health.reason else "")
            out.append(Move(a.model, a.data_class, src, a.provider, True, f"Provider{src_health.state}", detail))
        elif a.provider is None:
            out.append(Move(a.model, a.data_class, src, None, True, "NoHealthyBackend", "no healthy backend left"))
        elif src_health is not None and src_health.state is ProviderState.COLD:
            out.append(Move(a.model, a.data_class, src, a.provider, False, "PoolCold",
                            f"{src} has no ready replica: {src_health.reason or 'ModelPool at zero'}"))
        else:
            detail = f"{a.provider} is {state_of(health, a.provider)} again"
            out.append(Move(a.model, a.data_class, src, a.provider, False, "ProviderRecovered", detail))
    return out


@dataclass(frozen=True)
class RouteObservation:
    """What one reconcile of an LLMRoute found; ``config`` is None when nothing new could be compiled."""

    accepted: Cond
    ready: Cond
    config: RouterConfig | None = None
    health: Mapping[str, ProviderHealth] | None = None
    extra_degraded: str = ""


def route_status(previous: Mapping[str, Any] | None, generation: int | None, now: str,
                 obs: RouteObservation) -> tuple[dict[str, Any], list[Transition], list[Move]]:
    """The new ``status`` stanza (wire form), the condition transitions and the health moves since ``previous``."""
    old = LLMRouteStatus.model_validate(previous or {})
    moved: list[Move] = []
    last_failover = old.last_failover
    if obs.config is not None:
        active = active_backends(obs.config, obs.health or {})
        first = next((a for a in active if a.data_class == obs.config.default_data_class), None)
        config_hash = obs.config.content_hash()
        carry: dict[str, Any] = {"active": active, "model_names": ",".join(m.name for m in obs.config.models),
                                 "active_provider": first.provider if first else None, "config_hash": config_hash}
        deg = degraded(active)
        if old.config_hash == config_hash:
            moved = moves(old.active, active, obs.health or {})
        if moved:
            m = moved[0]
            last_failover = FailoverRecord(time=now, model=m.model, from_provider=m.from_provider,
                                           to_provider=m.to_provider, reason=m.reason)
    else:  # the router keeps its last good config: keep reporting what it serves
        carry = {"active": old.active, "model_names": old.model_names, "active_provider": old.active_provider,
                 "config_hash": old.config_hash}
        deg = degraded(old.active) if old.active else Cond(UNKNOWN, "NotCompiled", "no config has been compiled")
    if obs.extra_degraded:
        deg = Cond(TRUE, "ProviderKeyMissing" if deg.status != TRUE else deg.reason,
                   "; ".join(m for m in (deg.message if deg.status == TRUE else "", obs.extra_degraded) if m))
    new = {"Accepted": obs.accepted, "Ready": obs.ready, "Degraded": deg}
    conditions = merge_conditions(old.conditions, new, generation, now)
    status = LLMRouteStatus(observed_generation=generation, conditions=conditions,
                            last_failover=last_failover, **carry)
    return status.wire(), transitions(old.conditions, new), moved


def policy_status(previous: Mapping[str, Any] | None, generation: int | None, now: str,
                  accepted: Cond) -> tuple[dict[str, Any], list[Transition]]:
    """The part of a ProviderPolicy's status this handler owns (``observedGeneration``, ``conditions``); the prober's
    ``providers`` and ``summary`` are left to it (send the result with ``partial=True``)."""
    old = ProviderPolicyStatus.model_validate(previous or {})
    new = {"Accepted": accepted}
    kept = [c for c in old.conditions if c.type not in new]
    conditions = merge_conditions(old.conditions, new, generation, now) + kept
    status = ProviderPolicyStatus(observed_generation=generation, conditions=conditions).wire()
    return {k: status[k] for k in ("observedGeneration", "conditions") if k in status}, transitions(old.conditions,
                                                                                                     new)


def status_patch(previous: Mapping[str, Any] | None, new: Mapping[str, Any],
                 partial: bool = False) -> dict[str, Any] | None:
    """A merge patch turning ``previous`` into ``new`` (None when equal). Fields missing from ``new`` become null,
    unless ``partial`` (then ``new`` only covers the fields the caller owns)."""
    previous = previous or {}
    dropped = set() if partial else set(previous) - set(new)
    if not dropped and all(previous.get(k) == v for k, v in new.items()):
        return None
    return {**dict.fromkeys(dropped), **new}
