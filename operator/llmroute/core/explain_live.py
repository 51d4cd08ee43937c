"""What ``llmroute explain --cluster`` shows beside the explanation: the live state of a route, as plain data.

The cluster reading (:mod:`llmroute.live_explain`) fetches the LLMRoute, its ProviderPolicy, the router Deployment and
the ModelPools; this module turns what it found into a :class:`LiveState` (router replicas, the route's conditions,
provider health from the policy status, each pool's replicas and scaling reason) and renders it as table lines and
JSON. The routing explanation itself stays :func:`llmroute.core.explain.explain_route`'s, given the policy status'
health and the providers it has Down or Misconfigured (:func:`llmroute.core.explain.down_per_status`).

A piece that could not be read (a ModelPool in a namespace the user may not read, a Deployment the operator has not
created) is shown as such, never guessed. Pure: no I/O; the readers pass plain dicts and API objects in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmroute.api.base import Condition
from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool, ModelPoolStatus
from llmroute.api.provider_policy import ProviderHealth, ProviderPolicy, ProviderState
from llmroute.core.manifests import router_name


@dataclass(frozen=True)
class RouterState:
    """The router Deployment of a route: desired (spec) and observed (status) replicas, or why they are unknown."""

    name: str
    found: bool = False
    desired: int = 0
    replicas: int = 0
    ready: int = 0
    available: int = 0
    updated: int = 0
    error: str | None = None  # why it could not be read (e.g. forbidden)

    @property
    def summary(self) -> str:
        if self.error is not None:
            return f"unknown ({self.error})"
        if not self.found:
            return "not found (not created yet: see the route's conditions)"
        return (
            f"{self.ready}/{self.desired} ready (replicas {self.replicas}, updated {self.updated}, "
            f"available {self.available})"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"deployment": self.name, "found": self.found}
        if self.error is not None:
            return {**out, "error": self.error}
        if self.found:
            out.update(
                desired=self.desired,
                replicas=self.replicas,
                ready=self.ready,
                available=self.available,
                updated=self.updated,
            )
        return out


def router_state(name: str, deployment: Mapping[str, Any] | None, error: str | None = None) -> RouterState:
    """The state of Deployment ``name`` from its object as the API returned it (None: not found)."""
    if error is not None or deployment is None:
        return RouterState(name, error=error)
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    replicas = spec.get("replicas")

    def count(key: str) -> int:
        value = status.get(key)
        return value if isinstance(value, int) else 0

    return RouterState(
        name,
        found=True,
        desired=replicas if isinstance(replicas, int) else 1,
        replicas=count("replicas"),
        ready=count("readyReplicas"),
        available=count("availableReplicas"),
        updated=count("updatedReplicas"),
    )


@dataclass(frozen=True)
class PoolState:
    """A ModelPool a backend of the route runs on, as found in the cluster."""

    ref: str  # "<namespace>/<name>"
    status: ModelPoolStatus | None = None
    found: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pool": self.ref, "found": self.found}
        if self.error is not None:
            out["error"] = self.error
        elif self.found:
            s = self.status
            out["hasStatus"] = s is not None
            if s is not None:
                out.update(
                    replicas=s.replicas,
                    ready=s.ready_replicas,
                    desired=s.desired_replicas,
                    reason=s.reason,
                    message=s.message,
                )
        return out


def pool_refs(route: LLMRoute, policy: ProviderPolicy) -> list[tuple[str, str]]:
    """(namespace, name) of every ModelPool that serves a provider the route's backends use, in policy order."""
    used = {b.provider for m in route.spec.models for b in m.backends}
    return [(p.pool.namespace, p.pool.name) for p in policy.spec.providers if p.pool is not None and p.name in used]


def pool_states(
    refs: Iterable[tuple[str, str]], found: Mapping[tuple[str, str], ModelPool], errors: Mapping[tuple[str, str], str]
) -> tuple[PoolState, ...]:
    out = []
    for key in refs:
        ref = f"{key[0]}/{key[1]}"
        pool = found.get(key)
        if key in errors:
            out.append(PoolState(ref, error=errors[key]))
        else:
            out.append(PoolState(ref, status=pool.status if pool is not None else None, found=pool is not None))
    return tuple(out)


@dataclass(frozen=True)
class LiveState:
    """Everything ``explain --cluster`` adds to the explanation."""

    namespace: str
    policy: str
    router: RouterState
    conditions: tuple[Condition, ...]
    providers: tuple[ProviderHealth, ...]  # every provider of the policy, Unknown where the status has no entry
    policy_summary: str | None
    pools: tuple[PoolState, ...]
    status_down: tuple[str, ...]  # skipped because the status has them Down/Misconfigured
    assumed_up: tuple[str, ...] = ()  # --up
    health_ignored: bool = False  # --ignore-health

    @property
    def health_rule(self) -> str:
        if self.health_ignored:
            return "ignored (--ignore-health): only --down providers are treated as down"
        up = f"; assumed up: {', '.join(self.assumed_up)}" if self.assumed_up else ""
        return "providers the ProviderPolicy status has Down or Misconfigured are treated as down" + up

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "health": "ignored" if self.health_ignored else "status",
            "statusDown": list(self.status_down),
            "assumedUp": list(self.assumed_up),
            "router": self.router.to_dict(),
            "conditions": [c.wire() for c in self.conditions],
            "policySummary": self.policy_summary,
            "providers": [p.wire() for p in self.providers],
            "pools": [p.to_dict() for p in self.pools],
        }


def live_state(
    route: LLMRoute,
    policy: ProviderPolicy,
    *,
    deployment: Mapping[str, Any] | None,
    deployment_error: str | None = None,
    pools: Sequence[PoolState] = (),
    status_down: Iterable[str] = (),
    assumed_up: Iterable[str] = (),
    health_ignored: bool = False,
) -> LiveState:
    """The live state of ``route`` (its status), ``policy`` (its status) and the router Deployment as read."""
    ns = route.metadata.namespace or "default"
    health = {h.name: h for h in (policy.status.providers if policy.status else [])}
    providers = tuple(health.get(p.name) or ProviderHealth(name=p.name) for p in policy.spec.providers)
    return LiveState(
        namespace=ns,
        policy=policy.metadata.name,
        router=router_state(router_name(route.metadata.name), deployment, deployment_error),
        conditions=tuple(route.status.conditions if route.status else ()),
        providers=providers,
        policy_summary=policy.status.summary if policy.status else None,
        pools=tuple(pools),
        status_down=tuple(sorted(status_down)),
        assumed_up=tuple(sorted(assumed_up)),
        health_ignored=health_ignored,
    )


def render_live(live: LiveState) -> list[str]:
    """The live sections of the table, as lines (each section ends with a blank line)."""
    lines = [f"router Deployment {live.namespace}/{live.router.name}: {live.router.summary}", ""]
    if live.conditions:
        lines.append("LLMRoute conditions")
        lines += _table(
            [("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE")]
            + [
                (c.type, c.status.value, c.reason, c.last_transition_time or "-", c.message or "-")
                for c in live.conditions
            ]
        )
    else:
        lines.append("LLMRoute conditions: none yet (the operator has not reconciled the route)")
    lines.append("")
    summary = f": {live.policy_summary}" if live.policy_summary else ""
    lines.append(f"provider health (ProviderPolicy {live.policy} status{summary}); {live.health_rule}")
    lines += _table(
        [("PROVIDER", "STATE", "REASON", "LAST SUCCESS", "LAST FAILURE")]
        + [
            (
                p.name,
                p.state.value,
                p.reason or ("not probed yet" if p.state is ProviderState.UNKNOWN else "-"),
                p.last_success_time or "-",
                p.last_failure_time or "-",
            )
            for p in live.providers
        ]
    )
    lines.append("")
    if live.pools:
        lines.append("ModelPools")
        lines += _table(
            [("POOL", "REPLICAS", "READY", "DESIRED", "REASON", "MESSAGE")] + [_pool_row(p) for p in live.pools]
        )
        lines.append("")
    return lines


def _pool_row(p: PoolState) -> tuple[str, ...]:
    if p.error is not None:
        return (p.ref, "-", "-", "-", "-", f"unknown ({p.error})")
    if not p.found:
        return (p.ref, "-", "-", "-", "-", "not found in the cluster")
    if p.status is None:
        return (p.ref, "-", "-", "-", "-", "no status yet (the operator has not reconciled the pool)")
    s = p.status
    return (p.ref, str(s.replicas), str(s.ready_replicas), str(s.desired_replicas), s.reason or "-", s.message or "-")


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as aligned columns, two spaces apart and indented by two; the last column is not padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]
