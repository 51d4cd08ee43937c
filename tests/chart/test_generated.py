"""Drift: the chart's generated files (dashboard, alerts, ClusterRole rules, CRDs) equal what the generators produce
today, and the chart's ``crds/`` is a byte-for-byte copy of the top-level ``crds/``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmroute.observability.generate import write
from tests.chart.conftest import CHART
from tests.chart.toolchain import ROOT

pytestmark = pytest.mark.chart


def test_generated_chart_files_are_current() -> None:
    stale = write(ROOT, check=True)
    assert stale == [], f"out of date: {[str(p) for p in stale]}; run: python -m llmroute.observability"


def test_chart_crds_are_the_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert top, "no CRDs in crds/"
    assert chart == top


def test_the_generator_reports_and_repairs_drift(tmp_path: Path) -> None:
    root = tmp_path
    shutil.copytree(ROOT / "crds", root / "crds")
    shutil.copytree(CHART, root / "charts" / "llmroute")
    (root / "charts/llmroute/files/alerts.yaml").write_text("groups: []\n")
    (root / "charts/llmroute/crds/stale.yaml").write_text("{}\n")
    assert {str(p) for p in write(root, check=True)} == {"charts/llmroute/files/alerts.yaml",
                                                         "charts/llmroute/crds/stale.yaml"}
    write(root)
    assert write(root, check=True) == []
    assert not (root / "charts/llmroute/crds/stale.yaml").exists()
