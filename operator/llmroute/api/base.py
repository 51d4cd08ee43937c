"""Building blocks shared by every llmroute API kind.

Owns the conventions that make the pydantic models the single source of truth for the API:

* :class:`ApiModel` - frozen, ``extra="forbid"``, camelCase on the wire (``populate_by_name`` so Python
  code may use snake_case).
* :class:`Rule` and :class:`UniqueBy` - cross-field rules written once, enforced twice: as Python validators
  (``llmroute validate``, the operator, local mode) and as CEL ``x-kubernetes-validations`` in the generated CRDs
  (the API server). Both report the same message, so users see one wording wherever they hit it.
* Kubernetes-shaped helpers: durations (``3s``, ``10m``), RFC 3339 timestamps, names, Secret references,
  conditions, object metadata.

Imported by :mod:`llmroute.api.provider_policy`, :mod:`llmroute.api.llm_route` and :mod:`llmroute.api.crdgen`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

GROUP = "llmroute.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

_DURATION_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PATTERN = _DURATION_RE.pattern


class RuleViolation(ValueError):
    """A cross-field rule failed; ``field`` is the path (relative to the object) the message is about."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Rule:
    """One cross-field rule: CEL for the API server, ``check`` for Python, one message for both.

    ``field`` (camelCase, relative to the object) becomes the CEL ``fieldPath`` and the Python error location.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    field: str | None = None

    def schema(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field:
            out["fieldPath"] = f".{self.field}"
        return out


def parse_duration(value: str) -> float:
    """Seconds in a Kubernetes/Go-style duration such as ``3s``, ``1m30s`` or ``250ms``."""
    if not _DURATION_RE.match(value):
        raise ValueError(f'"{value}" is not a duration; use a number and a unit (ms, s, m, h), e.g. "3s" or "10m"')
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(value))


def _checked_by(parse: Callable[[str], float]) -> AfterValidator:
    """A validator that keeps the string as written once ``parse`` accepts it (its ValueError is the message)."""

    def check(value: str) -> str:
        parse(value)
        return value

    return AfterValidator(check)


Duration = Annotated[
    str,
    _checked_by(parse_duration),
    Field(json_schema_extra={"pattern": DURATION_PATTERN}),
]
"""A duration string (``3s``, ``10m``, ``1h30m``); CEL's ``duration()`` accepts the same syntax."""

TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)


def parse_timestamp(value: str) -> float:
    """Epoch seconds of an RFC 3339 time with an explicit offset, e.g. ``2026-03-01T15:00:00Z``."""
    problem = f'"{value}" is not an RFC 3339 time with an offset, e.g. "2026-03-01T15:00:00Z"'
    if not _TIMESTAMP_RE.match(value):
        raise ValueError(problem)
    whole, _, rest = value.partition(".")
    if rest:  # Python reads at most 6 fraction digits; RFC 3339 allows more (Kubernetes writes up to 9)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{whole}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ValueError(problem) from None


Timestamp = Annotated[
    str,
    _checked_by(parse_timestamp),
    Field(max_length=64, json_schema_extra={"format": "date-time", "pattern": TIMESTAMP_PATTERN}),
]
"""An RFC 3339 time with an explicit offset (``2026-03-01T15:00:00Z``, ``2026-03-01T23:00:00+08:00``); the
pattern makes the API server accept exactly what Python accepts (``format: date-time`` alone also takes times
without an offset, which would be read in whatever zone the reader happens to be in)."""

OBJECT_DEFAULT: JsonDict = {"default": {}}
"""``json_schema_extra`` for a sub-object with ``default_factory``: the CRD then defaults it to ``{}`` and the API
server fills in its fields' defaults, so ``kubectl get -o yaml`` shows the values in force."""

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
"""A DNS-1123 label: lowercase letters, digits and '-', at most 63 characters."""


class ListRule:
    """A rule on a whole list, used as ``Annotated[list[T], SomeListRule(...)]``.

    Emits a CEL rule on the array (the API server enforces it) and runs the same check in Python.
    Subclasses define :meth:`cel` and :meth:`violation` (``None`` when the list is fine).
    """

    def __init__(self, message: str) -> None:
        self.message = message

    def cel(self) -> str:
        raise NotImplementedError

    def violation(self, items: Sequence[Any]) -> str | None:
        raise NotImplementedError

    def _check(self, items: Sequence[Any]) -> Sequence[Any]:
        problem = self.violation(items)
        if problem is not None:
            raise RuleViolation(None, problem)
        return items

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out.setdefault("x-kubernetes-validations", []).append({"rule": self.cel(), "message": self.message})
        return out


class UniqueBy(ListRule):
    """Items must differ in the given (camelCase) keys, e.g. ``UniqueBy("name", message=...)``."""

    def __init__(self, *keys: str, message: str) -> None:
        super().__init__(message)
        self.keys = keys

    def cel(self) -> str:
        same = " && ".join(f"y.{k} == x.{k}" for k in self.keys)
        return f"self.all(x, self.exists_one(y, {same}))"

    def violation(self, items: Sequence[Any]) -> str | None:
        seen: set[tuple[Any, ...]] = set()
        for item in items:
            key = tuple(getattr(item, _snake(k)) for k in self.keys)
            if key in seen:
                return f'{self.message} (duplicate: "{"/".join(str(k) for k in key)}")'
            seen.add(key)
        return None


class NonEmpty(ListRule):
    """The list needs at least one item (a CEL rule rather than minItems, for a message that says why)."""

    def cel(self) -> str:
        return "size(self) > 0"

    def violation(self, items: Sequence[Any]) -> str | None:
        return None if items else self.message


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


class ApiModel(BaseModel):
    """Base of every spec/status model: frozen, unknown keys rejected, camelCase aliases on the wire."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
        validate_default=False,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in type(self).rules:
            if not rule.check(self):
                raise RuleViolation(rule.field, rule.message)
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        if cls.rules:
            target = handler.resolve_ref_schema(out)
            target["x-kubernetes-validations"] = [r.schema() for r in cls.rules]
        return out

    def wire(self) -> dict[str, Any]:
        """The object as it appears on the wire: camelCase keys, unset optionals omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Status is written by the operator and read back from the server: tolerate fields we did not write."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """The standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="Condition type, e.g. Accepted, Ready, Degraded.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word saying why the condition is in this state.", max_length=1024)
    message: str = Field(default="", description="Human-readable details.", max_length=32768)
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the condition was computed from."
    )


class SecretKeyRef(ApiModel):
    """A key inside a Kubernetes Secret. Only the reference is ever stored; the value never leaves the Secret."""

    name: str = Field(description="Name of the Secret.", min_length=1, max_length=253)
    key: str = Field(description="Key within the Secret whose value is the provider API key.", min_length=1,
                     max_length=253)
    namespace: str | None = Field(
        default=None,
        max_length=63,
        description=(
            "Namespace of the Secret. ProviderPolicy is cluster-scoped, so a shared key names its namespace here and "
            "the operator copies it next to each router that needs it. When omitted, each LLMRoute's own namespace "
            "must hold the Secret (every team brings its own key)."
        ),
    )


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata llmroute reads; everything else is kept as it came."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True, alias_generator=to_camel)

    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
