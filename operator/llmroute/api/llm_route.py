"""LLMRoute: model names published to applications and how each is served.

An LLMRoute is **namespaced**: application teams own their routes (and their router Deployment) in their own
namespace, and reference the cluster-scoped ProviderPolicy of the platform team by name. Per published model it
lists backends in priority order; the failover and circuit-breaker policy bound how hard the router tries before it
tells the client that no allowed backend is healthy. ``spec.drills`` rehearses an outage of one provider: the router
simulates the failures itself (it only ever withholds traffic, never adds a destination), until a set time.
``spec.redaction`` keeps personal data of chosen types out of what upstreams receive, per data class
(:mod:`llmroute.router.redaction`). ``spec.audit`` turns on the audit trail (:mod:`llmroute.router.audit`).

Compiled, together with its ProviderPolicy, by :func:`llmroute.core.compile.compile_route`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from llmroute.api.base import (
    OBJECT_DEFAULT,
    ApiModel,
    Condition,
    Duration,
    Name,
    NonEmpty,
    ObjectMeta,
    Rule,
    StatusModel,
    Timestamp,
    UniqueBy,
    parse_duration,
)
from llmroute.api.provider_policy import BUILTIN_PII_TYPES, PiiTypeName, RedactionMode

ModelName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]
Quantity = Annotated[int | str, Field(description="A Kubernetes quantity, e.g. 500m, 1, 256Mi.")]


class PolicyRef(ApiModel):
    """Reference to the cluster-scoped ProviderPolicy that decides residency for this route."""

    name: Name = Field(description="Name of the ProviderPolicy.")


class Backend(ApiModel):
    """One way to serve a published model: a provider and the model name it knows it by."""

    provider: Name = Field(description="Provider name from the ProviderPolicy.")
    model: ModelName = Field(description="Upstream model name sent to the provider, e.g. deepseek-ai/DeepSeek-V3.")
    priority: int = Field(default=0, ge=0, le=100,
                          description="Lower is tried first; backends of equal priority share traffic by weight.")
    weight: int = Field(default=1, ge=0, le=1000,
                        description="Relative share of traffic among backends of the same priority; 0 = standby.")


class ReasoningField(StrEnum):
    """The response field that carries a reasoning model's thinking: DeepSeek's API says ``reasoning_content``,
    current vLLM says ``reasoning``. The values are the wire field names themselves."""

    REASONING_CONTENT = "reasoning_content"
    REASONING = "reasoning"


class PublishedModel(ApiModel):
    """A model name clients send in the request body, and the backends that may serve it."""

    name: ModelName = Field(description="Model name clients send, e.g. deepseek-chat.")
    reasoning_field: ReasoningField = Field(
        default=ReasoningField.REASONING_CONTENT,
        description="Field clients get reasoning text in, in messages and stream deltas, whichever backend served "
        "the request: reasoning_content (DeepSeek's API) or reasoning (current vLLM). The router renames the other "
        "one, so failover between DeepSeek and a vLLM pool stays invisible.",
    )
    backends: Annotated[
        list[Backend],
        Field(max_length=16),
        NonEmpty(message="each model needs at least one backend"),
        UniqueBy("provider", "model", message="backends must be unique by provider and model"),
    ] = Field(description="Backends in priority order. Residency filters them per data class before any is tried.")


class Failover(ApiModel):
    """Bounds on how hard the router tries one request across backends."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="duration(self.totalTimeout) >= duration(self.timeToFirstToken)",
            message="totalTimeout must not be shorter than timeToFirstToken",
            check=lambda f: parse_duration(f.total_timeout) >= parse_duration(f.time_to_first_token),
            field="totalTimeout",
        ),
    )

    max_attempts: int = Field(default=3, ge=1, le=10, description="Attempts per request over all backends.")
    connect_timeout: Duration = Field(default="3s", description="TCP+TLS connect budget per attempt.")
    time_to_first_token: Duration = Field(
        default="8s",
        description="An attempt that has produced no token by then is abandoned and the request fails over "
        "(DeepSeek's keep-alive comments and blank lines are not tokens).",
    )
    idle_timeout: Duration = Field(default="30s",
                                   description="Longest silence between tokens once a response is streaming.")
    total_timeout: Duration = Field(default="10m",
                                    description="Wall-clock budget for the whole request, all attempts included.")
    backoff: Duration = Field(default="200ms", description="Base of the jittered backoff between attempts.")


class CircuitBreaker(ApiModel):
    """Takes a failing backend out of the path and brings it back in steps."""

    consecutive_failures: int = Field(default=5, ge=1, le=1000, description="Failures in a row that open the circuit.")
    error_rate_percent: int = Field(default=50, ge=1, le=100,
                                    description="Error rate over the window that opens the circuit.")
    min_requests: int = Field(default=10, ge=1, le=100000,
                              description="Requests in the window before the error rate is trusted.")
    window: Duration = Field(default="30s", description="Sliding window for the error rate.")
    open_duration: Duration = Field(default="30s", description="Minimum time a circuit stays open before probing.")
    recovery_steps: Annotated[list[Annotated[int, Field(ge=1, le=100)]], Field(min_length=1, max_length=10)] = Field(
        default_factory=lambda: [10, 50, 100],
        description="Traffic shares (percent) a recovering backend is given, one step per recoveryStepDuration.",
    )
    recovery_step_duration: Duration = Field(default="15s", description="Time spent at each recovery step.")
    slow_first_token: Duration | None = Field(
        default=None,
        description="A first token slower than this counts as a failure (degradation); unset uses timeToFirstToken.",
    )


class DrillFault(StrEnum):
    """An outage shape a drill simulates: DeepSeek's recorded incidents, as ``llmroute local`` replays them."""

    FULL_OUTAGE = "FullOutage"
    HALF_ERRORS = "HalfErrors"
    SLOW_FIRST_TOKEN = "SlowFirstToken"
    PARTIAL_OUTAGE = "PartialOutage"
    OVERLOADED = "Overloaded"
    RATE_LIMITED = "RateLimited"


class Drill(ApiModel):
    """A failover rehearsal: until a set time, the router fails attempts to one provider itself, never sending them."""

    provider: Name = Field(description="Provider whose outage is simulated; must be a backend provider of this route.")
    fault: DrillFault = Field(
        description="Outage shape: FullOutage (connections fail), HalfErrors (50% answered 503), SlowFirstToken "
        "(attempts exceed timeToFirstToken), PartialOutage (30% answered 503), Overloaded (every request answered "
        "503), RateLimited (429 with Retry-After 2). Failed attempts and probes are never sent to the provider.",
    )
    until: Timestamp = Field(
        description="End of the drill, an RFC 3339 time with an offset (e.g. 2026-03-01T15:00:00Z); the drill is "
        "active only before it, so a forgotten drill ends by itself.",
    )
    error_rate: int | None = Field(
        default=None, ge=1, le=100,
        description="Percent of attempts (and probes) that fail; overrides the fault's own share (HalfErrors 50, "
        "PartialOutage 30, all others 100).",
    )


class ColdStart(ApiModel):
    """How the router holds requests whose only allowed backends are ModelPools at zero replicas while one starts."""

    max_wait: Duration = Field(
        default="3m",
        description="Longest a request is held waiting for a pool pod to become ready; then 503 with Retry-After. "
        "Requests with another allowed, healthy backend are never held.",
    )
    max_requests: int = Field(default=100, ge=0, le=100000,
                              description="Requests held at once per router replica; more get 503 at once. 0 "
                              "disables holding.")


class RedactionRule(ApiModel):
    """What the router does with personal data of some types in requests of one data class."""

    data_class: Name = Field(description="Data class the rule applies to (a name from the ProviderPolicy).")
    mode: RedactionMode = Field(
        description="Restore: each value is replaced by a placeholder such as <EMAIL_1> before sending, and the "
        "answer gets the originals back (content, reasoning, tool-call arguments, streams). Redact: replaced, not "
        "restored. Block: the request is refused with 400 naming the types, never the values, before any upstream "
        "sees it. Where rules overlap the strictest wins (Block, Redact, Restore).",
    )
    types: Annotated[list[PiiTypeName], Field(max_length=40)] = Field(
        default_factory=list,
        description="Types the rule covers: built-in ones (" + ", ".join(BUILTIN_PII_TYPES) + ") or custom "
        "detectors of the ProviderPolicy; empty means every type.",
    )


SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
ServiceAccountPattern = Annotated[str, Field(
    min_length=3, max_length=317, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/(\*|[a-z0-9]([-.a-z0-9]*[a-z0-9])?)$")]


class TokenSecretRef(ApiModel):
    """A key of a Secret in the route's own namespace whose value is one accepted bearer token."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")] = Field(
        description="Name of the Secret (in the LLMRoute's namespace).")
    key: SecretKey = Field(default="token", description="Key within the Secret holding the token.")


class BearerToken(ApiModel):
    """A shared token clients send as ``Authorization: Bearer <token>`` (the openai SDK's ``api_key``)."""

    secret_ref: TokenSecretRef = Field(
        description="Where the token is. The operator mounts the Secret into the router pods, which re-read it: a "
        "rotated token is accepted within about a minute, without a rollout. The router keeps only SHA-256 digests.")


class ServiceAccountAccess(ApiModel):
    """Callers prove their Kubernetes ServiceAccount with a projected token the router verifies offline."""

    audience: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None,
        description="Audience the token must be issued for (the serviceAccountToken projected volume's audience); "
        "default llmroute.io/<namespace>/<name> of this route, so a token for one route is useless at another.",
    )


class Access(ApiModel):
    """Who may use the route. Without it, any workload that can reach the router's Service may (then only
    NetworkPolicies restrict callers)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="(has(self.bearerTokens) && size(self.bearerTokens) > 0) || has(self.serviceAccounts)",
            message="access needs bearerTokens or serviceAccounts (a way for callers to authenticate)",
            check=lambda a: bool(a.bearer_tokens) or a.service_accounts is not None,
        ),
        Rule(
            cel="!has(self.allowedServiceAccounts) || size(self.allowedServiceAccounts) == 0 || "
                "has(self.serviceAccounts)",
            message="allowedServiceAccounts needs serviceAccounts (bearer tokens carry no service account)",
            check=lambda a: not a.allowed_service_accounts or a.service_accounts is not None,
            field="allowedServiceAccounts",
        ),
    )

    bearer_tokens: Annotated[list[BearerToken], Field(max_length=16)] = Field(
        default_factory=list,
        description="Shared tokens, each from a Secret in the route's namespace. Holding one is the permission: "
        "allowedNamespaces limits only where such callers may connect from (NetworkPolicy).",
    )
    service_accounts: ServiceAccountAccess | None = Field(
        default=None,
        description="Accept projected ServiceAccount tokens, verified offline against the cluster issuer's public "
        "keys (which the operator puts in the router config): routers need no Kubernetes API access.",
    )
    allowed_namespaces: Annotated[list[Name], Field(max_length=64)] = Field(
        default_factory=list,
        description="Namespaces whose service accounts may call, and the only namespaces the router's "
        "NetworkPolicy admits traffic from. With serviceAccounts and neither list set, only the route's own "
        "namespace may call.",
    )
    allowed_service_accounts: Annotated[list[ServiceAccountPattern], Field(max_length=64)] = Field(
        default_factory=list,
        description="Service accounts that may call, as namespace/name or namespace/* (their namespaces are "
        "admitted by the NetworkPolicy too).",
    )


class Audit(ApiModel):
    """The audit trail: one JSON line per request on the router's stdout, without prompts, answers or keys."""

    enabled: bool = Field(default=True, description="Write audit lines (set false to pause without losing settings).")
    sample_rate: float = Field(
        default=1.0, ge=0, le=1,
        description="Share of requests recorded, 0 to 1. Requests refused for residency (403 no_compliant_backend), "
        "failed closed (503 no_healthy_backend) or blocked for personal data (400 pii_blocked) are always recorded.",
    )


class Autoscaling(ApiModel):
    """Horizontal autoscaling of the router Deployment."""

    min_replicas: int = Field(default=2, ge=1, le=100, description="Lower bound.")
    max_replicas: int = Field(default=10, ge=1, le=1000, description="Upper bound.")
    target_cpu_utilization_percent: int = Field(default=70, ge=1, le=100, description="Target CPU utilization.")


class Resources(ApiModel):
    """Container resources (the Kubernetes ResourceRequirements shape)."""

    requests: dict[str, Quantity] = Field(default_factory=dict, description="Requested resources.")
    limits: dict[str, Quantity] = Field(default_factory=dict, description="Resource limits.")


class RouterSpec(ApiModel):
    """The router Deployment the operator runs for this route."""

    replicas: int = Field(default=2, ge=0, le=1000, description="Router replicas (ignored with autoscaling).")
    image: str | None = Field(default=None, max_length=512,
                              description="Router image; defaults to the operator's configured router image.")
    resources: Resources | None = Field(default=None, description="Container resources of the router.")
    autoscaling: Autoscaling | None = Field(default=None,
                                            description="Scale the router with a HorizontalPodAutoscaler.")
    max_request_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024,
                                   description="Largest request body accepted; larger bodies get 413.")


class LLMRouteSpec(ApiModel):
    """Published models, their ordered backends and the failover policy."""

    policy_ref: PolicyRef = Field(description="The ProviderPolicy that decides residency.")
    default_data_class: Name | None = Field(
        default=None,
        description="Class of requests that send no x-llmroute-data-class header; falls back to the policy's default.",
    )
    models: Annotated[
        list[PublishedModel], Field(min_length=1, max_length=64), UniqueBy("name", message="model names must be unique")
    ] = Field(description="Model names published to applications.")
    failover: Failover = Field(default_factory=Failover, json_schema_extra=OBJECT_DEFAULT,
                               description="Retry and failover budget.")
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker, json_schema_extra=OBJECT_DEFAULT,
                                            description="Per-backend circuit breaker.")
    router: RouterSpec = Field(default_factory=RouterSpec, json_schema_extra=OBJECT_DEFAULT,
                                description="The router Deployment.")
    cold_start: ColdStart = Field(default_factory=ColdStart, json_schema_extra=OBJECT_DEFAULT,
                                  description="Holding requests while a ModelPool scales from zero.")
    drills: Annotated[
        list[Drill], Field(max_length=8), UniqueBy("provider", message="drills must be unique by provider")
    ] = Field(
        default_factory=list,
        description="Failover rehearsals: simulated outages of providers, each until a set time. Failover, circuits "
        "and metrics run as in a real outage; a drill only withholds traffic, so requests still go only to backends "
        "residency allows for their data class. Changing drills does not restart the router (it reloads its config "
        "live). Who may edit this LLMRoute may start a drill.",
    )
    access: Access | None = Field(
        default=None,
        description="Who may use the route: bearer tokens from Secrets and/or ServiceAccount tokens, and which "
        "namespaces and service accounts may call. Unset: anyone who can reach the router (see NetworkPolicies).",
    )
    audit: Audit | None = Field(
        default=None,
        description="Audit trail: one JSON line per request (kind llmroute.audit) on the router's stdout - time, "
        "route, model, classes applied and personal-data types found, every attempt's provider, jurisdiction and "
        "outcome, status, latency, config hash; never a prompt, an answer, a key or a header value. See "
        "docs/audit.md.",
    )
    redaction: Annotated[
        list[RedactionRule], Field(max_length=64),
        UniqueBy("dataClass", "mode", message="redaction rules must be unique by data class and mode"),
    ] = Field(
        default_factory=list,
        description="Personal data kept out of what upstreams receive, per data class. The same value gets the same "
        "placeholder in every message of a request; the mapping lives only in that request's memory. Providers of "
        "the ProviderPolicy may require more (providers[].redaction).",
    )


class ActiveBackend(StatusModel):
    """Which backend currently serves a model for a data class."""

    model: str = Field(description="Published model name.")
    data_class: str = Field(description="Data class.")
    provider: str | None = Field(default=None, description="Provider serving it now; unset if none is available.")
    upstream_model: str | None = Field(default=None, description="Model name at that provider.")
    allowed: int = Field(default=0, ge=0, description="Backends residency allows for this class.")
    healthy: int = Field(default=0, ge=0, description="Allowed backends that are healthy.")


class FailoverRecord(StatusModel):
    """The last time traffic moved from one provider to another."""

    time: str = Field(description="When (RFC 3339).")
    model: str | None = Field(default=None, description="Published model.")
    from_provider: str | None = Field(default=None, description="Provider traffic left.")
    to_provider: str | None = Field(default=None, description="Provider traffic moved to.")
    reason: str = Field(description="Why, e.g. ProviderDown or CircuitOpen.")


class LLMRouteStatus(StatusModel):
    """Observed state of an LLMRoute, written by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation the status was computed from.")
    conditions: list[Condition] = Field(default_factory=list, description="Accepted, Ready and Degraded.")
    model_names: str | None = Field(default=None, description="Published model names, comma separated.")
    active_provider: str | None = Field(default=None,
                                        description="Provider serving the first model for the default data class.")
    active: list[ActiveBackend] = Field(default_factory=list, description="Active backend per model and data class.")
    last_failover: FailoverRecord | None = Field(default=None, description="The last failover.")
    config_hash: str | None = Field(default=None, description="Hash of the compiled router config in use.")


class LLMRoute(ApiModel):
    """Namespaced: publishes model names to applications and routes them under a ProviderPolicy."""

    KIND: ClassVar[str] = "LLMRoute"

    api_version: Literal["llmroute.io/v1alpha1"] = Field(default="llmroute.io/v1alpha1", alias="apiVersion")
    kind: Literal["LLMRoute"] = "LLMRoute"
    metadata: ObjectMeta
    spec: LLMRouteSpec
    status: LLMRouteStatus | None = None
