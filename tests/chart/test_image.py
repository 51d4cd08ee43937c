"""The image recipe (``operator/Dockerfile`` + ``.dockerignore``), which cannot be built here (no Docker daemon):
hadolint, then the properties the chart relies on, read from the parsed instructions - a pinned slim base, a
multi-stage build whose runtime stage only copies a virtualenv, non-root UID 65532, ``ENTRYPOINT ["llmroute"]`` with
``CMD ["operator"]``, the examples for ``llmroute local`` - and a real wheel build of the package, whose console
script is the entrypoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chart.toolchain import ROOT, run, tool

pytestmark = pytest.mark.chart
DOCKERFILE = ROOT / "operator" / "Dockerfile"
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")


@dataclass(frozen=True)
class Instruction:
    op: str
    args: str


def parse(text: str) -> list[list[Instruction]]:
    """Instructions grouped by build stage (continuation lines joined, comments dropped)."""
    stages: list[list[Instruction]] = []
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    for line in filter(None, (raw.strip() for raw in logical.splitlines())):
        op, _, args = line.partition(" ")
        if op.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(Instruction(op.upper(), " ".join(args.split())))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse(DOCKERFILE.read_text())


def _args(stage: list[Instruction], op: str) -> list[str]:
    return [i.args for i in stage if i.op == op]


def test_hadolint_is_clean() -> None:
    proc = run([tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multi_stage_on_one_pinned_slim_base(stages: list[list[Instruction]]) -> None:
    assert len(stages) == 2
    build_from, runtime_from = stages[0][0].args.split(), stages[1][0].args.split()
    assert PINNED_BASE.match(build_from[0]) and build_from[1:] == ["AS", "build"]
    assert runtime_from == [build_from[0]]  # same base: the virtualenv's interpreter path stays valid


def test_build_stage_makes_a_wheel_and_a_virtualenv(stages: list[list[Instruction]]) -> None:
    script = " ".join(_args(stages[0], "RUN"))
    assert "python -m venv /opt/llmroute" in script
    assert "pip wheel" in script and "--no-deps" in script and "pip install --no-cache-dir /wheels/" in script
    # the compiled digit-cluster plan is optional to pip (no compiler: the Python plan runs); the image must carry it
    assert "gcc" in script and 'python -c "import llmroute.core._pii_clusters"' in script


def test_runtime_stage_copies_the_virtualenv_and_runs_unprivileged(stages: list[list[Instruction]]) -> None:
    runtime = stages[1]
    assert _args(runtime, "RUN") == []  # nothing is built or installed at runtime: no compilers, no caches
    assert "--from=build /opt/llmroute /opt/llmroute" in _args(runtime, "COPY")
    assert "examples/ examples/" in _args(runtime, "COPY")
    assert _args(runtime, "WORKDIR") == ["/app"]  # `llmroute local` resolves examples/ from here
    assert _args(runtime, "USER") == ["65532:65532"]
    assert [json.loads(a) for a in _args(runtime, "ENTRYPOINT")] == [["llmroute"]]
    assert [json.loads(a) for a in _args(runtime, "CMD")] == [["operator"]]
    assert any("/opt/llmroute/bin" in e for e in _args(runtime, "ENV"))


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    lines = [x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines()
             if x.strip() and not x.startswith("#")]
    assert lines[0] == "*"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "operator", "examples"}
    for path in allowed:
        assert (ROOT / path).exists()


def test_the_wheel_builds_and_installs_the_entrypoint(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                           "--wheel-dir", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("llmroute-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "llmroute/cli.py" in names and "llmroute/controller/metrics.py" in names
    assert "llmroute/core/_pii_clusters.pyi" in names
    assert any(n.startswith("llmroute/core/_pii_clusters.") and n.endswith(".so") for n in names), sorted(names)
    assert "llmroute = llmroute.cli:main" in entry_points
