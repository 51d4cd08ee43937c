"""``llmroute explain`` golden outputs for the example, normal and during outages (table and JSON).

Regenerate after an intended change with ``LLMROUTE_UPDATE_GOLDEN=1 pytest tests/unit/test_explain_golden.py``
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmroute.cli import main
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.unit
GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "pii": ["--class", "pii"],
    "phi": ["--class", "phi"],
    "public-deepseek-down": ["--class", "public", "--down", "deepseek"],
    "pii-us-hosts-down": ["--class", "pii", "--down", "together", "--down", "fireworks"],
    "phi-all-down": ["--class", "phi", "--down", "bedrock", "--down", "vllm"],
    "public-deepseek-down.json": ["--class", "public", "--down", "deepseek", "--output", "json"],
    "public-chat-with-pii-text": ["--class", "public", "--model", "deepseek-chat",
                                  "--text", "Refund jane@example.com, card 4111 1111 1111 1111"],
}


@pytest.mark.parametrize("name", CASES)
def test_explain_golden(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", *CASES[name], str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    path = GOLDEN / (name if name.endswith(".json") else f"{name}.txt")
    if os.environ.get("LLMROUTE_UPDATE_GOLDEN"):
        path.write_text(out)
    assert out == path.read_text(), f"explain output changed; see {path}"
