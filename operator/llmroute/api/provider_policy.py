"""ProviderPolicy: providers as facts, data classes as requirements.

A ProviderPolicy is **cluster-scoped**: residency is decided once for the cluster by the platform team that answers
for it, and application teams reference it by name from their namespaced LLMRoutes. Providers state facts (where the
endpoint is operated, what the provider does with inputs, which certifications it holds); data classes state what a
request of that class requires. :mod:`llmroute.core.residency` matches the two.

Facts that are not stated default to ``Unknown``, and ``Unknown`` is the worst case (DESIGN.md invariant 2).

Escalation: a data class may ``detect`` personal-data types (built-in ones, or the policy's own regex ``detectors``);
a request whose text holds one must meet that class's requirements too, whatever class it declares
(:mod:`llmroute.core.escalation`). Names are checked here, in Python and in CEL; that a pattern compiles, in Python
only (CEL's RE2 is not Python's ``re``).

Redaction: a provider may require types it must only ever receive as placeholders (``providers[].redaction``); the
router redacts them in every attempt to it, on top of the route's own ``spec.redaction``
(:mod:`llmroute.router.redaction`). :class:`RedactionMode` is shared with the LLMRoute.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field

from llmroute.api import pattern_cost
from llmroute.api.base import (
    OBJECT_DEFAULT,
    ApiModel,
    Condition,
    Duration,
    Name,
    ObjectMeta,
    Rule,
    RuleViolation,
    SecretKeyRef,
    StatusModel,
    UniqueBy,
)

JURISDICTION_PATTERN = r"^([A-Z]{2})$"

BUILTIN_PII_TYPES: tuple[str, ...] = ("email", "phone", "credit_card", "us_ssn", "iban", "ip_address", "api_key")
"""The detector's built-in types, as ``detect`` lists name them. The same tuple as ``llmroute.core.pii.TYPES`` (the
API cannot import the core; a unit test keeps the two equal)."""
DETECTOR_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
MAX_DETECTOR_PATTERN = 1024
_BUILTIN_CEL = "[" + ", ".join(f"'{t}'" for t in BUILTIN_PII_TYPES) + "]"


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


class ProxyCredentials(ApiModel):
    """Where the egress proxy's credentials live, sent as ``Proxy-Authorization: Basic``."""

    secret_ref: SecretKeyRef = Field(
        description="The Secret key holding the proxy's user:password. Routers read it from the Secret of that name "
        "in their route's namespace; the operator's health probes read it when namespace is set."
    )


class EgressProxy(ApiModel):
    """An HTTP proxy that calls to this provider go through (routers and the operator's health probes alike); it
    replaces HTTPS_PROXY/HTTP_PROXY for this provider."""

    url: str = Field(
        max_length=2048,
        pattern=r"^http://[^\s/@]+(:[0-9]{1,5})?/?$",
        description="The proxy, http://host:port. An https endpoint is reached through a CONNECT tunnel, with TLS to "
        "the provider itself inside it. No credentials in the URL: use credentials.",
    )
    credentials: ProxyCredentials | None = Field(default=None, description="Proxy user:password Secret, if any.")


class PoolRef(ApiModel):
    """A ModelPool (open weights on this cluster's GPUs) serving as a provider."""

    name: Name = Field(description="Name of the ModelPool.")
    namespace: Name = Field(description="Namespace of the ModelPool (ProviderPolicy is cluster-scoped).")


class RedactionMode(StrEnum):
    """What the router does with personal data of a type it finds in a request (:mod:`llmroute.router.redaction`).
    Where several rules name a type, the strictest wins: Block, then Redact, then Restore."""

    RESTORE = "Restore"
    """Each value is replaced by a placeholder such as ``<EMAIL_1>`` before sending; the answer gets the originals
    back (stream deltas, reasoning and tool-call arguments included)."""
    REDACT = "Redact"
    """Replaced by placeholders; the answer keeps them."""
    BLOCK = "Block"
    """The request is refused with 400 naming the types (never the values) before any upstream sees it."""


PiiTypeName = Annotated[str, Field(min_length=1, max_length=63, pattern=DETECTOR_NAME_PATTERN)]
"""A personal-data type: a built-in one (:data:`BUILTIN_PII_TYPES`) or a custom detector's name."""


class ProviderRedaction(ApiModel):
    """Personal data a provider must never receive in clear: every attempt to it has these types redacted at least,
    whatever the route and the data class say (a stricter mode of theirs still wins)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.mode != 'Block'",
            message="a provider's redaction mode is Restore or Redact (to keep a type away from a provider, make a "
            "data class detect it)",
            check=lambda r: r.mode is not RedactionMode.BLOCK,
            field="mode",
        ),
    )

    mode: RedactionMode = Field(description="Restore (placeholders upstream, originals back in the answer) or Redact "
                                "(placeholders upstream and in the answer).")
    types: Annotated[list[PiiTypeName], Field(max_length=40)] = Field(
        default_factory=list,
        description="Types to redact: built-in ones (" + ", ".join(BUILTIN_PII_TYPES) + ") or names from "
        "spec.detectors; empty means every type.",
    )


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
        Rule(
            cel="!has(self.proxy) || has(self.endpoint)",
            message="proxy applies to endpoints only (a pool is reached inside the cluster)",
            check=lambda p: p.proxy is None or p.endpoint is not None,
            field="proxy",
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
    proxy: EgressProxy | None = Field(
        default=None,
        description="Egress proxy for this provider (else the router's HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply).",
    )
    redaction: ProviderRedaction | None = Field(
        default=None,
        description="Types this provider must only ever receive as placeholders: every attempt to it redacts them, "
        "whatever the route's spec.redaction says (the stricter mode wins).",
    )

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


DetectorName = Annotated[str, Field(min_length=1, max_length=63, pattern=DETECTOR_NAME_PATTERN)]
"""A detector type: a built-in one (:data:`BUILTIN_PII_TYPES`) or a custom detector's name."""


class DataClass(ApiModel):
    """A sensitivity class a request can carry (header x-llmroute-data-class) and what it requires."""

    name: Name = Field(description="Class name, e.g. public, internal, pii, phi.")
    description: str | None = Field(default=None, max_length=1024, description="What data belongs to this class.")
    allow: DataClassAllow = Field(default_factory=DataClassAllow, json_schema_extra=OBJECT_DEFAULT,
                                  description="Requirements on providers; empty allows any provider.")
    detect: Annotated[list[DetectorName], Field(max_length=32)] = Field(
        default_factory=list,
        description="Escalation: a request whose text holds any of these types (built-in: "
        + ", ".join(BUILTIN_PII_TYPES) + "; or names from spec.detectors) must also meet this class's requirements, "
        "whatever class it declares. Routing, retries and failover use the combined rule; classes are only ever "
        "added, never removed.",
    )


def _compiles(pattern: str) -> str:
    """A custom detector's pattern must compile as a Python ``re``, must not match the empty string, and must have
    none of the shapes that backtrack without bound (:func:`llmroute.api.pattern_cost.check`)."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"pattern does not compile: {exc.msg} at position {exc.pos}") from None
    if compiled.fullmatch("") is not None:
        raise ValueError("pattern matches the empty string; it would report findings everywhere")
    slow = pattern_cost.check(pattern)
    if slow is not None:
        raise ValueError(f"the pattern {slow}; it runs on every request of the routes whose policy detects it, so "
                         "it must not backtrack without bound")
    return pattern


class CustomDetector(ApiModel):
    """A regex detector of the policy's own, e.g. employee or customer ids; its name is a type detect lists name."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"!(self.name in {_BUILTIN_CEL})",
            message="name must not be a built-in type (" + ", ".join(BUILTIN_PII_TYPES) + ")",
            check=lambda d: d.name not in BUILTIN_PII_TYPES,
            field="name",
        ),
    )

    name: DetectorName = Field(description="Type name findings carry, in detect lists, metrics and llmroute scan; "
                               "lowercase letters, digits and _.")
    pattern: Annotated[str, AfterValidator(_compiles)] = Field(
        min_length=1, max_length=MAX_DETECTOR_PATTERN,
        description="Python regular expression (re) matching one item. Keep it linear: it runs on every request of "
        "a route whose policy has detect lists.",
    )
    description: str | None = Field(default=None, max_length=1024, description="What the detector finds.")
    confidence: float = Field(default=0.9, ge=0.01, le=1,
                              description="Confidence findings of this detector carry, from 0.01 to 1.")


_DETECT_MESSAGE = ("detect must name built-in types (" + ", ".join(BUILTIN_PII_TYPES)
                   + ") or detectors of spec.detectors")


def _detect_names_known(spec: Any) -> bool:
    """True when every ``detect`` name is a built-in type or a custom detector; otherwise raises the rule's
    :class:`RuleViolation` itself, naming the class and the unknown name (the CEL message is its prefix)."""
    known = set(BUILTIN_PII_TYPES) | {d.name for d in spec.detectors}
    for i, data_class in enumerate(spec.data_classes):
        for j, name in enumerate(data_class.detect):
            if name not in known:
                custom = ", ".join(d.name for d in spec.detectors) or "none"
                raise RuleViolation(f"dataClasses[{i}].detect[{j}]",
                                    f'{_DETECT_MESSAGE}: unknown "{name}" (custom detectors: {custom})')
    return True


_REDACTION_TYPES_MESSAGE = ("providers[].redaction.types must name built-in types (" + ", ".join(BUILTIN_PII_TYPES)
                            + ") or detectors of spec.detectors")


def _redaction_types_known(spec: Any) -> bool:
    """True when every provider's ``redaction.types`` name is known; otherwise raises the rule's
    :class:`RuleViolation`, naming the provider and the unknown name (the CEL message is its prefix)."""
    known = set(BUILTIN_PII_TYPES) | {d.name for d in spec.detectors}
    for i, provider in enumerate(spec.providers):
        for j, name in enumerate(provider.redaction.types if provider.redaction is not None else ()):
            if name not in known:
                custom = ", ".join(d.name for d in spec.detectors) or "none"
                raise RuleViolation(f"providers[{i}].redaction.types[{j}]",
                                    f'{_REDACTION_TYPES_MESSAGE}: unknown "{name}" (custom detectors: {custom})')
    return True


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
        Rule(
            cel="self.dataClasses.all(c, !has(c.detect) || c.detect.all(t, t in " + _BUILTIN_CEL
            + " || (has(self.detectors) && self.detectors.exists(d, d.name == t))))",
            message=_DETECT_MESSAGE,
            check=_detect_names_known,
            field="dataClasses",
        ),
        Rule(
            cel="self.providers.all(p, !has(p.redaction) || !has(p.redaction.types) || p.redaction.types.all(t, t in "
            + _BUILTIN_CEL + " || (has(self.detectors) && self.detectors.exists(d, d.name == t))))",
            message=_REDACTION_TYPES_MESSAGE,
            check=_redaction_types_known,
            field="providers",
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
    detectors: Annotated[
        list[CustomDetector], Field(max_length=32), UniqueBy("name", message="detector names must be unique")
    ] = Field(default_factory=list, description="Custom regex detectors; their names are types dataClasses[].detect "
              "can list, beside the built-in ones.")

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
    active_operator: str | None = Field(
        default=None,
        description="The operator replica that holds the leader Lease and wrote this status (its pod name): the one "
        "that probes providers, reconciles routes and scales pools. Changes on a takeover.",
    )


class ProviderPolicy(ApiModel):
    """Cluster-scoped residency policy: which providers exist and which data classes may go where."""

    KIND: ClassVar[str] = "ProviderPolicy"

    api_version: Literal["llmroute.io/v1alpha1"] = Field(default="llmroute.io/v1alpha1", alias="apiVersion")
    kind: Literal["ProviderPolicy"] = "ProviderPolicy"
    metadata: ObjectMeta
    spec: ProviderPolicySpec
    status: ProviderPolicyStatus | None = None

