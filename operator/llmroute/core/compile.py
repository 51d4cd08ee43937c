"""compile_route(): LLMRoute + ProviderPolicy -> RouterConfig. The one place routing intent becomes router config.

Used by the operator (the result goes into the router's ConfigMap) and by local mode (the result is served
in-process), so the demo and the cluster run the same decisions. Residency is applied here, per published model and
data class, by :func:`llmroute.core.residency.evaluate`: the router only ever sees the allowed backends, in the order
to try them, and the denied ones with their reasons (for 403 messages and ``llmroute explain``). Escalation rules
(classes' ``detect`` lists and the policy's custom detectors) are passed on only when some class has one.
Redaction (the route's ``spec.redaction`` and the used providers' ``redaction``) likewise, with each rule's types
listed out (empty means every type) and the strictest mode kept where rules overlap (:mod:`llmroute.core.redaction`).

Every problem is collected and reported with the field path it is about, e.g.
``spec.models[0].backends[1].provider: no provider "fireworks" in ProviderPolicy "default"``.

Drills (``spec.drills``) are checked to name a backend provider of the route and compiled to ``until`` in epoch
seconds and a resolved error rate. Compile is pure and has no clock: a drill whose ``until`` has passed compiles
fine, and the router ignores it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmroute.api.base import parse_duration, parse_timestamp
from llmroute.api.llm_route import Drill, LLMRoute, LLMRouteSpec, PublishedModel, ReasoningField
from llmroute.api.model_pool import VLLM_PORT
from llmroute.api.provider_policy import BUILTIN_PII_TYPES, Provider, ProviderPolicy, ProviderPolicySpec, RedactionMode
from llmroute.core import access, drills, pools, redaction, residency
from llmroute.core.router_config import (
    TOKENS_DIR,
    AccessSettings,
    AuditSettings,
    BackendTarget,
    CircuitSettings,
    ClassDetect,
    ClassRoute,
    ColdStartSettings,
    CredentialRef,
    CustomDetectorTarget,
    Denial,
    Detection,
    FailoverSettings,
    HealthProbe,
    ModelRoute,
    Origin,
    PoolTarget,
    ProviderTarget,
    ProxyTarget,
    Redaction,
    RouterConfig,
    ServiceAccountVerification,
    TokenFile,
)
from llmroute.core.router_config import Drill as CompiledDrill
from llmroute.errors import CompileError, FieldError

DEFAULT_NAMESPACE = "default"


def credential_env(provider: str) -> str:
    """Environment variable a router pod receives ``provider``'s key in, e.g. ``LLMROUTE_KEY_DEEPSEEK``."""
    return "LLMROUTE_KEY_" + re.sub(r"[^A-Z0-9]", "_", provider.upper())


def compile_route(route: LLMRoute, policy: ProviderPolicy, issuer: Issuer | None = None) -> RouterConfig:
    """Compile ``route`` under ``policy``; raises :class:`CompileError` listing every problem with its field.
    ``issuer``: the cluster's service account issuer and its public keys, for routes that accept service account
    tokens (without it they refuse every such token)."""
    spec = route.spec
    errors = _reference_errors(route, policy) + _redaction_errors(route, policy)
    default_class = spec.default_data_class or policy.spec.default_data_class
    if errors:
        raise CompileError(errors)
    assert default_class is not None  # _reference_errors reports a missing default
    used = _used_providers(spec, policy)
    return RouterConfig(
        origin=Origin(
            route_namespace=route.metadata.namespace or DEFAULT_NAMESPACE,
            route_name=route.metadata.name,
            policy_name=policy.metadata.name,
        ),
        default_data_class=default_class,
        data_classes=tuple(c.name for c in policy.spec.data_classes),
        providers=tuple(_target(p) for p in used),
        models=tuple(_model_route(m, policy) for m in spec.models),
        failover=_failover(spec),
        circuit=_circuit(spec),
        max_request_bytes=spec.router.max_request_bytes,
        drills=tuple(_drill(d) for d in spec.drills),
        cold_start=_cold_start(spec) if any(p.pool is not None for p in used) else None,
        detection=_detection(policy.spec),
        redaction=_redaction(spec, policy.spec, used),
        access=_access(route, issuer),
        audit=AuditSettings(sample_rate=spec.audit.sample_rate) if spec.audit and spec.audit.enabled else None,
    )


@dataclass(frozen=True)
class Issuer:
    """The cluster's service account issuer (``iss``) and its JWKS keys, as the operator read them."""

    url: str
    keys: tuple[dict[str, str], ...]


def _access(route: LLMRoute, issuer: Issuer | None) -> AccessSettings | None:
    """``spec.access`` as the router needs it: token files, not tokens; the issuer's public keys."""
    spec = route.spec.access
    if spec is None:
        return None
    ns = route.metadata.namespace or DEFAULT_NAMESPACE
    tokens = tuple(dict.fromkeys(TokenFile(secret_name=t.secret_ref.name, secret_key=t.secret_ref.key,
                                           file=f"{TOKENS_DIR}/{t.secret_ref.name}/{t.secret_ref.key}")
                                 for t in spec.bearer_tokens))
    verification = None
    if spec.service_accounts is not None:
        audience = spec.service_accounts.audience or access.default_audience(ns, route.metadata.name)
        verification = ServiceAccountVerification(audience=audience, issuer=issuer.url if issuer else None,
                                                  keys=issuer.keys if issuer else ())
    return AccessSettings(bearer_tokens=tokens, service_accounts=verification,
                          allowed_namespaces=tuple(dict.fromkeys(spec.allowed_namespaces)),
                          allowed_service_accounts=tuple(dict.fromkeys(spec.allowed_service_accounts)))


def _reference_errors(route: LLMRoute, policy: ProviderPolicy) -> list[FieldError]:
    spec, pname = route.spec, policy.metadata.name
    errors: list[FieldError] = []
    if spec.policy_ref.name != pname:
        message = f'names ProviderPolicy "{spec.policy_ref.name}", not "{pname}"'
        errors.append(FieldError("spec.policyRef.name", message))
    known_classes = ", ".join(c.name for c in policy.spec.data_classes)
    if spec.default_data_class is not None:
        if policy.spec.data_class(spec.default_data_class) is None:
            errors.append(FieldError(
                "spec.defaultDataClass",
                f'unknown data class "{spec.default_data_class}" in ProviderPolicy "{pname}" (known: {known_classes})',
            ))
    elif policy.spec.default_data_class is None:
        errors.append(FieldError(
            "spec.defaultDataClass",
            f'not set, and ProviderPolicy "{pname}" sets no defaultDataClass either (known: {known_classes})',
        ))
    known_providers = ", ".join(p.name for p in policy.spec.providers)
    for i, model in enumerate(spec.models):
        for j, backend in enumerate(model.backends):
            if policy.spec.provider(backend.provider) is None:
                errors.append(FieldError(
                    f"spec.models[{i}].backends[{j}].provider",
                    f'no provider "{backend.provider}" in ProviderPolicy "{pname}" (known: {known_providers})',
                ))
    backend_providers = list(dict.fromkeys(b.provider for m in spec.models for b in m.backends))
    for i, drill in enumerate(spec.drills):
        if drill.provider not in backend_providers:
            errors.append(FieldError(
                f"spec.drills[{i}].provider",
                f'"{drill.provider}" is not a backend provider of this route '
                f'(backend providers: {", ".join(backend_providers)})',
            ))
    return errors


def _used_providers(spec: LLMRouteSpec, policy: ProviderPolicy) -> list[Provider]:
    names = {b.provider for m in spec.models for b in m.backends}
    return [p for p in policy.spec.providers if p.name in names]


def _target(p: Provider) -> ProviderTarget:
    cred = None
    if p.credentials is not None:
        ref = p.credentials.secret_ref
        cred = CredentialRef(secret_name=ref.name, secret_key=ref.key, secret_namespace=ref.namespace,
                             env=credential_env(p.name))
    hc = p.health_check
    return ProviderTarget(
        name=p.name,
        endpoint=provider_endpoint(p),
        api=p.api.value,
        jurisdiction=p.jurisdiction,
        region=p.region,
        self_hosted=p.is_self_hosted,
        credential=cred,
        health=HealthProbe(path=hc.path, interval_s=parse_duration(hc.interval), timeout_s=parse_duration(hc.timeout),
                           failure_threshold=hc.failure_threshold, success_threshold=hc.success_threshold),
        pool=None if p.pool is None else PoolTarget(name=p.pool.name, namespace=p.pool.namespace,
                                                    pods_host=pools.pods_host(p.pool.name, p.pool.namespace),
                                                    port=VLLM_PORT),
        proxy=_proxy(p),
    )


def proxy_env(provider: str) -> str:
    """Environment variable a router pod receives ``provider``'s proxy ``user:password`` in."""
    return "LLMROUTE_PROXY_" + re.sub(r"[^A-Z0-9]", "_", provider.upper())


def _proxy(p: Provider) -> ProxyTarget | None:
    if p.proxy is None:
        return None
    cred = None
    if p.proxy.credentials is not None:
        ref = p.proxy.credentials.secret_ref
        cred = CredentialRef(secret_name=ref.name, secret_key=ref.key, secret_namespace=ref.namespace,
                             env=proxy_env(p.name))
    return ProxyTarget(url=p.proxy.url.rstrip("/"), credential=cred)


def provider_endpoint(p: Provider) -> str:
    """The provider's OpenAI base URL: its ``endpoint``, or its ModelPool's Service."""
    if p.pool is not None:
        return pools.endpoint(p.pool.name, p.pool.namespace)
    assert p.endpoint is not None  # the API's rule: exactly one of endpoint and pool
    return p.endpoint.rstrip("/")


def _model_route(model: PublishedModel, policy: ProviderPolicy) -> ModelRoute:
    ordered = sorted(enumerate(model.backends), key=lambda ib: (ib[1].priority, ib[0]))
    classes = []
    for data_class in policy.spec.data_classes:
        allowed: list[BackendTarget] = []
        denied: list[Denial] = []
        for _, b in ordered:
            provider = policy.spec.provider(b.provider)
            assert provider is not None  # checked by _reference_errors
            verdict = residency.evaluate(data_class, provider)
            if verdict.allowed:
                allowed.append(BackendTarget(provider=b.provider, model=b.model, priority=b.priority, weight=b.weight))
            else:
                denied.append(Denial(provider=b.provider, model=b.model, reasons=verdict.reasons))
        classes.append(ClassRoute(data_class=data_class.name, allowed=tuple(allowed), denied=tuple(denied)))
    reasoning = None if model.reasoning_field is ReasoningField.REASONING_CONTENT else model.reasoning_field.value
    return ModelRoute(name=model.name, classes=tuple(classes), reasoning_field=reasoning)


def _detection(policy: ProviderPolicySpec) -> Detection | None:
    """Escalation rules, only when some class detects something (see :mod:`llmroute.core.router_config`)."""
    classes = tuple(ClassDetect(data_class=c.name, types=tuple(dict.fromkeys(c.detect)))
                    for c in policy.data_classes if c.detect)
    if not classes:
        return None
    detectors = tuple(CustomDetectorTarget(name=d.name, pattern=d.pattern, confidence=d.confidence)
                      for d in policy.detectors)
    return Detection(classes=classes, detectors=detectors)


def _redaction_errors(route: LLMRoute, policy: ProviderPolicy) -> list[FieldError]:
    """Rules naming a data class the policy lacks, or a type neither built in nor a custom detector of the policy."""
    pname, errors = policy.metadata.name, []
    known_classes = ", ".join(c.name for c in policy.spec.data_classes)
    known_types = (*BUILTIN_PII_TYPES, *(d.name for d in policy.spec.detectors))
    for i, rule in enumerate(route.spec.redaction):
        if policy.spec.data_class(rule.data_class) is None:
            errors.append(FieldError(f"spec.redaction[{i}].dataClass", f'unknown data class "{rule.data_class}" in '
                                     f'ProviderPolicy "{pname}" (known: {known_classes})'))
        errors += [FieldError(f"spec.redaction[{i}].types[{j}]", f'unknown type "{t}" (built-in: '
                              f'{", ".join(BUILTIN_PII_TYPES)}; custom detectors of ProviderPolicy "{pname}": '
                              f'{", ".join(known_types[len(BUILTIN_PII_TYPES):]) or "none"})')
                   for j, t in enumerate(rule.types) if t not in known_types]
    return errors


def _redaction(spec: LLMRouteSpec, policy: ProviderPolicySpec, used: list[Provider]) -> Redaction | None:
    """Per class and per used provider, the mode of each type; None when nothing is redacted."""
    every = (*BUILTIN_PII_TYPES, *(d.name for d in policy.detectors))

    def modes(rules: list[tuple[RedactionMode, list[str]]]) -> dict[str, RedactionMode]:
        return redaction.merge(*(dict.fromkeys(types or every, mode) for mode, types in rules))

    classes = {c.name: modes([(r.mode, r.types) for r in spec.redaction if r.data_class == c.name])
               for c in policy.data_classes}
    providers = {p.name: modes([(p.redaction.mode, p.redaction.types)]) for p in used if p.redaction is not None}
    classes = {name: m for name, m in classes.items() if m}
    if not classes and not providers:
        return None
    # every custom detector, as detection has them: the same detector resolves overlaps the same way, so the router
    # scans a request once for both
    detectors = tuple(CustomDetectorTarget(name=d.name, pattern=d.pattern, confidence=d.confidence)
                      for d in policy.detectors)
    return Redaction(classes=classes, providers=providers, detectors=detectors)


def _cold_start(spec: LLMRouteSpec) -> ColdStartSettings:
    return ColdStartSettings(max_wait_s=parse_duration(spec.cold_start.max_wait),
                             max_requests=spec.cold_start.max_requests)


def _drill(d: Drill) -> CompiledDrill:
    return CompiledDrill(provider=d.provider, fault=d.fault, until_epoch=parse_timestamp(d.until),
                         error_rate=drills.error_rate(d.fault, d.error_rate))


def _failover(spec: LLMRouteSpec) -> FailoverSettings:
    f = spec.failover
    return FailoverSettings(
        max_attempts=f.max_attempts,
        connect_timeout_s=parse_duration(f.connect_timeout),
        time_to_first_token_s=parse_duration(f.time_to_first_token),
        idle_timeout_s=parse_duration(f.idle_timeout),
        total_timeout_s=parse_duration(f.total_timeout),
        backoff_s=parse_duration(f.backoff),
    )


def _circuit(spec: LLMRouteSpec) -> CircuitSettings:
    c, f = spec.circuit_breaker, spec.failover
    return CircuitSettings(
        consecutive_failures=c.consecutive_failures,
        error_rate=c.error_rate_percent / 100,
        min_requests=c.min_requests,
        window_s=parse_duration(c.window),
        open_s=parse_duration(c.open_duration),
        recovery_steps=tuple(s / 100 for s in c.recovery_steps),
        recovery_step_s=parse_duration(c.recovery_step_duration),
        slow_first_token_s=parse_duration(c.slow_first_token or f.time_to_first_token),
    )
