"""RouterConfig: the versioned contract between the operator (or local mode) and the router.

Produced only by :func:`llmroute.core.compile.compile_route`; consumed by :mod:`llmroute.router`. It is cluster-free
(no Kubernetes types) so the router can be run and tested on plain files, and it is versioned: a router that sees a
``version`` it does not know refuses the new config and keeps serving its last good one (as Envoy AI Gateway's
filterapi does during rolling upgrades).

It carries **references** to provider keys only (Secret name/key and the environment variable or file the router
pod receives the value through), never a key. Residency is already decided here: per model and data class the
router gets the ordered list of allowed backends, so a request can only ever go to one of those.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field

from llmroute.api.base import ApiModel

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

    def model_route(self, name: str) -> ModelRoute | None:
        return next((m for m in self.models if m.name == name), None)

    def provider(self, name: str) -> ProviderTarget | None:
        return next((p for p in self.providers if p.name == name), None)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) - what the ConfigMap holds and what the hash is taken of."""
        return json.dumps(self.wire(), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        """A short, stable hash of the config; the operator rolls the router only when it changes."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
