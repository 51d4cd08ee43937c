"""RouterConfig: the versioned contract between the operator (or local mode) and the router.

Produced only by :func:`llmroute.core.compile.compile_route`; consumed by :mod:`llmroute.router`. It is cluster-free
(no Kubernetes types) so the router can be run and tested on plain files, and it is versioned: a router that sees a
``version`` it does not know refuses the new config and keeps serving its last good one (as Envoy AI Gateway's
filterapi does during rolling upgrades).

It carries **references** to provider keys only (Secret name/key and the environment variable or file the router
pod receives the value through), never a key. Residency is already decided here: per model and data class the
router gets the ordered list of allowed backends, so a request can only ever go to one of those.

Drills (``drills``, from LLMRoute ``spec.drills``) are fast-changing state, not routing: starting or ending one must
not restart the router. So they are **excluded from** :meth:`RouterConfig.content_hash` (the hash that rolls the
router Deployment and is reported in status and ``llmroute_config_info``) and reach running routers through the
ConfigMap and the router's live reload alone. They are also left out of :meth:`RouterConfig.to_json` when there are
none, so a config without drills is byte-for-byte what routers before drills read (``extra="forbid"`` there would
reject the key; a router that old rejects a config *with* drills and keeps serving its last one - no drill, no
harm). A drill can never add a destination: the router applies it only to backends already in the allowed lists.

Escalation (``detection``, from ProviderPolicy ``dataClasses[].detect`` and ``detectors``) is present only when some
class detects something, so configs without it stay what routers before escalation read; a router that old refuses
a config *with* it and keeps serving its last one. It adds no destination either: a request escalated to more classes
may only use backends every one of them allows (:mod:`llmroute.core.escalation`).

Redaction (``redaction``, from LLMRoute ``spec.redaction`` and ProviderPolicy ``providers[].redaction``) is present
only when some class or used provider redacts something, for the same reason. Its types are resolved (a rule without
types is listed out) and overlaps settled (the strictest mode per type), so the router only merges maps.

Access (``access``, from LLMRoute ``spec.access``) is present only for routes that restrict callers. It carries the
*files* the bearer tokens are mounted at (never a token: the router re-reads them, so a rotation needs no rollout)
and the cluster's service account issuer with its public keys (JWKS). The keys are left out of the content hash
like drills: an issuer key rotation reaches routers by live reload, not by a restart.

The audit trail (``audit``, from LLMRoute ``spec.audit``) is present only when the route audits, for the same reason,
and is left out of the content hash like drills: routers read it per request, so turning it on reloads, never rolls.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from llmroute.api.base import ApiModel
from llmroute.api.llm_route import DrillFault
from llmroute.api.provider_policy import RedactionMode

CONFIG_VERSION = 1


class CredentialRef(ApiModel):
    """Where the router finds a provider's key: env var ``env`` (cluster: from a secretKeyRef), or ``file``."""

    secret_name: str = Field(description="Secret holding the key.")
    secret_key: str = Field(description="Key within the Secret.")
    secret_namespace: str | None = Field(default=None, description="Namespace of the Secret, if not the route's.")
    env: str = Field(description="Environment variable the router reads the key from.")


class HealthProbe(ApiModel):
    """The unbilled probe for a provider, in seconds."""

    path: str
    interval_s: float
    timeout_s: float
    failure_threshold: int
    success_threshold: int


class PoolTarget(ApiModel):
    """A provider served by a ModelPool: the router picks its ready pods by load and holds requests while it is at
    zero replicas (see :mod:`llmroute.router.pools`). Only in configs that have pool providers (older routers,
    ``extra="forbid"``, refuse such a config and keep their last one)."""

    name: str = Field(description="ModelPool name.")
    namespace: str = Field(description="ModelPool namespace.")
    pods_host: str = Field(description="Headless Service DNS name resolving to the ready pods.")
    port: int = Field(description="Port of vLLM in each pod.")


class ProxyTarget(ApiModel):
    """An egress proxy for one provider (ProviderPolicy ``providers[].proxy``): its URL, and where the router reads
    its ``user:password`` (by reference, as keys are). Only in configs with a provider proxy."""

    url: str = Field(description="http://host:port of the proxy (never credentials).")
    credential: CredentialRef | None = Field(default=None, description="The proxy's user:password, if any.")


class ProviderTarget(ApiModel):
    """A provider as the router needs it: where, what law, which key."""

    name: str
    endpoint: str
    api: str
    jurisdiction: str
    region: str | None = None
    self_hosted: bool = False
    credential: CredentialRef | None = None
    health: HealthProbe
    pool: PoolTarget | None = None
    proxy: ProxyTarget | None = None


class BackendTarget(ApiModel):
    """An allowed backend for one model and data class, in the order it is tried."""

    provider: str
    model: str
    priority: int
    weight: int


class Denial(ApiModel):
    """A backend residency denies for a data class, and why (shown in 403 errors and ``llmroute explain``)."""

    provider: str
    model: str
    reasons: tuple[str, ...]


class ClassRoute(ApiModel):
    """Routing of one published model for one data class."""

    data_class: str
    allowed: tuple[BackendTarget, ...]
    denied: tuple[Denial, ...]


class ModelRoute(ApiModel):
    """A published model and its routing for every data class of the policy."""

    name: str
    classes: tuple[ClassRoute, ...]
    reasoning_field: str | None = Field(
        default=None, description='Field clients get reasoning text in; None means "reasoning_content" (left out of '
        "the wire form so configs that do not change it stay what older routers read).")

    def for_class(self, data_class: str) -> ClassRoute | None:
        return next((c for c in self.classes if c.data_class == data_class), None)


class FailoverSettings(ApiModel):
    """Failover budget in seconds (see LLMRoute spec.failover)."""

    max_attempts: int
    connect_timeout_s: float
    time_to_first_token_s: float
    idle_timeout_s: float
    total_timeout_s: float
    backoff_s: float


class CircuitSettings(ApiModel):
    """Circuit breaker thresholds in seconds and fractions (see LLMRoute spec.circuitBreaker)."""

    consecutive_failures: int
    error_rate: float
    min_requests: int
    window_s: float
    open_s: float
    recovery_steps: tuple[float, ...]
    recovery_step_s: float
    slow_first_token_s: float


class ColdStartSettings(ApiModel):
    """Holding requests for ModelPools at zero replicas (see LLMRoute spec.coldStart)."""

    max_wait_s: float
    max_requests: int


class Drill(ApiModel):
    """A simulated outage of one provider, active while the wall clock is before ``until_epoch``."""

    provider: str
    fault: DrillFault
    until_epoch: float = Field(description="End of the drill, Unix epoch seconds.")
    error_rate: float = Field(ge=0, le=1, description="Share of attempts and probes that fail (already resolved).")


class CustomDetectorTarget(ApiModel):
    """A custom regex detector of the policy (ProviderPolicy ``spec.detectors``), as the router compiles it."""

    name: str
    pattern: str
    confidence: float


class ClassDetect(ApiModel):
    """A data class with a ``detect`` list: requests whose text holds one of ``types`` are held to it too."""

    data_class: str
    types: tuple[str, ...]


class Detection(ApiModel):
    """What the router scans request text for, and which class each type escalates to (policy order)."""

    classes: tuple[ClassDetect, ...]
    detectors: tuple[CustomDetectorTarget, ...] = ()

    def by_class(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(class, types) pairs, as :func:`llmroute.core.escalation.escalate` takes them."""
        return tuple((c.data_class, c.types) for c in self.classes)


class Redaction(ApiModel):
    """What the router redacts: per data class and per provider, the mode of each type (see
    :mod:`llmroute.router.redaction`); the custom detectors those types name come along."""

    classes: dict[str, dict[str, RedactionMode]] = Field(
        default_factory=dict, description="Data class -> type -> mode (LLMRoute spec.redaction).")
    providers: dict[str, dict[str, RedactionMode]] = Field(
        default_factory=dict, description="Provider -> type -> mode (ProviderPolicy providers[].redaction).")
    detectors: tuple[CustomDetectorTarget, ...] = Field(
        default=(), description="The policy's custom detectors (all of them, as detection has them).")


TOKENS_DIR = "/var/run/llmroute/access"
"""Where router pods find the route's bearer-token Secrets: ``<TOKENS_DIR>/<secret>/<key>`` (a Secret volume)."""


class TokenFile(ApiModel):
    """One accepted bearer token: the Secret key it comes from and the file the router re-reads it from."""

    secret_name: str
    secret_key: str
    file: str = Field(description="Path of the mounted key; the router keeps only its SHA-256 digest.")


class ServiceAccountVerification(ApiModel):
    """What the router verifies projected ServiceAccount tokens against (public keys only)."""

    audience: str
    issuer: str | None = Field(default=None, description="The cluster's service account issuer; None: unknown, "
                               "so every service account token is refused (fail closed).")
    keys: tuple[dict[str, str], ...] = Field(default=(), description="The issuer's JWKS keys (public parts).")


class AccessSettings(ApiModel):
    """Who may use the route (LLMRoute ``spec.access``): see :mod:`llmroute.core.access`."""

    bearer_tokens: tuple[TokenFile, ...] = ()
    service_accounts: ServiceAccountVerification | None = None
    allowed_namespaces: tuple[str, ...] = ()
    allowed_service_accounts: tuple[str, ...] = ()


class AuditSettings(ApiModel):
    """The audit trail (LLMRoute spec.audit; :mod:`llmroute.core.audit`). Only in configs that audit."""

    sample_rate: float = Field(description="Share of requests recorded; denials and fail-closed ones always are.")


class Origin(ApiModel):
    """Which objects the config was compiled from (for logs and /readyz). No generations: the config, and so its
    hash, changes only when routing changes, not when e.g. the replica count does."""

    route_namespace: str
    route_name: str
    policy_name: str


class RouterConfig(ApiModel):
    """Everything one router needs to serve one LLMRoute."""

    kind: Literal["RouterConfig"] = "RouterConfig"
    version: int = Field(default=CONFIG_VERSION, description="Contract version; routers refuse versions they lack.")
    origin: Origin
    default_data_class: str
    data_classes: tuple[str, ...]
    providers: tuple[ProviderTarget, ...]
    models: tuple[ModelRoute, ...]
    failover: FailoverSettings
    circuit: CircuitSettings
    max_request_bytes: int
    drills: tuple[Drill, ...] = Field(default=(), description="Active or future drills; not part of the hash.")
    cold_start: ColdStartSettings | None = Field(default=None,
                                                 description="Only in configs with pool providers.")
    detection: Detection | None = Field(default=None,
                                        description="Only in configs where some data class has a detect list.")
    redaction: Redaction | None = Field(default=None,
                                        description="Only in configs where some class or provider redacts.")
    audit: AuditSettings | None = Field(default=None, description="Only in configs whose route audits.")
    access: AccessSettings | None = Field(default=None, description="Only in configs of routes with spec.access.")

    def model_route(self, name: str) -> ModelRoute | None:
        return next((m for m in self.models if m.name == name), None)

    def provider(self, name: str) -> ProviderTarget | None:
        return next((p for p in self.providers if p.name == name), None)

    def wire(self) -> dict[str, Any]:
        """The wire form; ``drills`` only when there are some (see the module docstring)."""
        out = super().wire()
        if not out.get("drills"):
            out.pop("drills", None)
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) - what the ConfigMap holds."""
        return _canonical(self.wire())

    def content_hash(self) -> str:
        """A short, stable hash of the routing config (drills and audit settings excluded); the operator rolls the
        router only when it changes, so starting or ending a drill, or turning the audit trail on, off or to another
        sample rate, never restarts router pods (both are read per request from the live-reloaded config)."""
        routing = self.wire()
        routing.pop("drills", None)
        routing.pop("audit", None)  # read per request from the live config: turning it on or off is a reload
        routing.get("access", {}).get("serviceAccounts", {}).pop("keys", None)  # issuer key rotation: live reload
        return hashlib.sha256(_canonical(routing).encode()).hexdigest()[:16]


def _canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))
