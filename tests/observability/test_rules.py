"""The alerting rules with promtool: ``check rules`` on the generated file, ``test rules`` on
``alerts_test.yaml``, which must hold a firing and a not-firing case for every alert the generator defines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmroute.observability import alerts
from tests.chart.toolchain import run, tool
from tests.observability.conftest import ALERTS

pytestmark = pytest.mark.observability
UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")


def test_promtool_check_rules() -> None:
    proc = run([tool("promtool"), "check", "rules", str(ALERTS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts.all_alerts())} rules found" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    proc = run([tool("promtool"), "test", "rules", str(UNIT_TESTS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    checks = [c for t in doc["tests"] for c in t["alert_rule_test"]]
    for alert in alerts.all_alerts():
        mine = [c for c in checks if c["alertname"] == alert.name]
        assert any(c["exp_alerts"] for c in mine), f"{alert.name}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert.name}: no test where it stays quiet"


def test_every_alert_has_a_severity_summary_and_description() -> None:
    for group in alerts.rule_groups()["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
