"""ProviderPolicy: providers as facts, data classes as requirements.

A ProviderPolicy is **cluster-scoped**: residency is decided once for the cluster by the platform team that answers
for it, and application teams reference it by name from their namespaced LLMRoutes. Providers state facts (where the
endpoint is operated, what the provider does with inputs, which certifications it holds); data classes state what a
request of that class requires. :mod:`llmroute.core.residency` matches the two.

Facts that are not stated default to ``Unknown``, and ``Unknown`` is the worst case (DESIGN.md invariant 2).
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
    ObjectMeta,
    Rule,
    SecretKeyRef,
    StatusModel,
    UniqueBy,
)

JURISDICTION_PATTERN = r"^([A-Z]{2})$"


class ApiFlavor(StrEnum):
    """The wire protocol spoken by a provider endpoint."""

    OPENAI = "openai"


class Training(StrEnum):
    """Whether the provider may train on API inputs. ``Unknown`` is treated as ``Used``."""

    USED = "Used"
    NOT_USED = "NotUsed"
    UNKNOWN = "Unknown"


class Retention(StrEnum):
    """How long the provider keeps inputs. ``Unknown`` is treated as unbounded retention."""

    ZERO = "Zero"
    BOUNDED = "Bounded"
    UNKNOWN = "Unknown"


Jurisdiction = Annotated[
    str,
    Field(
        pattern=JURISDICTION_PATTERN,
        description="ISO 3166-1 alpha-2 country code (US, CN, DE, ...) or EU for the European Union.",
    ),
]


class DataUse(ApiModel):
    """What the provider's terms say it does with API inputs. Anything not stated is Unknown: the worst case."""

    training: Training = Field(
        default=Training.UNKNOWN,
        description="Used, NotUsed or Unknown. Unknown (terms are silent) is treated as Used.",
    )
    retention: Retention = Field(
        default=Retention.UNKNOWN,
        description="Zero (zero data retention), Bounded (deleted on a stated schedule) or Unknown (treated as kept "
        "indefinitely).",
    )


class HealthCheck(ApiModel):
    """The unbilled probe used to decide whether a provider is up. Never a paid completion."""

    path: str = Field(default="/models", max_length=1024, pattern=r"^/",
                      description="Path below the endpoint probed with GET and the provider key.")
    interval: Duration = Field(default="15s", description="Time between probes.")
    timeout: Duration = Field(default="5s", description="A probe that takes longer than this has failed.")
    failure_threshold: int = Field(default=3, ge=1, le=100,
                                   description="Consecutive failed probes before the provider is reported down.")
    success_threshold: int = Field(default=2, ge=1, le=100,
                                   description="Consecutive good probes before a down provider is reported up again.")


class Credentials(ApiModel):
    """Where the provider API key lives. The router sends it as ``Authorization: Bearer <key>``."""

    secret_ref: SecretKeyRef = Field(description="The Secret key holding the provider API key.")


class PoolRef(ApiModel):
    """A ModelPool (open weights on this cluster's GPUs) serving as a provider."""

    name: Name = Field(description="Name of the ModelPool.")
    namespace: Name = Field(description="Namespace of the ModelPool (ProviderPolicy is cluster-scoped).")


class Provider(ApiModel):
    """One upstream that serves models: a vendor API, a US host of open weights, or an in-cluster vLLM pool."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.endpoint) != has(self.pool)",
            message="set exactly one of endpoint and pool",
            check=lambda p: (p.endpoint is None) != (p.pool is None),
            field="endpoint",
        ),
        Rule(
            cel="self.selfHosted || has(self.pool) || has(self.credentials)",
            message="credentials are required unless selfHosted is true or the provider is a pool",
            check=lambda p: p.is_self_hosted or p.credentials is not None,
            field="credentials",
        ),
    )

    name: Name = Field(description="Name the LLMRoute backends refer to, e.g. deepseek or together.")
    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Base URL of the OpenAI-compatible API, e.g. https://api.deepseek.com/v1. The router appends "
        "/chat/completions, /completions, /embeddings and /models. Exactly one of endpoint and pool.",
    )
    pool: PoolRef | None = Field(
        default=None,
        description="A ModelPool of this cluster serving the provider (exactly one of endpoint and pool). Self-hosted "
        "by definition; routes reach it through the pool's Service and pick its pods by load.",
    )
    api: ApiFlavor = Field(default=ApiFlavor.OPENAI, description="Wire protocol of the endpoint.")
    jurisdiction: Jurisdiction = Field(
        description="Where the endpoint is operated and under whose law the data falls (ISO country code or EU)."
    )
    region: str | None = Field(default=None, max_length=63, description="Provider region, e.g. us-east-1.")
    self_hosted: bool = Field(default=False, description="Served inside this cluster (implied by pool).")
    data_use: DataUse = Field(default_factory=DataUse, json_schema_extra=OBJECT_DEFAULT,
                              description="What the provider does with inputs.")
    certifications: Annotated[list[Annotated[str, Field(max_length=63)]], Field(max_length=32)] = Field(
        default_factory=list, description="Certifications and contracts in force, e.g. hipaa-baa, soc2, iso27001."
    )
    credentials: Credentials | None = Field(default=None,
                                            description="API key Secret; optional only for self-hosted providers.")
    health_check: HealthCheck = Field(default_factory=HealthCheck, json_schema_extra=OBJECT_DEFAULT,
                                      description="The unbilled health probe.")

    @property
    def is_self_hosted(self) -> bool:
        """Self-hosted as residency sees it: declared, or a ModelPool of this cluster."""
        return self.self_hosted or self.pool is not None


class DataClassAllow(ApiModel):
    """Requirements a provider must meet to receive requests of a data class. Empty means any provider."""

    jurisdictions: Annotated[list[Jurisdiction], Field(max_length=64)] = Field(
        default_factory=list, description="Allowed jurisdictions; empty allows any."
    )
    training: Training | None = Field(
        default=None,
        description="NotUsed requires providers whose terms state that inputs are not used for training (Unknown is "
        "denied). Used or unset allows any.",
    )
    retention: Retention | None = Field(
        default=None,
        description="Zero requires zero retention; Bounded allows Zero or Bounded (Unknown is denied); unset allows "
        "any.",
    )
    require_certifications: Annotated[list[Annotated[str, Field(max_length=63)]], Field(max_length=32)] = Field(
        default_factory=list, description="Every listed certification must be held by the provider."
    )
    self_hosted_only: bool = Field(default=False, description="Only providers with selfHosted: true.")
    self_hosted_exempt: bool = Field(
        default=False,
        description="Self-hosted providers meet requireCertifications without listing them: no third party sees the "
        "data (e.g. phi may go to a host with a HIPAA BAA or to the in-cluster vLLM pool).",
    )


class DataClass(ApiModel):
    """A sensitivity class a request can carry (header x-llmroute-data-class) and what it requires."""

    name: Name = Field(description="Class name, e.g. public, internal, pii, phi.")
    description: str | None = Field(default=None, max_length=1024, description="What data belongs to this class.")
    allow: DataClassAllow = Field(default_factory=DataClassAllow, json_schema_extra=OBJECT_DEFAULT,
                                  description="Requirements on providers; empty allows any provider.")


class ProviderPolicySpec(ApiModel):
    """The providers a cluster may use and the data classes that decide which provider may see what."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.defaultDataClass) || self.dataClasses.exists(c, c.name == self.defaultDataClass)",
            message="defaultDataClass must name one of spec.dataClasses",
            check=lambda s: s.default_data_class is None
            or any(c.name == s.default_data_class for c in s.data_classes),
            field="defaultDataClass",
        ),
    )

    providers: Annotated[
        list[Provider], Field(min_length=1, max_length=64), UniqueBy("name", message="provider names must be unique")
    ] = Field(description="Providers as facts.")
    data_classes: Annotated[
        list[DataClass], Field(min_length=1, max_length=32), UniqueBy("name", message="data class names must be unique")
    ] = Field(description="Data classes as requirements.")
    default_data_class: Name | None = Field(
        default=None,
        description="Class for requests that name none, when the LLMRoute sets no defaultDataClass of its own.",
    )

    def provider(self, name: str) -> Provider | None:
        return next((p for p in self.providers if p.name == name), None)

    def data_class(self, name: str) -> DataClass | None:
        return next((c for c in self.data_classes if c.name == name), None)


class ProviderState(StrEnum):
    UNKNOWN = "Unknown"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    DOWN = "Down"
    MISCONFIGURED = "Misconfigured"
    COLD = "Cold"
    """A ModelPool provider with no ready replica (at zero, or starting): routers skip it while another allowed backend
    is available and otherwise hold requests for it. Not an outage."""


class ProviderHealth(StatusModel):
    """Health of one provider as seen by the operator's shared prober."""

    name: str = Field(description="Provider name.")
    state: ProviderState = Field(default=ProviderState.UNKNOWN,
                                 description="Unknown, Healthy, Degraded, Down, Misconfigured (401/403/404) or Cold (a "
                                 "ModelPool with no ready replica).")
    reason: str | None = Field(default=None, description="Why the provider is in this state.")
    last_success_time: str | None = Field(default=None, description="Last good probe (RFC 3339).")
    last_failure_time: str | None = Field(default=None, description="Last failed probe (RFC 3339).")
    latency_ms: int | None = Field(default=None, ge=0, description="Latency of the last probe in milliseconds.")
    consecutive_failures: int = Field(default=0, ge=0, description="Failed probes in a row.")
    consecutive_successes: int = Field(default=0, ge=0, description="Good probes in a row.")


class ProviderPolicyStatus(StatusModel):
    """Observed state of a ProviderPolicy, written by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation the status was computed from.")
    conditions: list[Condition] = Field(default_factory=list, description="Accepted and Ready conditions.")
    providers: list[ProviderHealth] = Field(default_factory=list, description="Health of each provider.")
    summary: str | None = Field(default=None, description='Short health summary, e.g. "3/4 healthy".')


class ProviderPolicy(ApiModel):
    """Cluster-scoped residency policy: which providers exist and which data classes may go where."""

    KIND: ClassVar[str] = "ProviderPolicy"

    api_version: Literal["llmroute.io/v1alpha1"] = Field(default="llmroute.io/v1alpha1", alias="apiVersion")
    kind: Literal["ProviderPolicy"] = "ProviderPolicy"
    metadata: ObjectMeta
    spec: ProviderPolicySpec
    status: ProviderPolicyStatus | None = None

