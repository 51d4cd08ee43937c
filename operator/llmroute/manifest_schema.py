"""Unknown fields under ``status``, found against the generated CRD schema where the models are lenient on purpose.

The status models ignore keys they do not know (:class:`llmroute.api.base.StatusModel`): the operator reads status
back from the API server, and an older operator must not choke on a field a newer one wrote. A manifest file is
different: the API server's strict field validation rejects a ``status`` key its CRD schema lacks, so
``llmroute validate`` does too. The schema is the one ``llmroute crds`` writes (:func:`llmroute.api.crdgen.structural`),
so what is unknown here is exactly what the CRD would prune. Used by :mod:`llmroute.documents`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from llmroute.api.crdgen import KINDS, Schema, structural
from llmroute.errors import UnknownField


@cache
def _status_schema(kind: str) -> Schema | None:
    return next((structural(k.status) for k in KINDS if k.kind == kind), None)


def status_errors(kind: str, doc: dict[str, Any]) -> list[UnknownField]:
    """Every key under ``doc["status"]`` that the kind's CRD status schema does not have."""
    schema = _status_schema(kind)
    if schema is None or "status" not in doc:
        return []
    out: list[UnknownField] = []
    _unknown(doc["status"], schema, "status", out)
    return out


def _unknown(value: Any, schema: Schema, path: str, out: list[UnknownField]) -> None:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            child = f"{path}.{key}"
            if key in props:
                _unknown(item, props[key], child, out)
            elif isinstance(extra, dict):
                _unknown(item, extra, child, out)
            elif not extra and schema.get("type") == "object":
                out.append(UnknownField(child))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _unknown(item, schema["items"], f"{path}[{i}]", out)
