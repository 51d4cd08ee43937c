"""Reading Kubernetes-style YAML manifests into llmroute API objects, with errors that name file, document and field.

Used by ``llmroute validate``/``explain``, by local mode and by the router's ``--config`` (local mode). Accepts files
and folders (``*.yaml``/``*.yml``, sorted), multi-document YAML, ``ProviderPolicy``, ``LLMRoute``, ``ModelPool`` and
``v1/Secret`` documents. Other Kubernetes kinds are skipped (a folder may hold a Deployment too); an unknown kind in
the ``llmroute.io`` group is an error, since it is almost certainly a typo.

Every problem becomes a :class:`llmroute.errors.LoadError` whose message is one line, e.g.
``policy.yaml (document 1): spec.providers[0].dataUse.training: Input should be 'Used', 'NotUsed' or 'Unknown'``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from llmroute.api.base import GROUP, RuleViolation
from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.errors import FieldError, LoadError

T = TypeVar("T", LLMRoute, ProviderPolicy, ModelPool)

_KINDS: dict[str, type[LLMRoute] | type[ProviderPolicy] | type[ModelPool]] = {
    "LLMRoute": LLMRoute, "ProviderPolicy": ProviderPolicy, "ModelPool": ModelPool,
}


@dataclass(frozen=True)
class Source:
    """Where an object came from: file and zero-based document index."""

    path: str
    index: int

    def __str__(self) -> str:
        return f"{self.path} (document {self.index + 1})"


@dataclass
class Bundle:
    """Everything loaded from a set of files, keyed the way the cluster keys it."""

    policies: dict[str, ProviderPolicy] = field(default_factory=dict)
    routes: dict[tuple[str, str], LLMRoute] = field(default_factory=dict)
    pools: dict[tuple[str, str], ModelPool] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    sources: dict[int, Source] = field(default_factory=dict)

    def source_of(self, obj: object) -> Source | None:
        return self.sources.get(id(obj))

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
        else:
            raise LoadError(str(raw), None, FieldError("", "no such file or directory"))
    return out


def load(paths: Sequence[str | Path]) -> Bundle:
    """Load every document; raises the first :class:`LoadError` (use :func:`load_all` to collect all)."""
    bundle, errors = load_all(paths)
    if errors:
        raise errors[0]
    return bundle


def load_all(paths: Sequence[str | Path]) -> tuple[Bundle, list[LoadError]]:
    """Load every document, collecting every error rather than stopping at the first."""
    bundle = Bundle()
    errors: list[LoadError] = []
    for path in yaml_files(paths):
        for source, doc in _documents(path, errors):
            try:
                _add(bundle, source, doc)
            except LoadError as exc:
                errors.append(exc)
    return bundle, errors


def _documents(path: Path, errors: list[LoadError]) -> Iterator[tuple[Source, dict[str, Any]]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        errors.append(LoadError(str(path), None, FieldError("", f"invalid YAML: {where}{problem}")))
        return
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(LoadError(str(path), None, FieldError("", f"cannot read: {exc}")))
        return
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        source = Source(str(path), index)
        if not isinstance(doc, dict):
            errors.append(LoadError(source.path, index, FieldError("", "a document must be a mapping (an object)")))
            continue
        yield source, doc


def _add(bundle: Bundle, source: Source, doc: dict[str, Any]) -> None:
    api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    if api_version == "v1" and kind == "Secret":
        key, data = parse_secret(doc, source)
        bundle.secrets[key] = data
        return
    if api_version.split("/")[0] != GROUP:
        return
    model = _KINDS.get(kind)
    if model is None:
        raise LoadError(source.path, source.index,
                        FieldError("kind", f'unknown kind "{kind}" in {GROUP} (expected one of {", ".join(_KINDS)})'))
    obj: LLMRoute | ProviderPolicy | ModelPool
    if model is ProviderPolicy:
        obj = parse_object(ProviderPolicy, doc, source)
        _unique(bundle.policies, obj.metadata.name, obj, source, "ProviderPolicy")
    elif model is ModelPool:
        obj = parse_object(ModelPool, doc, source)
        _unique(bundle.pools, (obj.metadata.namespace or "default", obj.metadata.name), obj, source, "ModelPool")
    else:
        obj = parse_object(LLMRoute, doc, source)
        key = (obj.metadata.namespace or "default", obj.metadata.name)
        _unique(bundle.routes, key, obj, source, "LLMRoute")
    bundle.sources[id(obj)] = source


def _unique(into: dict[Any, Any], key: Any, obj: Any, source: Source, kind: str) -> None:
    if key in into:
        raise LoadError(source.path, source.index, FieldError("metadata.name", f"duplicate {kind} {key!r}"))
    into[key] = obj


def parse_object(model: type[T], doc: dict[str, Any], source: Source) -> T:
    """Validate one document; the first problem becomes a :class:`LoadError` naming its field path."""
    if model is ProviderPolicy and isinstance(doc.get("metadata"), dict) and "namespace" in doc["metadata"]:
        # Cluster-scoped: the API server ignores metadata.namespace, and so do we.
        doc = {**doc, "metadata": {k: v for k, v in doc["metadata"].items() if k != "namespace"}}
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise LoadError(source.path, source.index, first_field_error(exc)) from None


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
        message = "unknown field"
    if isinstance(err.get("input"), bool) and err["type"] in ("enum", "literal_error", "string_type"):
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


def parse_secret(doc: dict[str, Any], source: Source) -> tuple[tuple[str, str], dict[str, str]]:
    """A v1 Secret as ((namespace, name), {key: value}); ``data`` is base64, ``stringData`` plain."""
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict) or not meta.get("name"):
        raise LoadError(source.path, source.index, FieldError("metadata.name", "a Secret needs a name"))
    values: dict[str, str] = {}
    for k, v in (doc.get("data") or {}).items():
        try:
            values[str(k)] = base64.b64decode(str(v), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise LoadError(source.path, source.index, FieldError(f"data.{k}", "not valid base64")) from None
    values.update({str(k): str(v) for k, v in (doc.get("stringData") or {}).items()})
    return (str(meta.get("namespace") or "default"), str(meta["name"])), values
