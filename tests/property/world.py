"""The random worlds the residency properties run in: ProviderPolicies, LLMRoutes, requests and fault sequences.

Everything is drawn as small frozen dataclasses with short, readable fields (provider ``p1``, class ``pii``,
fault ``503``), so a shrunk failure reads like a scenario, and is turned into manifests only through the public API
models (:class:`llmroute.api.provider_policy.ProviderPolicy`, :class:`llmroute.api.llm_route.LLMRoute`): every
world passes the same validation a user's YAML does, and compiles with the operator's
:func:`llmroute.core.compile.compile_route`.

Facts a provider does not state are left out of its manifest (not written as ``Unknown``), so the API's defaults
are under test too: the oracle (:mod:`tests.property.oracle`) reads a missing fact as the worst case.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy

EPOCH0 = 1_800_000_000.0
"""Wall-clock time (epoch seconds) at the start of every scenario: drills' ``until`` is relative to it."""
POLICY = "residency"
NAMESPACE = "llm"
GPU_NAMESPACE = "gpu"

JURISDICTIONS = ("US", "EU", "DE", "FR", "IE", "GB", "CN", "IN")
"""Where providers are operated. DE, FR and IE are EU member states; GB is not (the oracle knows which)."""
CLASS_JURISDICTIONS = ("US", "EU", "DE", "GB", "CN")
CERTIFICATIONS = ("soc2", "hipaa-baa", "iso27001")
CLASS_NAMES = ("public", "internal", "pii", "phi", "secret")
UNKNOWN_CLASS = "bogus"
MODEL_NAMES = ("chat", "reasoner")
CUSTOM_TYPE = "employee_id"
CUSTOM_PATTERN = r"\bEMP-[0-9]{6}\b"
PII_SAMPLES = {
    "email": "write to jane.roe@example.com",
    "us_ssn": "SSN 536-22-8726",
    CUSTOM_TYPE: "badge EMP-482913",
    "phone": "call me at +1 415 555 0134",
}
"""A text holding each type, as the detector finds it (``phone`` is detected but no class detects it here)."""
PII_VALUES = {
    "email": "jane.roe@example.com",
    "us_ssn": "536-22-8726",
    CUSTOM_TYPE: "EMP-482913",
    "phone": "+1 415 555 0134",
}
"""The value in each sample the detector finds: what a provider that redacts the type must never receive."""
assert all(PII_VALUES[t] in PII_SAMPLES[t] for t in PII_SAMPLES) and PII_VALUES.keys() == PII_SAMPLES.keys()
DETECTABLE = (*PII_SAMPLES,)
DETECT_TYPES = ("email", "us_ssn", CUSTOM_TYPE)
REDACT_TYPES = ("email", "us_ssn", "phone")
"""Built-in types a provider may require redacted (``providers[].redaction``)."""
REDACTION_MODES = ("Redact", "Restore")

FAULTS = (
    "ok",
    "500",
    "502",
    "503",
    "429",
    "429-long",
    "402",
    "400",
    "401",
    "403",
    "connect",
    "reset",
    "timeout",
    "cut",
    "slow",
)
"""What one attempt to a provider meets: a status, a transport failure, a deadline (``timeout`` holds the attempt
until its time-to-first-token or total budget ends), ``cut`` (a stream that breaks after its first event), ``slow``
(an answer just inside the time-to-first-token budget: a slow first token). ``429-long``: Retry-After beyond the
request's budget."""
DRILL_FAULTS = ("FullOutage", "HalfErrors", "SlowFirstToken", "PartialOutage", "Overloaded", "RateLimited")


@dataclass(frozen=True)
class ProviderFacts:
    """One provider as a ProviderPolicy states it; ``None`` terms are not stated at all."""

    name: str
    jurisdiction: str
    training: str | None
    retention: str | None
    certifications: tuple[str, ...]
    hosting: str  # "hosted" (endpoint + key), "self-hosted" (endpoint, no key), "pool" (a ModelPool)
    has_key: bool = True  # hosted only: the Secret holds its key
    redacts: tuple[str, ...] = ()  # types it must only ever receive as placeholders (providers[].redaction)
    redaction_mode: str = "Redact"  # "Redact" or "Restore" (what its answers get back); only with ``redacts``

    @property
    def pool_key(self) -> str:
        return f"{GPU_NAMESPACE}/pool-{self.name}"

    def doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "jurisdiction": self.jurisdiction}
        if self.hosting == "pool":
            out["pool"] = {"name": f"pool-{self.name}", "namespace": GPU_NAMESPACE}
        else:
            out["endpoint"] = f"https://{self.name}.example.invalid/v1"
        if self.hosting == "self-hosted":
            out["selfHosted"] = True
        if self.hosting == "hosted":
            out["credentials"] = {"secretRef": {"name": "keys", "key": self.name}}
        terms = {k: v for k, v in (("training", self.training), ("retention", self.retention)) if v is not None}
        if terms:
            out["dataUse"] = terms
        if self.certifications:
            out["certifications"] = list(self.certifications)
        if self.redacts:
            out["redaction"] = {"types": list(self.redacts), "mode": self.redaction_mode}
        return out


@dataclass(frozen=True)
class ClassRule:
    """One data class as a ProviderPolicy states it."""

    name: str
    jurisdictions: tuple[str, ...] = ()
    training: str | None = None
    retention: str | None = None
    certifications: tuple[str, ...] = ()
    self_hosted_only: bool = False
    self_hosted_exempt: bool = False
    detect: tuple[str, ...] = ()

    def doc(self) -> dict[str, Any]:
        allow: dict[str, Any] = {}
        if self.jurisdictions:
            allow["jurisdictions"] = list(self.jurisdictions)
        if self.training is not None:
            allow["training"] = self.training
        if self.retention is not None:
            allow["retention"] = self.retention
        if self.certifications:
            allow["requireCertifications"] = list(self.certifications)
        if self.self_hosted_only:
            allow["selfHostedOnly"] = True
        if self.self_hosted_exempt:
            allow["selfHostedExempt"] = True
        out: dict[str, Any] = {"name": self.name, "allow": allow}
        if self.detect:
            out["detect"] = list(self.detect)
        return out


@dataclass(frozen=True)
class BackendSpec:
    provider: str
    model: str
    priority: int
    weight: int


@dataclass(frozen=True)
class DrillSpec:
    provider: str
    fault: str
    ends_in_s: float  # after the scenario starts; negative: already over
    error_rate: int | None


@dataclass(frozen=True)
class Config:
    """One ProviderPolicy and one LLMRoute, with the keys the router has."""

    providers: tuple[ProviderFacts, ...]
    classes: tuple[ClassRule, ...]
    policy_default: str | None
    route_default: str | None
    models: tuple[tuple[str, tuple[BackendSpec, ...]], ...]
    max_attempts: int = 3
    ttft_s: float = 2.0
    total_s: float = 10.0
    backoff_ms: int = 50
    consecutive_failures: int = 3
    min_requests: int = 5
    open_s: float = 5.0
    recovery_steps: tuple[int, ...] = (50, 100)
    recovery_step_s: float = 2.0
    max_wait_s: float = 3.0
    max_held: int = 10
    drills: tuple[DrillSpec, ...] = ()

    def provider(self, name: str) -> ProviderFacts:
        return next(p for p in self.providers if p.name == name)

    def data_class(self, name: str) -> ClassRule | None:
        return next((c for c in self.classes if c.name == name), None)

    def backends(self, model: str) -> tuple[BackendSpec, ...]:
        return next(b for m, b in self.models if m == model)

    @property
    def default_class(self) -> str:
        found = self.route_default or self.policy_default
        assert found is not None
        return found

    def policy_doc(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "providers": [p.doc() for p in self.providers],
            "dataClasses": [c.doc() for c in self.classes],
        }
        if self.policy_default is not None:
            spec["defaultDataClass"] = self.policy_default
        if any(CUSTOM_TYPE in c.detect for c in self.classes):
            spec["detectors"] = [{"name": CUSTOM_TYPE, "pattern": CUSTOM_PATTERN}]
        return {
            "apiVersion": "llmroute.io/v1alpha1",
            "kind": "ProviderPolicy",
            "metadata": {"name": POLICY},
            "spec": spec,
        }

    def route_doc(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "policyRef": {"name": POLICY},
            "models": [
                {
                    "name": name,
                    "backends": [
                        {"provider": b.provider, "model": b.model, "priority": b.priority, "weight": b.weight}
                        for b in backends
                    ],
                }
                for name, backends in self.models
            ],
            "failover": {
                "maxAttempts": self.max_attempts,
                "connectTimeout": "1s",
                "timeToFirstToken": f"{self.ttft_s:g}s",
                "idleTimeout": "1s",
                "totalTimeout": f"{self.total_s:g}s",
                "backoff": f"{self.backoff_ms}ms",
            },
            "circuitBreaker": {
                "consecutiveFailures": self.consecutive_failures,
                "errorRatePercent": 50,
                "minRequests": self.min_requests,
                "window": "30s",
                "openDuration": f"{self.open_s:g}s",
                "recoverySteps": list(self.recovery_steps),
                "recoveryStepDuration": f"{self.recovery_step_s:g}s",
            },
            "coldStart": {"maxWait": f"{self.max_wait_s:g}s", "maxRequests": self.max_held},
        }
        if self.route_default is not None:
            spec["defaultDataClass"] = self.route_default
        if self.drills:
            spec["drills"] = [_drill_doc(d) for d in self.drills]
        return {
            "apiVersion": "llmroute.io/v1alpha1",
            "kind": "LLMRoute",
            "metadata": {"name": "chat", "namespace": NAMESPACE},
            "spec": spec,
        }

    def manifests(self) -> tuple[ProviderPolicy, LLMRoute]:
        """The two objects, validated by the API models exactly as ``llmroute validate`` does."""
        return ProviderPolicy.model_validate(self.policy_doc()), LLMRoute.model_validate(self.route_doc())

    def keys(self) -> dict[str, str | None]:
        """The key each provider's Secret holds (None: missing); self-hosted and pool providers need none."""
        return {p.name: secret_key(p.name) if p.has_key else None for p in self.providers}


def secret_key(provider: str) -> str:
    return f"sk-{provider}-property-key"


def _drill_doc(d: DrillSpec) -> dict[str, Any]:
    until = datetime.fromtimestamp(EPOCH0 + d.ends_in_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: dict[str, Any] = {"provider": d.provider, "fault": d.fault, "until": until}
    if d.error_rate is not None:
        out["errorRate"] = d.error_rate
    return out


@dataclass(frozen=True)
class Request:
    """One client request; ``declared`` None sends no class header. ``reload_after``: the config is swapped while
    this request is in flight, right after its n-th upstream send."""

    model: str
    declared: str | None
    pii: tuple[str, ...] = ()
    mode: str = "chat"  # "chat" (non-streaming), "stream", "embeddings"
    reload_after: int | None = None


def request_text(pii: Sequence[str]) -> str:
    """The text a request holding the types ``pii`` sends: a sample of each."""
    return " and ".join(("hello", *(PII_SAMPLES[t] for t in pii)))


@dataclass(frozen=True)
class Wait:
    """Time passes (circuits tick, probes run, pools start, drills end)."""

    seconds: float


@dataclass(frozen=True)
class Reload:
    """The next config replaces the current one between requests."""


Step = Request | Wait | Reload


@dataclass(frozen=True)
class Scenario:
    """Configs (the first is loaded at start; reloads cycle through the rest), what each provider does per attempt
    (its list, then ``then`` for ever), probe answers, when each pool gets a ready pod, and the steps."""

    configs: tuple[Config, ...]
    faults: dict[str, tuple[str, ...]]
    then: dict[str, str]
    probes_fail: frozenset[str]
    pool_ready_at: dict[str, float | None]
    steps: tuple[Step, ...]
    seed: int = 0
    concurrent: bool = False  # the requests between two Waits/Reloads run at once


# --- strategies -------------------------------------------------------------------------------------------------
# Each entity is one integer draw decoded into its fields (mixed radix): a hundred separate draws per scenario cost
# more than running it. Shrinking an integer moves its fields towards their first options, the simplest ones.
_CHUNK = 256


def _subsets(items: Sequence[str], most: int) -> tuple[tuple[str, ...], ...]:
    return tuple(c for k in range(most + 1) for c in itertools.combinations(items, k))


class _Product:
    """Choices for several fields, drawn as a few integers of at most :data:`_CHUNK` values each (hypothesis draws
    those about uniformly; much larger ranges lean heavily to small values)."""

    def __init__(self, **options: Sequence[Any]) -> None:
        self.options = options
        groups: list[list[str]] = [[]]
        size = 1
        for name, opts in options.items():
            if size * len(opts) > _CHUNK and groups[-1]:
                groups.append([])
                size = 1
            groups[-1].append(name)
            size *= len(opts)
        self.groups = groups
        self.strategy = st.tuples(*(st.integers(0, math.prod(len(options[n]) for n in g) - 1) for g in groups)).map(
            self.decode
        )

    def decode(self, numbers: tuple[int, ...]) -> dict[str, Any]:
        out = {}
        for group, n in zip(self.groups, numbers, strict=True):
            for name in group:
                n, i = divmod(n, len(self.options[name]))
                out[name] = self.options[name][i]
        return out


_REDACTS = ((),) * 6 + _subsets(REDACT_TYPES, 2)[1:]  # about half the providers redact one or two types
_PROVIDER = _Product(
    hosting=("hosted", "hosted", "hosted", "self-hosted", "pool"),
    jurisdiction=JURISDICTIONS,
    training=(None, "Used", "NotUsed", "NotUsed", "NotUsed", "Unknown"),
    retention=(None, "Zero", "Zero", "Bounded", "Bounded", "Unknown"),
    certifications=((), *_subsets(CERTIFICATIONS, 3)),
    has_key=(True,) * 9 + (False,),
    redacts=_REDACTS,
    redaction_mode=REDACTION_MODES,
)
_REDACTION = _Product(redacts=((),) * 2 + _REDACTS[6:], redaction_mode=REDACTION_MODES)  # an edit: mostly some
_CLASS = _Product(
    jurisdictions=((),) * 12 + _subsets(CLASS_JURISDICTIONS, 3)[1:],
    training=(None, None, None, "NotUsed", "NotUsed", "Used"),
    retention=(None,) * 6 + ("Zero", "Bounded", "Unknown"),
    certifications=((),) * 12 + _subsets(CERTIFICATIONS, 2)[1:],
    self_hosted_only=(False,) * 15 + (True,),
    self_hosted_exempt=(False, True),
    detect=((),) * 3 + _subsets(DETECT_TYPES, 2)[1:],
    anything=(False, False, False, True),  # a class with no requirements at all
)
_ROUTE = _Product(
    max_attempts=(1, 2, 3, 4, 6),
    ttft_s=(0.5, 2.0, 8.0),
    total_factor=(1, 3, 10),
    backoff_ms=(10, 100, 500),
    consecutive_failures=(1, 2, 3, 4),
    min_requests=(1, 3, 10),
    open_s=(1.0, 5.0, 20.0),
    recovery_steps=((100,), (50, 100), (10, 50, 100)),
    recovery_step_s=(1.0, 3.0),
    max_wait_s=(0.5, 3.0),
    max_held=(0, 1, 10),
)
_BACKEND = _Product(priority=(0, 1, 2), weight=(1, 1, 2, 5, 0))
_DRILL = _Product(fault=DRILL_FAULTS, ends_in_s=(-10.0, 5.0, 30.0, 600.0), error_rate=(None, 50, 100))
_REQUEST = _Product(
    model=range(4),  # an index into the scenario's model choices
    declared=range(10),  # an index into the scenario's class choices
    pii=_subsets(DETECTABLE, 2),
    mode=("chat", "chat", "stream", "embeddings"),
    reload_after=(None, 1, 1, 2),  # half reload right after the first send: its retries meet the new config
)
_STEP = st.integers(0, 9)  # 0-5: a request, 6-7: a wait, 8-9: a reload
_WAITS = (0.5, 2.0, 6.0, 25.0)
_PROVIDER_COUNT = st.sampled_from((2, 3, 4, 5, 1))  # shrinks to 2: one allowed, one forbidden
_MASK = {n: st.integers(1, 2**n - 1) for n in range(1, 6)}
_SUBSET = {n: st.integers(0, 2**n - 1) for n in range(6)}
_CLASS_MASK = st.integers(1, 2 ** len(CLASS_NAMES) - 1)
_MODEL_MASK = st.integers(1, 2 ** len(MODEL_NAMES) - 1)
_DEFAULTS = st.tuples(st.integers(0, 5), st.integers(0, 5))
_FAULTS = st.lists(st.sampled_from(FAULTS), max_size=4)
_THEN = st.sampled_from(("ok", "ok", "503", "connect", "timeout", "402"))
_POOL_READY = st.sampled_from((None, 0.0, 1.0, 10.0))
_SCRIPT = st.integers(0, 2**20)
_BOOL = st.booleans()
_NEW_CONFIG = st.booleans()  # another config: a new one, or the first one edited (False: what it shrinks to)


@st.composite
def _raw_step(draw: st.DrawFn) -> tuple[int, dict[str, Any] | None]:
    """One step as drawn (its kind, and a request's fields): one span, so the shrinker can drop a whole step."""
    kind = draw(_STEP)
    return kind, draw(_REQUEST.strategy) if kind < 6 else None


_STEPS = {n: st.lists(_raw_step(), min_size=1, max_size=n) for n in (4, 8, 12)}


def provider_names(count: int) -> tuple[str, ...]:
    return tuple(f"p{i}" for i in range(count))


def _masked(items: Sequence[str], mask: int) -> list[str]:
    return [x for i, x in enumerate(items) if mask >> i & 1]


def _config(draw: st.DrawFn, names: tuple[str, ...], pools: bool) -> Config:
    providers = []
    for name in names:
        f = draw(_PROVIDER.strategy)
        hosting = f["hosting"] if pools or f["hosting"] != "pool" else "self-hosted"
        providers.append(
            ProviderFacts(
                name,
                f["jurisdiction"],
                f["training"],
                f["retention"],
                f["certifications"],
                hosting,
                hosting != "hosted" or f["has_key"],
                f["redacts"],
                _mode(f),
            )
        )
    class_names = _masked(CLASS_NAMES, draw(_CLASS_MASK))
    classes = []
    for name in class_names:
        c = draw(_CLASS.strategy)
        classes.append(
            ClassRule(name)
            if c["anything"]
            else ClassRule(
                name,
                c["jurisdictions"],
                c["training"],
                c["retention"],
                c["certifications"],
                c["self_hosted_only"],
                c["self_hosted_exempt"],
                c["detect"],
            )
        )
    policy_pick, route_pick = draw(_DEFAULTS)
    policy_default = class_names[policy_pick] if policy_pick < len(class_names) else None
    route_default = class_names[route_pick] if route_pick < len(class_names) else None
    if policy_default is None and route_default is None:
        policy_default = class_names[0]
    models = []
    for model in _masked(MODEL_NAMES, draw(_MODEL_MASK)):
        chosen = _masked(names, draw(_MASK[len(names)]))[:4]
        models.append((model, tuple(BackendSpec(p, f"{model}-on-{p}", **draw(_BACKEND.strategy)) for p in chosen)))
    used = sorted({b.provider for _, bs in models for b in bs})
    drills = tuple(DrillSpec(p, **draw(_DRILL.strategy)) for p in _masked(used, draw(_SUBSET[len(used)]))[:2])
    r = draw(_ROUTE.strategy)
    return Config(
        providers=tuple(providers),
        classes=tuple(classes),
        policy_default=policy_default,
        route_default=route_default,
        models=tuple(models),
        max_attempts=r["max_attempts"],
        ttft_s=r["ttft_s"],
        total_s=r["ttft_s"] * r["total_factor"],
        backoff_ms=r["backoff_ms"],
        consecutive_failures=r["consecutive_failures"],
        min_requests=r["min_requests"],
        open_s=r["open_s"],
        recovery_steps=r["recovery_steps"],
        recovery_step_s=r["recovery_step_s"],
        max_wait_s=r["max_wait_s"],
        max_held=r["max_held"],
        drills=drills,
    )


@st.composite
def configs(draw: st.DrawFn, *, pools: bool = True) -> Config:
    """A valid policy and route over 1-5 providers."""
    return _config(draw, provider_names(draw(_PROVIDER_COUNT)), pools)


def _mode(r: dict[str, Any]) -> str:
    return str(r["redaction_mode"]) if r["redacts"] else REDACTION_MODES[0]


def _redacting(p: ProviderFacts, r: dict[str, Any]) -> ProviderFacts:
    return dataclasses.replace(p, redacts=r["redacts"], redaction_mode=_mode(r))


Edit = tuple[dict[str, Any], ...]
"""The first config with each provider's redaction drawn again: a policy edit (reloads to it keep routes alive)."""


@functools.cache
def _config_spans(
    names: tuple[str, ...], pools: bool
) -> tuple[st.SearchStrategy[Config], st.SearchStrategy[list[Config | Edit]]]:
    """The first config, and 0-2 others (each one span: the shrinker drops whole configs): an edit of the first (its
    providers' redaction drawn again: requests in flight keep their routes across the reload to it, and their
    retries meet the new redaction) or a config of its own."""

    @st.composite
    def first(draw: st.DrawFn) -> Config:
        return _config(draw, names, pools)

    @st.composite
    def other(draw: st.DrawFn) -> Config | Edit:
        if draw(_NEW_CONFIG):
            return _config(draw, names, pools)
        return tuple(draw(_REDACTION.strategy) for _ in names)

    return first(), st.lists(other(), max_size=2)


@st.composite
def scenarios(draw: st.DrawFn, *, reloads: bool = True, pools: bool = True, max_steps: int = 8) -> Scenario:
    """Configs over the same providers (the first, and up to two new ones or edits of its redaction), scripts, and
    1 to ``max_steps`` steps. Requests declare no class (the default applies), a class of the first config, one of
    another config, or one no policy has."""
    names = provider_names(draw(_PROVIDER_COUNT))
    first_config, other_configs = _config_spans(names, pools)
    first = draw(first_config)
    others = [
        c if isinstance(c, Config) else dataclasses.replace(first, providers=tuple(map(_redacting, first.providers, c)))
        for c in (draw(other_configs) if reloads else ())
    ]
    pool_keys = sorted({p.pool_key for c in (first, *others) for p in c.providers if p.hosting == "pool"})
    known = [c.name for c in first.classes]
    choices = (
        None,
        None,
        None,
        known[0],
        known[-1],
        known[len(known) // 2],
        known[0],
        known[-1],
        CLASS_NAMES[2],
        UNKNOWN_CLASS,
    )
    models = [m for m, _ in first.models]
    model_choices = (models[0], models[-1], models[0], MODEL_NAMES[1])
    steps: list[Step] = []
    for kind, r in draw(_STEPS[max_steps]):
        if kind >= 8 and reloads:
            steps.append(Reload())
        elif r is None:
            steps.append(Wait(_WAITS[kind % len(_WAITS)]))
        else:
            steps.append(
                Request(
                    model_choices[r["model"]],
                    choices[r["declared"]],
                    r["pii"],
                    r["mode"],
                    r["reload_after"] if reloads else None,
                )
            )
    return Scenario(
        configs=(first, *others),
        faults={n: tuple(draw(_FAULTS)) for n in names},
        then={n: draw(_THEN) for n in names},
        probes_fail=frozenset(_masked(names, draw(_SUBSET[len(names)]))),
        pool_ready_at={k: draw(_POOL_READY) for k in pool_keys},
        steps=tuple(steps),
        seed=draw(_SCRIPT),
        concurrent=draw(_SCRIPT) % 5 == 4,
    )
