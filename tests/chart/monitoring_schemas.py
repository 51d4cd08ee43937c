"""Minimal JSON schemas for the Prometheus Operator custom resources the chart renders (monitoring.coreos.com/v1
ServiceMonitor, PodMonitor, PrometheusRule), written from the fields of their CRDs (prometheus-operator
``example/prometheus-operator-crd/monitoring.coreos.com_*.yaml``, v0.8x).

kubernetes-validate has no schemas for custom resources, and the CRDs' own schemas accept unknown fields (the API
server prunes them silently), so these schemas are stricter than the CRDs: every object the chart writes has
``additionalProperties: false``, so a misspelt field fails here instead of being dropped in the cluster. Types,
enums, required fields and the duration pattern follow the CRDs.
"""

from __future__ import annotations

from typing import Any

DURATION = {"type": "string",
            "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
STRINGS = {"type": "array", "items": {"type": "string"}}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": required or []}


LABEL_SELECTOR = _obj({
    "matchLabels": STRING_MAP,
    "matchExpressions": {"type": "array", "items": _obj({
        "key": {"type": "string"}, "operator": {"type": "string"}, "values": STRINGS}, ["key", "operator"])},
})
NAMESPACE_SELECTOR = _obj({"any": {"type": "boolean"}, "matchNames": STRINGS})
RELABEL = _obj({
    "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}},
    "separator": {"type": "string"}, "targetLabel": {"type": "string"}, "regex": {"type": "string"},
    "modulus": {"type": "integer"}, "replacement": {"type": "string"},
    "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod", "labelmap",
                        "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep", "lowercase", "Lowercase",
                        "uppercase", "Uppercase", "keepequal", "KeepEqual", "dropequal", "DropEqual"]},
})
_ENDPOINT_COMMON = {
    "path": {"type": "string"}, "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
    "interval": DURATION, "scrapeTimeout": DURATION, "honorLabels": {"type": "boolean"},
    "honorTimestamps": {"type": "boolean"}, "params": {"type": "object"},
    "relabelings": {"type": "array", "items": RELABEL},
    "metricRelabelings": {"type": "array", "items": RELABEL},
    "followRedirects": {"type": "boolean"}, "enableHttp2": {"type": "boolean"},
}
METADATA = {"type": "object", "required": ["name", "namespace"],
            "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                                    "maxLength": 253},
                           "namespace": {"type": "string"}, "labels": STRING_MAP, "annotations": STRING_MAP}}


def _resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _obj({"apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                 "metadata": METADATA, "spec": spec}, ["apiVersion", "kind", "metadata", "spec"])


SERVICE_MONITOR = _resource("ServiceMonitor", _obj({
    "selector": LABEL_SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR, "jobLabel": {"type": "string"},
    "targetLabels": STRINGS, "podTargetLabels": STRINGS, "sampleLimit": {"type": "integer"},
    "endpoints": {"type": "array", "items": _obj({
        **_ENDPOINT_COMMON, "port": {"type": "string"},
        "targetPort": {"type": ["string", "integer"]}})},
}, ["selector"]))

POD_MONITOR = _resource("PodMonitor", _obj({
    "selector": LABEL_SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR, "jobLabel": {"type": "string"},
    "podTargetLabels": STRINGS, "sampleLimit": {"type": "integer"},
    "podMetricsEndpoints": {"type": "array", "items": _obj({
        **_ENDPOINT_COMMON, "port": {"type": "string"}, "portNumber": {"type": "integer"},
        "targetPort": {"type": ["string", "integer"]}})},
}, ["selector"]))

_RULE = _obj({
    "alert": {"type": "string"}, "record": {"type": "string"}, "expr": {"type": ["string", "integer"]},
    "for": DURATION, "keep_firing_for": DURATION, "labels": STRING_MAP, "annotations": STRING_MAP,
}, ["expr"])
PROMETHEUS_RULE = _resource("PrometheusRule", _obj({
    "groups": {"type": "array", "items": _obj({
        "name": {"type": "string", "minLength": 1}, "interval": DURATION, "limit": {"type": "integer"},
        "query_offset": DURATION, "labels": STRING_MAP, "rules": {"type": "array", "items": _RULE}},
        ["name"])},
}))

SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR, "PodMonitor": POD_MONITOR, "PrometheusRule": PROMETHEUS_RULE}
