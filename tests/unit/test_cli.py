"""``llmroute validate`` / ``explain`` / ``crds``: exit codes and one-line messages naming file, document and field.

``validate`` exits 1 on invalid manifests (as ``kubectl apply`` does) and prints every problem; other commands exit 2
on bad input.

Bad input is written to a temp folder as real files, and the real ``main()`` is run on them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.cli import main
from tests.conftest import EXAMPLE, example_doc

pytestmark = pytest.mark.unit


def write(tmp: Path, name: str, *docs: Any) -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", str(EXAMPLE))
    assert (code, err) == (0, "")
    assert out.startswith("ok: 1 ProviderPolicy, 1 LLMRoute, 1 ModelPool, 1 Secret")


def _edit_policy(fn: Any) -> list[dict[str, Any]]:
    doc = example_doc("policy")
    fn(doc["spec"])
    return [doc, example_doc("route")]


def _edit_route(fn: Any) -> list[dict[str, Any]]:
    doc = example_doc("route")
    fn(doc["spec"])
    return [example_doc("policy"), doc]


POLICY_AT = "(document 1, ProviderPolicy deepseek-residency): "
ROUTE_AT = "(document 2, LLMRoute apps/deepseek): "
BAD_INPUTS = [
    pytest.param(_edit_policy(lambda s: s["providers"][1]["dataUse"].__setitem__("training", False)),
                 POLICY_AT + "spec.providers[1].dataUse.training: Input should be 'Used', 'NotUsed' or 'Unknown' "
                 "(a bare yes/no/true/false in YAML is a boolean", id="bare-no-is-a-boolean"),
    pytest.param(_edit_route(lambda s: s["failover"].__setitem__("maxAttempts", "three")),
                 ROUTE_AT + "spec.failover.maxAttempts: Input should be a valid integer", id="wrong-type"),
    pytest.param(_edit_route(lambda s: s["failover"].__setitem__("retries", 3)),
                 ROUTE_AT + 'unknown field "spec.failover.retries"', id="unknown-field"),
    pytest.param(_edit_route(lambda s: s["failover"].__setitem__("idleTimeout", "30 seconds")),
                 ROUTE_AT + 'spec.failover.idleTimeout: "30 seconds" is not a duration', id="bad-duration"),
    pytest.param(_edit_route(lambda s: s["models"][0]["backends"][1].__setitem__("provider", "fireworx")),
                 ROUTE_AT + 'spec.models[0].backends[1].provider: no provider "fireworx" in ProviderPolicy',
                 id="missing-provider"),
    pytest.param(_edit_route(lambda s: s.__setitem__("defaultDataClass", "secret")),
                 ROUTE_AT + 'spec.defaultDataClass: unknown data class "secret"', id="unknown-data-class"),
    pytest.param(_edit_policy(lambda s: s["providers"].append(dict(s["providers"][0]))),
                 POLICY_AT + 'spec.providers: provider names must be unique (duplicate: "deepseek")',
                 id="duplicate-provider"),
    pytest.param(_edit_route(lambda s: s["models"][1].__setitem__("name", "deepseek-chat")),
                 ROUTE_AT + 'spec.models: model names must be unique (duplicate: "deepseek-chat")',
                 id="duplicate-model"),
    pytest.param(_edit_policy(lambda s: s.__setitem__("defaultDataClass", "restricted")),
                 POLICY_AT + "spec.defaultDataClass: defaultDataClass must name one of spec.dataClasses",
                 id="policy-default-class"),
    pytest.param(_edit_policy(lambda s: s["providers"][0].pop("credentials")),
                 POLICY_AT + "spec.providers[0].credentials: credentials are required unless selfHosted is true or "
                 "the provider is a pool",
                 id="credentials-required"),
    pytest.param([{"apiVersion": "llmroute.io/v1alpha1", "kind": "LLMRoutes", "metadata": {"name": "x"}}],
                 '(document 1, LLMRoutes x): kind: unknown kind "LLMRoutes" in llmroute.io', id="unknown-kind"),
]


@pytest.mark.parametrize(("docs", "message"), BAD_INPUTS)
def test_validate_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], docs: list[Any],
                                    message: str) -> None:
    path = write(tmp_path, "bad.yaml", *docs)
    code, _, err = run(capsys, "validate", str(path))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith(f"llmroute: error: {path} {message}")
    assert lines[1] == "llmroute: 1 problem in 1 file"


def test_malformed_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: llmroute.io/v1alpha1\nkind: LLMRoute\nspec: {models: [\n")
    code, _, err = run(capsys, "validate", str(path))
    assert code == 1
    assert err.startswith(f"llmroute: error: {path} (document 1): invalid YAML: line ")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", str(tmp_path / "nope.yaml"), str(tmp_path / "gone.yaml"))
    assert (code, err.splitlines()) == (1, [f"llmroute: error: {tmp_path / 'gone.yaml'}: no such file or directory",
                                            f"llmroute: error: {tmp_path / 'nope.yaml'}: no such file or directory",
                                            "llmroute: 2 problems in 2 files"])


def test_cluster_scoped_policy_with_namespace_still_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = example_doc("policy")
    policy["metadata"]["namespace"] = "llmroute-system"
    code, out, _ = run(capsys, "validate", str(write(tmp_path, "p.yaml", policy, example_doc("route"))))
    assert code == 0 and out.startswith("ok: 1 ProviderPolicy")


def test_other_kinds_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    code, out, _ = run(capsys, "validate", str(write(tmp_path, "m.yaml", cm, example_doc("policy"))))
    assert code == 0 and out.startswith("ok: 1 ProviderPolicy, 0 LLMRoute")


def test_explain_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "--class", "pii", str(EXAMPLE))
    assert code == 0
    assert "deepseek-chat: 4 of 5 backends allowed" in out
    deepseek_row = next(line for line in out.splitlines() if line.strip().startswith("-    deepseek "))
    assert "DENIED" in deepseek_row and "jurisdiction CN not in [US, EU]" in deepseek_row


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "--route", "deepseek", "--class", "phi", "--output", "json", str(EXAMPLE))
    assert code == 0
    data = json.loads(out)
    chat = next(m for m in data["models"] if m["name"] == "deepseek-chat")
    assert [(b["provider"], b["order"]) for b in chat["backends"] if b["allowed"]] == [("vllm", 1), ("bedrock", 2)]
    assert data["dataClass"] == "phi"


def test_explain_unknown_class(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "explain", "--class", "secret", str(EXAMPLE))
    assert code == 2
    assert err.strip() == 'llmroute: error: unknown data class "secret" (known: public, internal, pii, phi)'


def test_console_script_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "llmroute", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for command in ("crds", "validate", "explain", "router"):
        assert command in proc.stdout
