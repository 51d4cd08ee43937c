"""shellcheck on the shell scripts: the kind end-to-end script (it cannot run here: no Docker), the tool installer,
the CI entry point and the sanitizer fuzz of the PII detector's compiled part."""

from __future__ import annotations

import pytest

from tests.chart.toolchain import ROOT, run, tool

pytestmark = pytest.mark.chart
SCRIPTS = ["tests/e2e/kind.sh", "scripts/install-tools.sh", ".ci/run", "tests/fuzz/pii-native.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_is_clean(script: str) -> None:
    proc = run([tool("shellcheck"), "--severity=style", "--shell=bash", str(ROOT / script)])
    assert proc.returncode == 0, proc.stdout


def test_kind_script_tears_down_and_uses_the_chart_and_example() -> None:
    text = (ROOT / "tests/e2e/kind.sh").read_text()
    assert "set -euo pipefail" in text and "trap cleanup EXIT" in text
    for step in ("create cluster", "docker-image", "install llmroute charts/llmroute", "examples/deepseek-residency",
                 "port-forward", "openai.OpenAI", "delete cluster"):
        assert step in text, step
