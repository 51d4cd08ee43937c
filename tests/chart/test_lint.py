"""``helm lint --strict`` on the chart with its defaults and with every example values file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.conftest import CHART, VALUES_CASES
from tests.chart.toolchain import run, tool

pytestmark = pytest.mark.chart


@pytest.mark.parametrize("values", list(VALUES_CASES.values()), ids=list(VALUES_CASES))
def test_helm_lint_strict(values: Path | None) -> None:
    proc = run([tool("helm"), "lint", "--strict", str(CHART), *(["-f", str(values)] if values else [])])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
