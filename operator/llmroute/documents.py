"""Reading Kubernetes-style YAML manifests into llmroute API objects, with errors that name file, document and field.

Used by ``llmroute validate``/``explain``, by local mode and by the router's ``--config`` (local mode). Accepts files
and folders (``*.yaml``/``*.yml``, sorted), multi-document YAML, ``ProviderPolicy``, ``LLMRoute``, ``ModelPool`` and
``v1/Secret`` documents. Other Kubernetes kinds are skipped (a folder may hold a Deployment too); an unknown kind in
the ``llmroute.io`` group is an error, since it is almost certainly a typo.

Files are read by :mod:`llmroute.manifest_yaml` (bounded, duplicate keys rejected). Every problem of every document
is reported, as ``kubectl apply`` with strict field validation does: unknown keys by name (the models forbid extra
keys; ``metadata`` is checked here against Kubernetes' ObjectMeta, since the operator reads server-filled metadata
through the same models; ``status`` against the CRD schema by :mod:`llmroute.manifest_schema`), missing, mistyped
and invalid fields, duplicate objects. Each problem is a :class:`llmroute.errors.LoadError` whose message is one
line naming the file, the document (and what it holds), the field and its line, e.g. ``route.yaml (document 1,
LLMRoute apps/deepseek): unknown field "spec.models[0].backendz" (line 16)``; :func:`load` raises them together as
:class:`llmroute.errors.InvalidManifests`.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from llmroute.api.base import GROUP, RuleViolation
from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.errors import FieldError, InvalidManifests, LoadError, UnknownField
from llmroute.manifest_schema import status_errors
from llmroute.manifest_yaml import describe, line_of, read_documents

T = TypeVar("T", LLMRoute, ProviderPolicy, ModelPool)

_KINDS: dict[str, type[LLMRoute] | type[ProviderPolicy] | type[ModelPool]] = {
    "LLMRoute": LLMRoute,
    "ProviderPolicy": ProviderPolicy,
    "ModelPool": ModelPool,
}
_CLUSTER_SCOPED = frozenset({"ProviderPolicy"})
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
"""Kubernetes ObjectMeta (meta/v1): any other key under ``metadata`` is an unknown field to the API server."""
_ECHO_MAX = 40
"""Longest invalid enum value repeated in a message (an enum is a short word; a long value is not echoed)."""
SECRET_FIELDS = frozenset({"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"})


@dataclass(frozen=True)
class Source:
    """Where an object came from: file, zero-based document index and, once known, what it is."""

    path: str
    index: int
    what: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.path} (document {self.index + 1})"

    def error(self, problem: FieldError) -> LoadError:
        return LoadError(self.path, self.index, problem, self.what, line_of(self.lines, problem.path))


@dataclass
class Bundle:
    """Everything loaded from a set of files, keyed the way the cluster keys it."""

    policies: dict[str, ProviderPolicy] = field(default_factory=dict)
    routes: dict[tuple[str, str], LLMRoute] = field(default_factory=dict)
    pools: dict[tuple[str, str], ModelPool] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    sources: dict[int, Source] = field(default_factory=dict)
    secret_sources: dict[tuple[str, str], Source] = field(default_factory=dict)

    def source_of(self, obj: object) -> Source | None:
        return self.sources.get(id(obj))

    def secret(self, namespace: str, name: str, key: str) -> str | None:
        """The value of ``key`` in Secret ``namespace/name`` from the files, or None when either is not there."""
        return self.secrets.get((namespace, name), {}).get(key)

    def route(self, name: str | None) -> LLMRoute:
        """The route called ``name`` (any namespace), or the only route if ``name`` is None."""
        matches = [r for (_, n), r in self.routes.items() if name is None or n == name]
        if len(matches) != 1:
            known = ", ".join(sorted(n for _, n in self.routes)) or "none"
            what = f'no LLMRoute "{name}"' if name and not matches else "more than one LLMRoute; pick one with --route"
            raise LoadError("input", None, FieldError("", f"{what} (found: {known})"))
        return matches[0]


def yaml_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files named by ``paths``; folders contribute their ``*.yaml``/``*.yml`` files (sorted, non-recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()))
        elif p.is_file():
            out.append(p)
        else:  # a device or FIFO is never read: /dev/zero or a pipe would not end
            problem = "not a regular file or folder" if p.exists() else "no such file or directory"
            raise LoadError(str(raw), None, FieldError("", problem))
    return out


def load(paths: Sequence[str | Path]) -> Bundle:
    """Load every document; raises :class:`InvalidManifests` with every problem (use :func:`load_all` to keep going)."""
    bundle, errors = load_all(paths)
    if errors:
        raise InvalidManifests(errors)
    return bundle


def load_all(paths: Sequence[str | Path]) -> tuple[Bundle, list[LoadError]]:
    """Load every document, collecting every error (in file and document order) rather than stopping at the first."""
    bundle = Bundle()
    errors: list[LoadError] = []
    for raw in paths:
        try:
            files = yaml_files([raw])
        except LoadError as exc:
            errors.append(exc)
            continue
        for path in files:
            errors.extend(_load_file(bundle, path))
    return bundle, errors


def _load_file(bundle: Bundle, path: Path) -> list[LoadError]:
    docs, errors = read_documents(path)
    for doc in docs:
        errors.extend(_add(bundle, Source(str(path), doc.index, lines=doc.lines), doc.value))
    return sorted(errors, key=lambda e: math.inf if e.index is None else e.index)


def _add(bundle: Bundle, source: Source, doc: Any) -> list[LoadError]:
    if not isinstance(doc, dict):
        return [
            source.error(FieldError("", f"a document must be a mapping (a Kubernetes object), not {_type_name(doc)}"))
        ]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if isinstance(kind, str) and kind:
        source = replace(source, what=_describe(kind, doc))
    if not (isinstance(api_version, str) and api_version and isinstance(kind, str) and kind):
        return [source.error(e) for e in _header_errors(api_version, kind)]
    if api_version == "v1" and kind == "Secret":
        return _add_secret(bundle, source, doc)
    if api_version.split("/")[0] != GROUP:
        return []
    model = _KINDS.get(kind)
    if model is None:
        return [
            source.error(FieldError("kind", f'unknown kind "{kind}" in {GROUP} (expected one of {", ".join(_KINDS)})'))
        ]
    problems = [source.error(e) for e in [*metadata_errors(doc), *status_errors(kind, doc)]]
    obj: LLMRoute | ProviderPolicy | ModelPool | None
    if model is ProviderPolicy:
        obj, invalid = validate_object(ProviderPolicy, doc, source)
    elif model is ModelPool:
        obj, invalid = validate_object(ModelPool, doc, source)
    else:
        obj, invalid = validate_object(LLMRoute, doc, source)
    if obj is None or problems:
        return problems + invalid
    return _register(bundle, obj, source)


def _header_errors(api_version: Any, kind: Any) -> list[FieldError]:
    out: list[FieldError] = []
    for name, value in (("apiVersion", api_version), ("kind", kind)):
        if value is None or value == "":
            out.append(FieldError(name, "required: every Kubernetes object names its apiVersion and kind"))
        elif not isinstance(value, str):
            out.append(FieldError(name, f"must be a string, not {_type_name(value)}"))
    return out


def _register(bundle: Bundle, obj: LLMRoute | ProviderPolicy | ModelPool, source: Source) -> list[LoadError]:
    if isinstance(obj, ProviderPolicy):
        return _put(bundle, bundle.policies, obj.metadata.name, obj, source)
    key = (obj.metadata.namespace or "default", obj.metadata.name)
    return _put(bundle, bundle.routes if isinstance(obj, LLMRoute) else bundle.pools, key, obj, source)


def _put(
    bundle: Bundle,
    into: dict[Any, Any],
    key: str | tuple[str, str],
    obj: LLMRoute | ProviderPolicy | ModelPool,
    source: Source,
) -> list[LoadError]:
    if key in into:
        first = bundle.sources.get(id(into[key]))
        return [
            source.error(
                FieldError(
                    "metadata.name", f"duplicate {obj.kind} {_key_text(key)}{f' (first in {first})' if first else ''}"
                )
            )
        ]
    into[key] = obj
    bundle.sources[id(obj)] = source
    return []


def _describe(kind: str, doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return kind
    return describe(kind, meta.get("name"), None if kind in _CLUSTER_SCOPED else meta.get("namespace"))


def _key_text(key: str | tuple[str, str]) -> str:
    return key if isinstance(key, str) else "/".join(key)


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(type(value), "a scalar")


def metadata_errors(doc: dict[str, Any]) -> list[FieldError]:
    """Keys under ``metadata`` that Kubernetes' ObjectMeta does not have (the models keep metadata open)."""
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return []
    return [UnknownField(f"metadata.{k}") for k in meta if k not in OBJECT_META_FIELDS]


def validate_object(model: type[T], doc: dict[str, Any], source: Source) -> tuple[T | None, list[LoadError]]:
    """The object, or None and one :class:`LoadError` per problem pydantic found."""
    if model is ProviderPolicy and isinstance(doc.get("metadata"), dict) and "namespace" in doc["metadata"]:
        # Cluster-scoped: the API server ignores metadata.namespace, and so do we.
        doc = {**doc, "metadata": {k: v for k, v in doc["metadata"].items() if k != "namespace"}}
    try:
        return model.model_validate(doc), []
    except ValidationError as exc:
        return None, [source.error(e) for e in field_errors(exc)]


def first_field_error(exc: ValidationError) -> FieldError:
    """The first pydantic error as a field path in wire (camelCase) form and a readable message."""
    errors = field_errors(exc)
    return errors[0]


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Every pydantic error as a :class:`FieldError` with a wire (camelCase) path."""
    return [_field_error(e) for e in exc.errors()]


def _field_error(err: Any) -> FieldError:
    loc: list[str | int] = list(err["loc"])
    ctx_error = err.get("ctx", {}).get("error")
    message = str(err["msg"])
    if isinstance(ctx_error, RuleViolation):
        message = ctx_error.message
        if ctx_error.field:
            loc.append(ctx_error.field)
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return UnknownField(format_path(loc))
    given = err.get("input")
    if err["type"] in ("enum", "literal_error") and isinstance(given, str) and len(given) <= _ECHO_MAX:
        message += f', got "{given}"'  # as kubectl's 'Unsupported value: "Maybe"'; short names only, never long text
    if isinstance(given, bool) and err["type"] in ("enum", "literal_error", "string_type"):
        message += " (a bare yes/no/true/false in YAML is a boolean: quote it or use the CamelCase value)"
    return FieldError(format_path(loc), message)


def format_path(loc: Iterable[str | int]) -> str:
    """``("spec", "providers", 0, "name")`` -> ``spec.providers[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith("function-"):
            out += f".{part}" if out else str(part)
    return out


def _add_secret(bundle: Bundle, source: Source, doc: dict[str, Any]) -> list[LoadError]:
    key, values, problems = parse_secret(doc)
    if key is not None and key in bundle.secrets:
        problems.append(
            FieldError("metadata.name", f"duplicate Secret {_key_text(key)} (first in {bundle.secret_sources[key]})")
        )
    if problems:
        return [source.error(e) for e in problems]
    assert key is not None
    bundle.secrets[key] = values
    bundle.secret_sources[key] = source
    return []


def parse_secret(doc: dict[str, Any]) -> tuple[tuple[str, str] | None, dict[str, str], list[FieldError]]:
    """A v1 Secret as ((namespace, name), {key: value}, problems); ``data`` is base64, ``stringData`` plain.

    Problems name keys, never values: a Secret's values are keys to providers.
    """
    problems: list[FieldError] = [UnknownField(k) for k in doc if k not in SECRET_FIELDS]
    problems += metadata_errors(doc)
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        problems.append(FieldError("metadata.name", "a Secret needs a name"))
    if namespace is not None and not isinstance(namespace, str):
        problems.append(FieldError("metadata.namespace", f"must be a string, not {_type_name(namespace)}"))
    values: dict[str, str] = {}
    for section in ("data", "stringData"):
        problems += _secret_values(section, doc.get(section), values)
    if problems or not isinstance(name, str):
        return None, {}, problems
    return (str(namespace or "default"), name), values, []


def _secret_values(section: str, raw: Any, into: dict[str, str]) -> list[FieldError]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [FieldError(section, f"must be a mapping of keys to values, not {_type_name(raw)}")]
    problems: list[FieldError] = []
    for k, v in raw.items():
        if not isinstance(v, str):
            problems.append(FieldError(f"{section}.{k}", f"must be a string, not {_type_name(v)}"))
        elif section == "stringData":
            into[str(k)] = v
        else:
            try:
                into[str(k)] = base64.b64decode(v, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                problems.append(FieldError(f"{section}.{k}", "not valid base64 of UTF-8 text"))
    return problems
