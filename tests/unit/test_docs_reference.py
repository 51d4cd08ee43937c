"""docs/api-reference.md is generated from the API models, is current, documents every field and rule of the CRDs,
and every link in it lands on a heading (GitHub's anchor rules)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmroute.api.crdgen import crd_objects
from llmroute.api.reference import PATH, Slugger, github_anchor, heading_anchors, main, render_reference
from tests.unit.test_crds import SCHEMAS, nodes

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOC = render_reference()


def _rows(section: str) -> list[str]:
    """The field names of the first table under a ``### <path>`` heading."""
    body = DOC.split(f"\n### {section}\n", 1)[1].split("\n### ", 1)[0]
    table = body.split("\n\n| Field | Type |", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\| `([^`]+)`", table, flags=re.MULTILINE)


def test_reference_is_up_to_date() -> None:
    on_disk = (ROOT / PATH).read_text(encoding="utf-8")
    assert on_disk == DOC, "docs/api-reference.md differs from the API models: run `python -m llmroute.api.reference`"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / PATH).write_text(DOC.replace("| `maxAttempts`", "| `maxTries`"), encoding="utf-8")
    assert main(["--root", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_every_object_of_the_crd_has_a_section_listing_its_fields(kind: str) -> None:
    schema = SCHEMAS[kind]
    objects = [
        (f"{kind}{path}", node)
        for part in ("spec", "status")
        for path, node in nodes(schema["properties"][part], f".{part}")
        if "properties" in node
    ]
    assert objects
    for path, node in objects:
        assert _rows(path) == list(node["properties"]), path


def test_every_rule_message_enum_value_and_default_of_the_crds_is_in_the_reference() -> None:
    for crd in crd_objects().values():
        for path, node in nodes(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]):
            for rule in node.get("x-kubernetes-validations", []):
                assert rule["message"] in DOC, path
                assert rule["rule"].replace("|", "\\|") in DOC, path
            for value in node.get("enum", []):
                assert f"`{value}`" in DOC, path
    assert "| `maxAttempts` | integer | `3` | 1 ≤ value ≤ 10 |" in DOC
    assert (
        "| `recoverySteps` | array of integer | `[10, 50, 100]` | 1 ≤ items ≤ 10<br>each item: 1 ≤ value ≤ 100 |" in DOC
    )


def test_every_link_lands_on_a_heading() -> None:
    anchors = set(heading_anchors(DOC))
    links = re.findall(r"\]\(#([^)]+)\)", DOC)
    assert len(links) > 40
    assert sorted(set(links) - anchors) == []


def test_no_raw_angle_brackets_outside_code() -> None:
    prose = re.sub(r"`[^`]*`", "", DOC.split("-->", 1)[1])
    assert "<" not in prose.replace("<br>", "")


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("LLMRoute.spec.models[].backends[]", "llmroutespecmodelsbackends"),
        ("LLMRouteProviderDown", "llmrouteproviderdown"),
        ("What to do: `kubectl` and PromQL", "what-to-do-kubectl-and-promql"),
        ("Upgrading the chart (and the CRDs)", "upgrading-the-chart-and-the-crds"),
        ("snake_case — and dashes", "snake_case--and-dashes"),
    ],
)
def test_github_anchor(heading: str, anchor: str) -> None:
    assert github_anchor(heading) == anchor


def test_repeated_headings_get_numbered_anchors_like_github() -> None:
    slugger = Slugger()
    assert [slugger.slug(h) for h in ("Spec", "spec", "Spec-1", "Spec")] == ["spec", "spec-1", "spec-1-1", "spec-2"]
    assert heading_anchors("# A\n```\n# not a heading\n```\n## A\n") == ["a", "a-1"]
