"""crds/ is generated from the API models, is structural and valid, and its CEL rules agree with Python.

CEL rules run in cel-python the way the API server runs them: schema defaults are applied first, then every
rule is evaluated with ``self`` bound to the value at its schema node. Fixtures live in fixtures/cel/{valid,
invalid}; an invalid fixture names the message it must produce on its first line (``# expect: ...``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from celpy.adapter import json_to_cel
from pydantic import ValidationError

from llmroute.api.base import RuleViolation
from llmroute.api.crdgen import crd_objects, render_crds
from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool
from llmroute.api.provider_policy import ProviderPolicy

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CEL_FIXTURES = Path(__file__).parent / "fixtures" / "cel"
CRDS = crd_objects()
MODELS: dict[str, type[LLMRoute | ProviderPolicy | ModelPool]] = {
    "LLMRoute": LLMRoute, "ProviderPolicy": ProviderPolicy, "ModelPool": ModelPool}
SCHEMAS = {c["spec"]["names"]["kind"]: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
           for c in CRDS.values()}
READY = '.status.conditions[?(@.type=="Ready")].status'
AGE = ("Age", "date", ".metadata.creationTimestamp")

Schema = dict[str, Any]


def nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its path (``.spec.models[].name``)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")


def child(schema: Schema, key: str | None) -> Schema:
    """The schema of an array's items (``key`` None), of one property, or of a map's values."""
    extra = schema.get("additionalProperties")
    if key is None:
        found: Schema = schema.get("items", {})
    else:
        found = schema.get("properties", {}).get(key) or (extra if isinstance(extra, dict) else {})
    return found


# --- generated files ----------------------------------------------------------------------------------------


def test_crds_dir_is_up_to_date() -> None:
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "crds").glob("*.yaml"))}
    assert on_disk == render_crds(), "crds/ differs from the API models: run `llmroute crds`"


@pytest.mark.parametrize("name", sorted(CRDS))
def test_schema_is_structural(name: str) -> None:
    schema = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in nodes(schema):
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const"} & node.keys(), path
        assert "type" in node or node.get("x-kubernetes-int-or-string") is True, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if "default" in node:
            jsonschema.validate(node["default"], {k: v for k, v in node.items() if k != "default"})


@pytest.mark.parametrize("name", sorted(CRDS))
def test_every_field_is_described(name: str) -> None:
    schema = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undescribed = [
        f"{path}.{prop}"
        for path, node in nodes(schema)
        for prop, sub in node.get("properties", {}).items()
        if not sub.get("description") and f"{path}.{prop}" != ".metadata"
    ]
    assert undescribed == [], "add a Field(description=...) so `kubectl explain` has text"


@pytest.mark.parametrize(
    ("name", "scope", "short", "columns"),
    [
        ("llmroute.io_llmroutes.yaml", "Namespaced", ["llmr"], [
            ("Models", "string", ".status.modelNames"), ("Ready", "string", READY),
            ("Active", "string", ".status.activeProvider"), AGE,
        ]),
        ("llmroute.io_providerpolicies.yaml", "Cluster", ["ppol"], [
            ("Providers", "string", ".status.summary"), ("Default", "string", ".spec.defaultDataClass"),
            ("Ready", "string", READY), AGE,
        ]),
        ("llmroute.io_modelpools.yaml", "Namespaced", ["mpool"], [
            ("Model", "string", ".spec.model"), ("Ready", "integer", ".status.readyReplicas"),
            ("Desired", "integer", ".status.desiredReplicas"), ("Reason", "string", ".status.reason"), AGE,
        ]),
    ],
    ids=["LLMRoute", "ProviderPolicy", "ModelPool"],
)
def test_crd_names_scope_and_columns(
    name: str, scope: str, short: list[str], columns: list[tuple[str, ...]]
) -> None:
    spec = CRDS[name]["spec"]
    (version,) = spec["versions"]
    assert (spec["group"], spec["scope"], spec["names"]["shortNames"], spec["names"]["categories"]) == (
        "llmroute.io", scope, short, ["llm"])
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]] == columns
    root = version["schema"]["openAPIV3Schema"]
    assert root["required"] == ["spec"]
    assert root["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize("k8s", ["1.30", "1.35"])
@pytest.mark.parametrize("name", sorted(CRDS))
def test_crd_passes_kubernetes_schema(name: str, k8s: str) -> None:
    kubernetes_validate.validate(CRDS[name], k8s, strict=True)


# --- CEL rules, evaluated as the API server does ------------------------------------------------------------

_CEL = celpy.Environment()


def defaulted(schema: Schema, value: Any) -> Any:
    """``value`` with schema defaults filled in, as the API server does before validating."""
    if isinstance(value, list):
        return [defaulted(child(schema, None), v) for v in value]
    if not isinstance(value, dict):
        return value
    props = schema.get("properties", {})
    given = {k: v for k, v in props.items() if "default" in v} | dict.fromkeys(value)
    return {k: defaulted(child(schema, k), value[k] if k in value else props[k]["default"]) for k in given}


def broken_rules(schema: Schema, value: Any) -> list[tuple[str, str]]:
    """(rule, message) of every rule that is false for ``value`` (already defaulted) or anything inside it."""
    broken = [
        (r["rule"], r["message"])
        for r in schema.get("x-kubernetes-validations", [])
        if not _CEL.program(_CEL.compile(r["rule"])).evaluate({"self": json_to_cel(value)})
    ]
    if isinstance(value, dict):
        broken += [b for k, v in value.items() for b in broken_rules(child(schema, k), v)]
    elif isinstance(value, list):
        broken += [b for v in value for b in broken_rules(child(schema, None), v)]
    return broken


def strict(schema: Schema) -> Schema:
    """The schema as ``kubectl apply`` (field validation Strict) applies it: unknown fields are errors."""
    out = {k: strict(v) if isinstance(v, dict) and k in {"items", "additionalProperties"} else v
           for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def load_fixture(path: Path) -> tuple[dict[str, Any], str | None]:
    text = path.read_text(encoding="utf-8")
    expect = re.match(r"# expect: (.+)\n", text)
    return yaml.safe_load(text), expect[1] if expect else None


FIXTURES = sorted(CEL_FIXTURES.glob("*/*.yaml"))


@pytest.mark.parametrize("path", FIXTURES, ids=[f"{p.parent.name}/{p.stem}" for p in FIXTURES])
def test_cel_and_python_agree(path: Path) -> None:
    obj, expected = load_fixture(path)
    assert (path.parent.name == "invalid") == (expected is not None), "invalid fixtures start with # expect:"
    schema = SCHEMAS[obj["kind"]]
    jsonschema.validate(obj, strict(schema))  # only the CEL rule may be broken, not the plain schema

    broken = broken_rules(schema, defaulted(schema, obj))
    assert [message for _, message in broken] == ([expected] if expected else [])

    if expected is None:
        MODELS[obj["kind"]].model_validate(obj)
        return
    with pytest.raises(ValidationError) as caught:
        MODELS[obj["kind"]].model_validate(obj)
    python = [e["ctx"]["error"].message for e in caught.value.errors()
              if isinstance(e.get("ctx", {}).get("error"), RuleViolation)]
    assert len(python) == 1 and python[0].startswith(expected), caught.value


def test_every_cel_rule_has_an_invalid_fixture() -> None:
    in_crds = {(r["rule"], r["message"]) for s in SCHEMAS.values() for _, n in nodes(s)
               for r in n.get("x-kubernetes-validations", [])}
    caught = set()
    for path in FIXTURES:
        obj, _ = load_fixture(path)
        caught |= set(broken_rules(SCHEMAS[obj["kind"]], defaulted(SCHEMAS[obj["kind"]], obj)))
    assert in_crds - caught == set(), "add a fixture under tests/unit/fixtures/cel/invalid/"


# --- examples -----------------------------------------------------------------------------------------------

def custom_resources(path: Path) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return [d for d in docs if isinstance(d, dict) and d.get("kind") in MODELS]


EXAMPLES = sorted(p for p in (ROOT / "examples").glob("**/*.yaml") if custom_resources(p))


@pytest.mark.parametrize(
    "path",
    EXAMPLES or [pytest.param(None, marks=pytest.mark.skip(reason="no examples yet"))],
    ids=[str(p.relative_to(ROOT)) for p in EXAMPLES] or ["none"],
)
def test_example_matches_crd_schema(path: Path) -> None:
    for doc in custom_resources(path):
        schema = SCHEMAS[doc["kind"]]
        jsonschema.validate(doc, strict(schema))
        assert broken_rules(schema, defaulted(schema, doc)) == []
