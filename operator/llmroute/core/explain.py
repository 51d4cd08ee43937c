"""Explanations of routing decisions: for a route, a policy and a data class, every backend and why it is
allowed or denied, in the order the router would try the allowed ones.

Pure; called by ``llmroute explain`` (table and JSON output). The verdicts come from
:func:`llmroute.core.residency.evaluate` and the order from :func:`llmroute.core.compile.compile_route`, so the
explanation cannot drift from what the router actually runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core import residency
from llmroute.core.compile import compile_route


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


@dataclass(frozen=True)
class ModelExplanation:
    name: str
    backends: tuple[BackendExplanation, ...]

    @property
    def allowed_count(self) -> int:
        return sum(1 for b in self.backends if b.allowed)


@dataclass(frozen=True)
class RouteExplanation:
    route: str
    policy: str
    data_class: str
    models: tuple[ModelExplanation, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "policy": self.policy,
            "dataClass": self.data_class,
            "models": [
                {"name": m.name, "backends": [_backend_dict(b) for b in m.backends]} for m in self.models
            ],
        }


def _backend_dict(b: BackendExplanation) -> dict[str, Any]:
    return {
        "provider": b.provider, "model": b.model, "jurisdiction": b.jurisdiction, "priority": b.priority,
        "weight": b.weight, "allowed": b.allowed, "order": b.order, "reasons": list(b.reasons),
    }


def explain_route(route: LLMRoute, policy: ProviderPolicy, data_class: str | None = None) -> RouteExplanation:
    """Explain every backend of every model of ``route`` for ``data_class`` (default: the route's default).

    Raises :class:`llmroute.errors.CompileError` if the route does not compile and
    :class:`llmroute.errors.UnknownDataClassError` for a class the policy lacks.
    """
    config = compile_route(route, policy)
    cls = residency.resolve_class(policy.spec, data_class or config.default_data_class)
    models = []
    for published in route.spec.models:
        compiled = config.model_route(published.name)
        assert compiled is not None
        class_route = compiled.for_class(cls.name)
        assert class_route is not None
        order = {(b.provider, b.model): i + 1 for i, b in enumerate(class_route.allowed)}
        explained = []
        for b in published.backends:
            provider = policy.spec.provider(b.provider)
            assert provider is not None
            verdict = residency.evaluate(cls, provider)
            explained.append(BackendExplanation(
                provider=b.provider, model=b.model, jurisdiction=provider.jurisdiction, priority=b.priority,
                weight=b.weight, allowed=verdict.allowed, order=order.get((b.provider, b.model)),
                reasons=verdict.reasons,
            ))
        explained.sort(key=lambda e: (e.order is None, e.order or 0, e.priority))
        models.append(ModelExplanation(name=published.name, backends=tuple(explained)))
    ns = route.metadata.namespace or "default"
    return RouteExplanation(route=f"{ns}/{route.metadata.name}", policy=policy.metadata.name, data_class=cls.name,
                            models=tuple(models))
