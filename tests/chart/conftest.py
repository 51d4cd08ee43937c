"""Fixtures for the chart tier: real ``helm template`` output for each values case, parsed once per session.

Values cases: the chart's defaults, every ``examples/helm/*.yaml`` file, and ``values/all-on.yaml`` (every optional
object and value switched on). Each is rendered (with ``--include-crds``) for the oldest and newest Kubernetes
versions the tests validate against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.toolchain import ROOT, run, tool

CHART = ROOT / "charts" / "llmroute"
HERE = Path(__file__).resolve().parent
KUBE_VERSIONS = ("1.30", "1.35")
NAMESPACE = "llmroute-system"
RELEASE = "llmroute"

VALUES_CASES: dict[str, Path | None] = {
    "defaults": None,
    **{f"examples/helm/{p.name}": p for p in sorted((ROOT / "examples" / "helm").glob("*.yaml"))},
    "all-on": HERE / "values" / "all-on.yaml",
}


def helm_template(values: Path | None, kube_version: str = "1.35", *extra: str) -> list[dict[str, Any]]:
    argv = [tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds",
            "--kube-version", f"{kube_version}.0", *(["-f", str(values)] if values else []), *extra]
    proc = run(argv)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="session")
def rendered() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(values case, kube version) -> the rendered documents."""
    return {(case, v): helm_template(path, v) for case, path in VALUES_CASES.items() for v in KUBE_VERSIONS}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
