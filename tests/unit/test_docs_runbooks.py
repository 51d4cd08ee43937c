"""docs/runbooks.md and the alerts' ``runbook_url``: every alert links to a section that exists (GitHub's anchor
rules), every section belongs to an alert, says what it means, how to confirm and what to do, and its PromQL parses
(promtool) and names only metrics llmroute exports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from llmroute.api.reference import heading_anchors
from llmroute.controller import metrics as operator_metrics
from llmroute.observability import alerts
from llmroute.router import audit, auth  # noqa: F401  (their metrics join the router's registry on import)
from llmroute.router import metrics as router_metrics
from tests.chart.toolchain import run, tool

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
PREFIX = "https://github.com/llmroute/llmroute/blob/main/docs/runbooks.md#"


def sections() -> dict[str, str]:
    """Level-2 sections of the runbook doc: heading → body."""
    parts = re.split(r"^## (.+)$", DOC, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def promql_blocks(body: str) -> list[str]:
    """The queries of the ```promql blocks (indented lines continue the previous query)."""
    queries: list[str] = []
    for block in re.findall(r"```promql\n(.*?)```", body, flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith(" ") and queries:
                queries[-1] += "\n" + line
            elif line.strip():
                queries.append(line)
    return queries


def exported_metrics() -> set[str]:
    """Every series name the router and the operator export (counters with _total, histograms with their parts)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for registry in (router_metrics.REGISTRY, operator_metrics.REGISTRY):
        for family in registry.collect():
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def test_every_rule_carries_the_runbook_url_of_its_alert() -> None:
    rules = {r["alert"]: r for g in alerts.rule_groups()["groups"] for r in g["rules"]}
    assert set(rules) == {a.name for a in alerts.all_alerts()}
    for name, rule in rules.items():
        assert rule["annotations"]["runbook_url"] == PREFIX + name.lower(), name
    on_disk = yaml.safe_load((ROOT / "charts/llmroute/files/alerts.yaml").read_text(encoding="utf-8"))
    written = {r["alert"]: r["annotations"].get("runbook_url") for g in on_disk["groups"] for r in g["rules"]}
    assert written == {n: r["annotations"]["runbook_url"] for n, r in rules.items()}, (
        "run: python -m llmroute.observability"
    )


def test_every_runbook_url_lands_on_a_heading() -> None:
    anchors = set(heading_anchors(DOC))
    for alert in alerts.all_alerts():
        assert alert.runbook_url.startswith(PREFIX)
        assert alert.runbook_url.removeprefix(PREFIX) in anchors, f"{alert.name}: no section in docs/runbooks.md"


def test_every_section_is_an_alert_and_every_alert_has_one() -> None:
    assert sorted(sections()) == sorted(a.name for a in alerts.all_alerts())


@pytest.mark.parametrize("name", sorted(a.name for a in alerts.all_alerts()))
def test_each_section_says_what_it_means_how_to_confirm_and_what_to_do(name: str) -> None:
    body = sections().get(name, "")
    for part in ("**What it means.**", "**Confirm.**", "**What to do.**"):
        assert part in body, f"{name}: missing {part}"
    assert body.index("**What it means.**") < body.index("**Confirm.**") < body.index("**What to do.**"), name
    assert promql_blocks(body), f"{name}: no PromQL to confirm it with"


def test_the_index_table_lists_every_alert_with_its_severity() -> None:
    rows = dict(re.findall(r"^\| \[(\w+)\]\(#\w+\) \| (\w+) \|", DOC, flags=re.MULTILINE))
    assert rows == {a.name: a.severity for a in alerts.all_alerts()}


def test_runbook_queries_name_only_exported_llmroute_metrics() -> None:
    known = exported_metrics()
    series = [re.sub(r"\{[^}]*\}|\b(?:by|without)\s*\([^)]*\)", "", q) for q in promql_blocks(DOC)]  # no labels
    used = {m for q in series for m in re.findall(r"\bllmroute_\w+", q)}
    assert used, "no llmroute metric in the runbooks"
    assert sorted(used - known) == []


def test_runbook_queries_parse(tmp_path: Path) -> None:
    queries = promql_blocks(DOC)
    rules = {
        "groups": [
            {"name": "runbooks", "rules": [{"record": f"runbook:query_{i}", "expr": q} for i, q in enumerate(queries)]}
        ]
    }
    path = tmp_path / "runbook-queries.yaml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    proc = run([tool("promtool"), "check", "rules", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(queries)} rules found" in proc.stdout
