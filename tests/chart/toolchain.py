"""Finding the command-line tools the chart and observability tiers run (helm, kubectl, promtool, prometheus,
shellcheck, hadolint): ``.tools/`` first (``scripts/install-tools.sh`` puts helm and kubectl there), then the test
environment's ``bin/``, then PATH. A missing tool fails the test when ``CI=true`` and skips it otherwise, with the
command that installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
INSTALL = "bash scripts/install-tools.sh"


def tool(name: str) -> str:
    """The path of ``name``, or fail (CI) / skip (elsewhere) saying how to install it."""
    for candidate in (TOOLS / name, Path(sys.executable).parent / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"{name} is not installed; run: {INSTALL}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(argv: list[str], *, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
