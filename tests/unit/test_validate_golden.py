"""``llmroute validate`` golden outputs: every problem of every document, one line each, in file and document order.

``fixtures/validate/several-problems.yaml`` holds a ProviderPolicy and an LLMRoute with unknown keys, wrong types, a
missing field and bad enums; ``hostile.yaml`` what YAML allows and Kubernetes does not (duplicate keys, non-objects,
missing apiVersion, a kind typo, a bad Secret, tags, an alias bomb, tabs). Regenerate after an intended change with
``LLMROUTE_UPDATE_GOLDEN=1 pytest tests/unit/test_validate_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmroute.cli import main

pytestmark = pytest.mark.unit
FIXTURES = Path(__file__).parent / "fixtures" / "validate"
GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "validate-several-problems": ["several-problems.yaml"],
    "validate-hostile": ["hostile.yaml"],
    "validate-both": ["several-problems.yaml", "hostile.yaml"],
}


@pytest.mark.parametrize("name", CASES)
def test_validate_golden(name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)  # paths in the output as the user typed them, not this machine's
    code = main(["validate", *CASES[name]])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("LLMROUTE_UPDATE_GOLDEN"):
        path.write_text(err)
    assert err == path.read_text(), f"validate output changed; see {path}"


def test_every_problem_line_names_file_document_and_field(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FIXTURES)
    main(["validate", "several-problems.yaml"])
    *problems, summary = capsys.readouterr().err.splitlines()
    assert summary == f"llmroute: {len(problems)} problems in 1 file"
    for line in problems:
        where, _, what = line.removeprefix("llmroute: error: several-problems.yaml (document ").partition("): ")
        assert where in ("1, ProviderPolicy residency", "2, LLMRoute apps/chat"), line
        assert what.startswith(("spec.", "metadata.", 'unknown field "')), line


def test_order_does_not_depend_on_argument_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FIXTURES)
    main(["validate", "hostile.yaml", "several-problems.yaml"])
    assert capsys.readouterr().err == (GOLDEN / "validate-both.txt").read_text()


def test_explain_reports_every_problem_too(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Other commands that load files (explain, local mode) print the same lines, each prefixed, and exit 2."""
    monkeypatch.chdir(FIXTURES)
    assert main(["explain", "several-problems.yaml"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == (GOLDEN / "validate-several-problems.txt").read_text().splitlines()[:-1]
