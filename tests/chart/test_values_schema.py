"""values.schema.json: wrong types, unknown keys and bad enums are refused by ``helm template`` (and ``helm lint``)
with the schema's own message; values the schema leaves to Kubernetes (affinity internals) are caught by validating
the rendered Deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.chart.conftest import CHART, helm_template, one
from tests.chart.toolchain import run, tool

pytestmark = pytest.mark.chart
REFUSED = "values don't meet the specifications of the schema(s) in the following chart(s):"

BAD_VALUES = [
    pytest.param({"operator": {"logLevel": "LOUD"}},
                 "at '/operator/logLevel': value must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR'", id="enum"),
    pytest.param({"operator": {"watchNamespace": ["apps"]}},
                 "at '/operator': additional properties 'watchNamespace' not allowed", id="unknown-key"),
    pytest.param({"replicaCount": 2}, "at '': additional properties 'replicaCount' not allowed",
                 id="unknown-top-level-key"),
    pytest.param({"metrics": {"port": "eighty"}}, "at '/metrics/port': got string, want integer", id="type"),
    pytest.param({"metrics": {"port": 70000}}, "at '/metrics/port': maximum: got 70,000, want 65,535", id="range"),
    pytest.param({"operator": {"watchNamespaces": "apps"}}, "at '/operator/watchNamespaces': got string, want array",
                 id="namespaces-not-a-list"),
    pytest.param({"operator": {"watchNamespaces": ["Apps_1"]}},
                 "at '/operator/watchNamespaces/0': 'Apps_1' does not match pattern", id="namespace-name"),
    pytest.param({"operator": {"resyncSeconds": 0}}, "at '/operator/resyncSeconds': exclusiveMinimum: got 0, want 0",
                 id="resync-zero"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}},
                 "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'", id="pull-policy"),
    pytest.param({"operator": {"tolerations": [{"key": "k", "effects": "NoSchedule"}]}},
                 "at '/operator/tolerations/0': additional properties 'effects' not allowed", id="toleration-key"),
    pytest.param({"operator": {"resources": {"requests": {"cpu": "lots"}}}},
                 "at '/operator/resources/requests/cpu': 'lots' does not match pattern", id="quantity"),
    pytest.param({"operator": {"resources": {"request": {"cpu": "1"}}}},
                 "at '/operator/resources': additional properties 'request' not allowed", id="resources-key"),
    pytest.param({"operator": {"securityContext": {"runAsUser": -1}}},
                 "at '/operator/securityContext/runAsUser': minimum: got -1, want 0", id="security-context"),
    pytest.param({"operator": {"podSecurityContext": {"seccompProfile": {"type": "Default"}}}},
                 "at '/operator/podSecurityContext/seccompProfile/type': value must be one of 'RuntimeDefault', "
                 "'Localhost', 'Unconfined'", id="seccomp"),
    pytest.param({"operator": {"nodeSelector": {"disk": 1}}},
                 "at '/operator/nodeSelector/disk': got number, want string", id="node-selector"),
    pytest.param({"operator": {"affinity": {"nodeAffinty": {}}}},
                 "at '/operator/affinity': additional properties 'nodeAffinty' not allowed", id="affinity-key"),
    pytest.param({"operator": {"extraEnv": [{"value": "x"}]}},
                 "at '/operator/extraEnv/0': missing property 'name'", id="env-without-name"),
    pytest.param({"serviceMonitor": {"enabled": "yes"}}, "at '/serviceMonitor/enabled': got string, want boolean",
                 id="bool"),
    pytest.param({"podMonitor": {"interval": "15"}}, "at '/podMonitor/interval': '15' does not match pattern",
                 id="duration"),
    pytest.param({"podMonitor": {"pools": False}}, "at '/podMonitor/pools': got boolean, want object",
                 id="pools-toggle"),
    pytest.param({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}},
                 "at '/grafanaDashboard/labels/grafana_dashboard': got number, want string", id="label-value"),
    pytest.param({"prometheusRule": {"enabled": True, "rules": []}},
                 "at '/prometheusRule': additional properties 'rules' not allowed", id="rule-key"),
]


def _values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    return str(path)


@pytest.mark.parametrize(("values", "message"), BAD_VALUES)
def test_bad_values_are_refused_with_the_schema_message(tmp_path: Path, values: dict[str, Any],
                                                        message: str) -> None:
    proc = run([tool("helm"), "template", "r", str(CHART), "-f", _values_file(tmp_path, values)])
    assert proc.returncode == 1, proc.stdout[:500]
    assert REFUSED in proc.stderr
    assert f"- {message}" in proc.stderr, proc.stderr


def test_lint_refuses_bad_values_too(tmp_path: Path) -> None:
    proc = run([tool("helm"), "lint", "--strict", str(CHART), "-f",
                _values_file(tmp_path, {"operator": {"logLevel": "LOUD"}})])
    assert proc.returncode == 1
    assert "at '/operator/logLevel': value must be one of" in proc.stdout + proc.stderr


def test_affinity_internals_are_checked_by_kubernetes_validation(tmp_path: Path) -> None:
    bad: dict[str, Any] = {"operator": {"affinity": {"nodeAffinity": {"requiredDuringScheduling": {}}}}}
    docs = helm_template(None, "1.35", "-f", _values_file(tmp_path, bad))
    with pytest.raises(kubernetes_validate.ValidationError, match="requiredDuringScheduling"):
        kubernetes_validate.validate(one(docs, "Deployment"), "1.35", strict=True)
