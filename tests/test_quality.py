"""Static checks as tests, so the README's one test command covers them: ruff, mypy --strict, import-linter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.quality
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return str(found)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["ruff", "check", "operator", "tests"], id="ruff"),
        pytest.param(["mypy"], id="mypy-strict"),
        pytest.param(["lint-imports"], id="import-linter"),
    ],
)
def test_static_check(argv: list[str]) -> None:
    proc = subprocess.run([tool(argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
