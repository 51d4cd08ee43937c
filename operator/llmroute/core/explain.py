"""Explanations of routing decisions: for a route, a policy and a data class, every backend and why it is
allowed or denied, in the order the router would try the allowed ones.

What-if: with ``down`` (providers assumed down, as an open circuit), the explanation says which backends the router
would skip and where the first attempt would go. First-attempt shares are exact: inside the first priority group
that has an available backend, each healthy backend is tried first with probability weight / total weight, which is
what :func:`llmroute.core.selection.plan_attempts`' weighted shuffle does.

Pool backends (providers that are a ModelPool) show the pool's state when the pool is among the inputs: its
``status`` (ready and desired replicas, and why). A pool with no ready replica is what the router skips while anything
else is available and otherwise holds requests for (``spec.coldStart``), and the outcome says so.

Sample text (``--text``) is checked with the policy's detector; when the policy escalates on content (classes with
``detect``), the explanation is for the classes the router would apply to that text - the declared one and every
class a finding calls for (:mod:`llmroute.core.escalation`) - and a backend is allowed only if all of them allow it.

Live provider health (``llmroute explain --cluster``): ``health`` is the ProviderPolicy's ``status.providers``; each
backend shows its provider's state, and the providers in ``status_down`` (by default the ones the status has Down or
Misconfigured, :func:`down_per_status` - the ones the operator's active backends skip too) are skipped like ``down``
ones, with the status' reason as the why.

Pure; called by ``llmroute explain`` (table and JSON output). The verdicts come from
:func:`llmroute.core.residency.evaluate` and the order from :func:`llmroute.core.compile.compile_route`, so the
explanation cannot drift from what the router actually runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool
from llmroute.api.provider_policy import DataClass, Provider, ProviderHealth, ProviderPolicy, ProviderState
from llmroute.core import escalation, pii, residency
from llmroute.core.compile import compile_route
from llmroute.core.probing import UNHEALTHY
from llmroute.errors import InputError


@dataclass(frozen=True)
class BackendExplanation:
    """One backend of one model under one data class."""

    provider: str
    model: str
    jurisdiction: str
    priority: int
    weight: int
    allowed: bool
    order: int | None  # 1-based position among allowed backends; None when denied
    reasons: tuple[str, ...]
    down: bool = False  # assumed down (what-if): the router would skip it
    first_share: float = 0.0  # probability that a request's first attempt goes here
    pool: str | None = None  # "<namespace>/<name>" of the ModelPool serving this provider
    pool_state: str | None = None  # e.g. "1/2 ready, desired 2 (Prewarm)"; None when the pool's state is unknown
    cold: bool = False  # the pool has no ready replica: skipped while others are available, else requests are held
    health: str | None = None  # live: the provider's state in the ProviderPolicy status; None when not read

    @property
    def available(self) -> bool:
        return self.allowed and not self.down and not self.cold


@dataclass(frozen=True)
class ModelExplanation:
    name: str
    backends: tuple[BackendExplanation, ...]
    if_cold: ModelExplanation | None = None  # the same while first-attempt pools of unknown state have no replica

    @property
    def allowed_count(self) -> int:
        return sum(1 for b in self.backends if b.allowed)

    @property
    def outcome(self) -> str:
        """What a request for this model gets, in one line."""
        if self.allowed_count == 0:
            return "403 no_compliant_backend: residency allows no backend"
        first = [b for b in self.backends if b.first_share > 0]
        if not first:
            return "503 no_healthy_backend: every allowed backend is down"
        shares = ", ".join(f"{b.provider} {b.first_share:.0%}" for b in first)
        if all(b.cold for b in first):
            pools = ", ".join(sorted({b.pool or b.provider for b in first}))
            return f"held until ModelPool {pools} has a ready replica (spec.coldStart), then first attempt: {shares}"
        if self.if_cold is not None:
            pools = ", ".join(sorted({b.pool or b.provider for b in first if b.pool and b.pool_state is None}))
            return f"first attempt: {shares}; while ModelPool {pools} has no ready replica: {self.if_cold.outcome}"
        return "first attempt: " + shares


@dataclass(frozen=True)
class RouteExplanation:
    route: str
    policy: str
    data_class: str
    models: tuple[ModelExplanation, ...]
    down: tuple[str, ...] = ()
    text_findings: str | None = None  # "1 email, 1 us_ssn" for --text; kinds and counts only, never the text
    classes: tuple[str, ...] = ()  # when the text escalates: every class applied, data_class first
    escalation: str = ""  # why, e.g. "escalated from public: pii for us_ssn"
    status_down: tuple[str, ...] = ()  # live: providers skipped because the policy status has them Down/Misconfigured

    @property
    def reachable_jurisdictions(self) -> tuple[str, ...]:
        """Jurisdictions an allowed backend of any explained model is in."""
        return tuple(sorted({b.jurisdiction for m in self.models for b in m.backends if b.allowed}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "policy": self.policy,
            "dataClass": self.data_class,
            "down": list(self.down),
            "textFindings": self.text_findings,
            **({"classes": list(self.classes), "escalation": self.escalation} if self.classes else {}),
            "reachableJurisdictions": list(self.reachable_jurisdictions),
            "models": [
                {"name": m.name, "outcome": m.outcome, "backends": [_backend_dict(b) for b in m.backends]}
                for m in self.models
            ],
        }


def _backend_dict(b: BackendExplanation) -> dict[str, Any]:
    return {
        "provider": b.provider, "model": b.model, "jurisdiction": b.jurisdiction, "priority": b.priority,
        "weight": b.weight, "allowed": b.allowed, "order": b.order, "reasons": list(b.reasons), "down": b.down,
        "firstAttemptShare": round(b.first_share, 4),
        **({"pool": b.pool, "poolState": b.pool_state, "cold": b.cold} if b.pool else {}),
        **({"health": b.health} if b.health is not None else {}),
    }


def explain_route(route: LLMRoute, policy: ProviderPolicy, data_class: str | None = None,
                  down: frozenset[str] = frozenset(), *, model: str | None = None,
                  text: str | None = None,
                  pools: Mapping[tuple[str, str], ModelPool] | None = None,
                  health: Mapping[str, ProviderHealth] | None = None, status_down: frozenset[str] = frozenset(),
                  missing_pool: str = "not among the files") -> RouteExplanation:
    """Explain every backend of every model of ``route`` (or only ``model``) for ``data_class`` (default: the
    route's default), with the providers in ``down`` assumed down; ``text`` is a sample prompt checked for PII;
    ``pools`` (by namespace and name) give pool backends their state (``missing_pool`` says where a pool that is
    not among them was looked for). ``health`` (provider name -> its status entry) shows each backend's live state;
    the providers in ``status_down`` are skipped because of it (those also in ``down`` count as assumed down).

    Raises :class:`llmroute.errors.CompileError` if the route does not compile and
    :class:`llmroute.errors.UnknownDataClassError` for a class the policy lacks.
    """
    config = compile_route(route, policy)
    cls = residency.resolve_class(policy.spec, data_class or config.default_data_class)
    findings = None if text is None else _detector(policy).detect(text)
    esc = escalation.escalate(cls.name, config.detection.by_class() if config.detection else (),
                              {f.type for f in findings or ()})
    applied = [residency.resolve_class(policy.spec, name) for name in esc.classes]
    published_models = [m for m in route.spec.models if model is None or m.name == model]
    if not published_models:
        names = ", ".join(m.name for m in route.spec.models)
        raise InputError(f'the route publishes no model "{model}" (published: {names})')
    models = []
    for published in published_models:
        compiled = config.model_route(published.name)
        assert compiled is not None
        class_route = escalation.combine(compiled, esc.classes)
        order = {(b.provider, b.model): i + 1 for i, b in enumerate(class_route.allowed)}
        explained = []
        for b in published.backends:
            provider = policy.spec.provider(b.provider)
            assert provider is not None
            verdict = _verdict(applied, provider)
            explained.append(_with_down(_with_health(_with_pool(BackendExplanation(
                provider=b.provider, model=b.model, jurisdiction=provider.jurisdiction, priority=b.priority,
                weight=b.weight, allowed=verdict.allowed, order=order.get((b.provider, b.model)),
                reasons=verdict.reasons,
            ), provider, pools or {}, missing_pool), health, status_down, down), down))
        explained.sort(key=lambda e: (e.order is None, e.order or 0, e.priority))
        models.append(_explained_model(published.name, explained))
    ns = route.metadata.namespace or "default"
    summary = None if findings is None else pii.summarise(findings)
    return RouteExplanation(route=f"{ns}/{route.metadata.name}", policy=policy.metadata.name, data_class=cls.name,
                            models=tuple(models), down=tuple(sorted(down)), text_findings=summary,
                            classes=esc.classes if esc.escalated else (), escalation=escalation.explain(esc),
                            status_down=tuple(sorted(status_down - down)))


def down_per_status(health: Mapping[str, ProviderHealth], up: frozenset[str] = frozenset()) -> frozenset[str]:
    """Providers the ProviderPolicy status has Down or Misconfigured (what the operator's active backends skip),
    except those in ``up`` (what-if: assume it recovered)."""
    return frozenset(name for name, h in health.items() if h.state in UNHEALTHY and name not in up)


def check_providers(policy: ProviderPolicy, flag: str, names: Sequence[str]) -> None:
    """Every name in ``names`` (given with ``flag``, e.g. ``--down``) is a provider of ``policy``; else a one-line
    :class:`llmroute.errors.InputError` naming the known ones."""
    unknown = [p for p in names if policy.spec.provider(p) is None]
    if unknown:
        known = ", ".join(p.name for p in policy.spec.providers)
        raise InputError(f'{flag}: no provider "{unknown[0]}" in ProviderPolicy "{policy.metadata.name}" '
                         f"(known: {known})")

def _detector(policy: ProviderPolicy) -> pii.Detector:
    if not policy.spec.detectors:
        return pii.DEFAULT
    return pii.Detector([pii.CustomDetector(d.name, d.pattern, d.confidence) for d in policy.spec.detectors])


def _verdict(classes: list[DataClass], provider: Provider) -> residency.Verdict:
    """The verdict of one class, or of several together: allowed only if each allows; reasons prefixed by class."""
    verdicts = [(c.name, residency.evaluate(c, provider)) for c in classes]
    if len(verdicts) == 1:
        return verdicts[0][1]
    allowed = all(v.allowed for _, v in verdicts)
    return residency.Verdict(allowed, tuple(f"{name}: {r}" for name, v in verdicts if v.allowed == allowed
                                            for r in v.reasons))


def _explained_model(name: str, backends: list[BackendExplanation]) -> ModelExplanation:
    """The model's explanation; when a first attempt goes to a pool whose state is unknown (a manifest, no status),
    also what happens while that pool is at zero (it may well be: pools scale to zero)."""
    shared = _with_first_shares(backends)
    unknown = {(b.provider, b.model) for b in shared
               if b.first_share > 0 and b.pool is not None and b.pool_state is None}
    if not unknown:
        return ModelExplanation(name, shared)
    cold = [replace(b, cold=True) if (b.provider, b.model) in unknown else b for b in backends]
    return ModelExplanation(name, shared, if_cold=ModelExplanation(name, _with_first_shares(cold)))


def _with_down(b: BackendExplanation, down: frozenset[str]) -> BackendExplanation:
    """Mark an allowed backend whose provider is assumed down (what-if) as skipped."""
    if not (b.allowed and b.provider in down):
        return b
    return replace(b, down=True, reasons=(*b.reasons, "assumed down: skipped"))


def _with_health(b: BackendExplanation, health: Mapping[str, ProviderHealth] | None, status_down: frozenset[str],
                 down: frozenset[str]) -> BackendExplanation:
    """Add the provider's live state; skip an allowed backend whose provider is in ``status_down`` (one in ``down``
    is skipped as assumed down instead); say so when an unhealthy provider is counted as up (what-if)."""
    if health is None:
        return b
    entry = health.get(b.provider)
    state = entry.state if entry is not None else ProviderState.UNKNOWN
    if not b.allowed or b.provider in down or (b.provider not in status_down and state not in UNHEALTHY):
        return replace(b, health=state.value)
    if b.provider not in status_down:
        return replace(b, health=state.value, reasons=(*b.reasons, f"status {state.value}: counted as up (what-if)"))
    why = f"status {state.value}" + (f" ({entry.reason})" if entry is not None and entry.reason else "")
    return replace(b, health=state.value, down=True, reasons=(*b.reasons, f"{why}: skipped"))


def _with_pool(b: BackendExplanation, provider: Provider, pools: Mapping[tuple[str, str], ModelPool],
               missing: str = "not among the files") -> BackendExplanation:
    """Add the pool's name and state to a backend served by a ModelPool."""
    if provider.pool is None:
        return b
    ref = f"{provider.pool.namespace}/{provider.pool.name}"
    pool = pools.get((provider.pool.namespace, provider.pool.name))
    status = pool.status if pool is not None else None
    if status is None:  # a manifest without status (it has not been applied yet), or a pool elsewhere
        where = f" ({missing})" if pool is None else ""
        return replace(b, pool=ref, reasons=(*b.reasons, f"ModelPool {ref}{where}"))
    state = f"{status.ready_replicas}/{status.replicas} ready, desired {status.desired_replicas}"
    state += f" ({status.reason})" if status.reason else ""
    cold = b.allowed and status.ready_replicas == 0
    why = f"ModelPool {ref}: {state}" + ("; no ready replica: skipped while others are available" if cold else "")
    return replace(b, pool=ref, pool_state=state, cold=cold, reasons=(*b.reasons, why))


def _with_first_shares(backends: list[BackendExplanation]) -> tuple[BackendExplanation, ...]:
    """Set ``first_share`` on the backends of the first priority group that has an available backend (pools with no
    ready replica count only when nothing else is: the router holds requests for them then)."""
    available = [b for b in backends if b.available] or [b for b in backends if b.allowed and not b.down]
    if not available:
        return tuple(backends)
    group = [b for b in available if b.priority == min(a.priority for a in available)]
    total = sum(b.weight for b in group)
    shares = {id(b): b.weight / total for b in group} if total else {id(group[0]): 1.0}
    return tuple(replace(b, first_share=shares.get(id(b), 0.0)) for b in backends)
