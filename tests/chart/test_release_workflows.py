"""The GitHub workflows (``.github/workflows``), which cannot run here: linted with actionlint and zizmor (offline,
pedantic), held to least privilege and full-SHA pins, and their release steps run for real where they can be - the
shell of a step executed with its ``${{ }}`` expressions filled in from a tag, real helm and the repository's
scripts, and only the network tools (the registry push, cosign, gh) replaced by recorders. What the release
publishes is checked against what the chart installs by default and what the README tells users to install."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import llmroute
from tests.chart.conftest import CHART, helm_template, one
from tests.chart.test_image import DOCKERFILE, parse
from tests.chart.toolchain import ROOT, run, tool

pytestmark = pytest.mark.chart
WORKFLOWS = ROOT / ".github" / "workflows"
CI, RELEASE = WORKFLOWS / "ci.yml", WORKFLOWS / "release.yml"
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>\S+)(?P<comment>.*)$")
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")
DIGEST = "sha256:" + "ab" * 32
TAG = f"v{llmroute.__version__}"


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    if True in doc:  # YAML 1.1 reads the `on:` key as a boolean
        doc["on"] = doc.pop(True)
    return doc


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    return load(RELEASE)


def steps(job: dict[str, Any], uses: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0].lower() == uses]


def step_named(job: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [s for s in job["steps"] if s.get("name") == name or s.get("id") == name]
    return found


# ---- linters -----------------------------------------------------------------------------------------------------


def test_actionlint_is_clean() -> None:
    proc = run([tool("actionlint"), "-no-color", "-oneline", str(CI), str(RELEASE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_reports_nothing() -> None:
    proc = run([tool("zizmor"), "--offline", "--no-progress", "--persona=pedantic", str(ROOT / ".github")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout


def test_the_linters_catch_what_they_are_here_for(tmp_path: Path) -> None:
    """The same invocations on a broken copy of the release workflow: an unpinned action, untrusted input expanded
    into a script, a credential left in .git, a job output that does not exist."""
    text = RELEASE.read_text()
    text = re.sub(r"actions/checkout@\w+ # \S+", "actions/checkout@v4", text, count=1)
    text = text.replace("persist-credentials: false", "fetch-depth: 1", 1)
    text = text.replace('version="${REF_NAME#v}"', 'version="${{ github.event.head_commit.message }}"', 1)
    text = text.replace("needs.image.outputs.digest", "needs.image.outputs.nothing", 1)
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text)
    lint = run([tool("actionlint"), "-no-color", "-oneline", str(broken)])
    assert lint.returncode == 1 and 'property "nothing" is not defined' in lint.stdout, lint.stdout
    audit = run([tool("zizmor"), "--offline", "--no-progress", "--persona=pedantic", str(tmp_path / ".github")])
    assert audit.returncode != 0
    for finding in ("unpinned-uses", "template-injection", "artipacked"):
        assert f"[{finding}]" in audit.stdout, audit.stdout


# ---- least privilege, pins, no injection -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CI, RELEASE], ids=["ci", "release"])
def test_permissions_are_granted_per_job_and_only_what_it_needs(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}
    needs_write = {  # job -> the scopes it writes, and nothing else
        "test": set(),
        "verify": set(),
        "image": {"packages", "id-token"},
        "chart": {"packages", "id-token"},
        "github-release": {"contents"},
    }
    for name, job in workflow["jobs"].items():
        grants = job["permissions"]
        assert set(grants.values()) <= {"read", "write"}, name
        assert {scope for scope, level in grants.items() if level == "write"} == needs_write[name], name
        assert job["timeout-minutes"] > 0


@pytest.mark.parametrize("path", [CI, RELEASE], ids=["ci", "release"])
def test_actions_are_pinned_by_full_sha_with_their_release(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]
    assert lines
    pins: dict[str, set[str]] = {}
    for line in lines:
        match = PINNED.match(line)
        assert match, line
        assert re.fullmatch(r"[0-9a-f]{40}", match["sha"]), f"not a full commit SHA: {line}"
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", match["comment"]), f"no `# vX.Y.Z` comment: {line}"
        pins.setdefault(match["action"].lower(), set()).add(match["sha"] + match["comment"])
    assert all(len(v) == 1 for v in pins.values()), f"one action pinned to two commits: {pins}"


@pytest.mark.parametrize("path", [CI, RELEASE], ids=["ci", "release"])
def test_checkouts_keep_no_credentials_and_scripts_expand_no_expressions(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        checkouts = steps(job, "actions/checkout")
        assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts), name
        for step in job["steps"]:
            # untrusted or not, values reach scripts through env:, never spliced into the shell text
            assert "${{" not in step.get("run", ""), f"{name}: {step.get('name', step.get('id'))}"


def test_ci_runs_the_ci_entry_point_on_pull_requests_and_main() -> None:
    workflow = load(CI)
    assert set(workflow["on"]) == {"pull_request", "push"}
    assert workflow["on"]["push"] == {"branches": ["main"]}
    assert workflow["on"]["pull_request"] is None  # every pull request, whatever its base
    (job,) = workflow["jobs"].values()
    assert [s["run"] for s in job["steps"] if "run" in s][-1] == "bash .ci/run"
    assert steps(job, "actions/setup-python")[0]["with"]["python-version"] == "3.11"


# ---- running the release steps -----------------------------------------------------------------------------------


def context(**outputs: str) -> dict[str, str]:
    """The expression values of a run for the tag ``TAG``."""
    return {
        "github.ref_name": TAG,
        "github.ref": f"refs/tags/{TAG}",
        "github.sha": "0" * 40,
        "github.actor": "release-bot",
        "github.repository": "llmroute/llmroute",
        "github.token": "token-for-tests",
        "secrets.GITHUB_TOKEN": "token-for-tests",
        **outputs,
    }


def expand(value: Any, values: dict[str, str], env: dict[str, str]) -> str:
    def one_expression(match: re.Match[str]) -> str:
        name = match[1]
        if name.startswith("env."):
            return env[name.removeprefix("env.")]
        return values[name]  # a KeyError here is an expression this test does not know: add it deliberately

    return EXPRESSION.sub(one_expression, str(value))


class Recorder:
    """Stand-ins for the network tools on PATH: each call is recorded; helm's other commands run the real helm."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin, self.log = bin_dir, bin_dir / "calls.log"
        bin_dir.mkdir()
        real_helm = tool("helm")
        for name in ("cosign", "gh", "helm"):
            body = f'printf "%s\\n" "{name} $*" >>"{self.log}"\n'
            if name == "helm":
                body += (
                    'case "$1" in\n'
                    "  registry) cat >/dev/null; exit 0 ;;\n"
                    f'  push) echo "Pushed: $3/llmroute:{llmroute.__version__}"; echo "Digest: {DIGEST}"; exit 0 ;;\n'
                    "esac\n"
                    f'exec "{real_helm}" "$@"\n'
                )
            path = bin_dir / name
            path.write_text(f"#!/usr/bin/env bash\nset -euo pipefail\n{body}")
            path.chmod(0o755)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A checkout as a job sees it: the repository's files, and room for the job's own dist/."""
    work = tmp_path / "work"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "dist"}:
            (work / entry.name).symlink_to(entry)
    return work


def run_step(
    workflow: dict[str, Any], job: str, step: dict[str, Any], work: Path, values: dict[str, str], path: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: str(v) for k, v in workflow.get("env", {}).items()}
    env.update({k: expand(v, values, env) for k, v in step.get("env", {}).items()})
    output = work / f"{job}.output"
    environ = {**os.environ, **env, "GITHUB_OUTPUT": str(output), "PATH": f"{path}:{os.environ['PATH']}"}
    # GitHub runs `run:` with `bash --noprofile --norc -eo pipefail {0}`
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=work,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def outputs(work: Path, job: str) -> dict[str, str]:
    lines = (work / f"{job}.output").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_verify_takes_the_version_from_the_tag_and_refuses_a_tag_that_drifts(
    release: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    job = release["jobs"]["verify"]
    assert release["on"] == {"push": {"tags": ["v*"]}}
    step = step_named(job, "version")
    proc = run_step(release, "verify", step, workspace, context(), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert outputs(workspace, "verify") == {"version": llmroute.__version__}
    assert expand(job["outputs"]["version"], {"steps.version.outputs.version": "x"}, {}) == "x"

    drifted = run_step(release, "verify", step, workspace, context(**{"github.ref_name": "v99.0.0"}), tmp_path)
    assert drifted.returncode != 0 and "versions drift" in drifted.stderr


def test_the_image_is_the_charts_default_for_the_same_tag(release: dict[str, Any]) -> None:
    job = release["jobs"]["image"]
    (build,) = steps(job, "docker/build-push-action")
    values = context(**{"needs.verify.outputs.version": llmroute.__version__, "steps.created.outputs.created": "t"})
    published = expand(build["with"]["tags"], values, release["env"])
    assert build["with"]["push"] is True and build["with"]["context"] == "."
    assert build["with"]["file"] == str(DOCKERFILE.relative_to(ROOT))

    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())["image"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert published == f"{chart_values['repository']}:{chart['appVersion']}"
    assert chart_values["tag"] == ""  # so the tag follows the chart's appVersion, which the release sets
    (container,) = one(helm_template(None), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == published


def test_the_image_is_multi_arch_with_sbom_provenance_and_labels(release: dict[str, Any]) -> None:
    job = release["jobs"]["image"]
    (build,) = steps(job, "docker/build-push-action")
    order = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    assert order.index("docker/setup-qemu-action") < order.index("docker/setup-buildx-action")
    assert order.index("docker/setup-buildx-action") < order.index("docker/build-push-action")
    assert set(expand(build["with"]["platforms"], {}, release["env"]).split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["with"]["sbom"] is True and build["with"]["provenance"] == "mode=max"
    values = context(**{"needs.verify.outputs.version": "1.2.3", "steps.created.outputs.created": "2027-01-01"})
    args = dict(line.split("=", 1) for line in expand(build["with"]["build-args"], values, {}).split())
    assert args == {"VERSION": "1.2.3", "REVISION": "0" * 40, "CREATED": "2027-01-01"}

    runtime = parse(DOCKERFILE.read_text())[-1]
    declared = {i.args.split("=")[0] for i in runtime if i.op == "ARG"}
    assert declared == set(args)
    labels = " ".join(i.args for i in runtime if i.op == "LABEL")
    for key, arg in [("version", "VERSION"), ("revision", "REVISION"), ("created", "CREATED")]:
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
    assert 'org.opencontainers.image.source="https://github.com/llmroute/llmroute"' in labels
    # nothing fetched per architecture: no downloads at all, only the multi-platform base and pip from PyPI
    instructions = [i for stage in parse(DOCKERFILE.read_text()) for i in stage]
    assert not [i for i in instructions if i.op == "ADD"]
    assert not re.search(r"\b(curl|wget|amd64|x86_64|aarch64|arm64)\b", " ".join(i.args for i in instructions))


def test_the_image_is_signed_keylessly_by_the_digest_it_was_pushed_as(
    release: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    job = release["jobs"]["image"]
    assert steps(job, "sigstore/cosign-installer")
    sign = step_named(job, "sign the image by digest (keyless)")
    recorder = Recorder(tmp_path / "bin")
    values = context(**{"steps.build.outputs.digest": DIGEST})
    proc = run_step(release, "image", sign, workspace, values, recorder.bin)
    assert proc.returncode == 0, proc.stderr
    assert recorder.calls() == [f"cosign sign --yes ghcr.io/llmroute/llmroute@{DIGEST}"]
    assert job["outputs"]["digest"] == "${{ steps.build.outputs.digest }}"


def test_the_chart_is_pushed_with_the_tags_version_and_signed(
    release: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    job = release["jobs"]["chart"]
    assert job["needs"] == ["verify", "image"]  # a chart is published only once the image it names exists
    assert steps(job, "azure/setup-helm")[0]["with"]["version"] == "${{ env.HELM_VERSION }}"
    (step,) = [s for s in job["steps"] if "run" in s]
    recorder = Recorder(tmp_path / "bin")
    values = context(**{"needs.verify.outputs.version": llmroute.__version__})
    proc = run_step(release, "chart", step, workspace, values, recorder.bin)
    assert proc.returncode == 0, proc.stderr
    version = llmroute.__version__
    calls = [c for c in recorder.calls() if c.split()[1] in {"registry", "push", "sign"}]
    assert calls == [
        "helm registry login ghcr.io --username release-bot --password-stdin",
        f"helm push dist/llmroute-{version}.tgz oci://ghcr.io/llmroute/charts",
        f"cosign sign --yes ghcr.io/llmroute/charts/llmroute@{DIGEST}",
    ]
    assert "token-for-tests" not in proc.stdout + proc.stderr
    assert (workspace / "dist" / f"llmroute-{version}.tgz").is_file()


def test_the_github_release_has_the_changelog_notes_crds_manifest_and_sbom(
    release: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    job = release["jobs"]["github-release"]
    assert set(job["needs"]) == {"verify", "image", "chart"}
    version = llmroute.__version__
    values = context(**{"needs.verify.outputs.version": version, "needs.image.outputs.digest": DIGEST})
    (sbom,) = steps(job, "anchore/sbom-action")
    assert expand(sbom["with"]["image"], values, release["env"]) == f"ghcr.io/llmroute/llmroute@{DIGEST}"
    assert sbom["with"]["format"] == "spdx-json"
    sbom_file = expand(sbom["with"]["output-file"], values, release["env"])

    recorder = Recorder(tmp_path / "bin")
    assets, create = (s for s in job["steps"] if "run" in s)
    proc = run_step(release, "github-release", assets, workspace, values, recorder.bin)
    assert proc.returncode == 0, proc.stderr
    (workspace / sbom_file).write_text("{}")  # what the SBOM action writes
    proc = run_step(release, "github-release", create, workspace, values, recorder.bin)
    assert proc.returncode == 0, proc.stderr

    (call,) = [c for c in recorder.calls() if c.startswith("gh ")]
    argv = call.split()
    assert argv[:4] == ["gh", "release", "create", TAG] and "--verify-tag" in argv
    assert ("--prerelease" in argv) == ("-" in version)
    notes = workspace / argv[argv.index("--notes-file") + 1]
    assert notes.read_text().strip() == run(["python3", "scripts/changelog.py", "notes", version]).stdout.strip()
    attached = [a for a in argv if a.startswith("dist/") and a != "dist/notes.md"]
    assert attached == ["dist/llmroute-crds.yaml", "dist/llmroute-install.yaml", f"dist/llmroute-{version}.spdx.json"]
    assert all((workspace / a).stat().st_size > 0 for a in attached)


def test_readme_installs_the_chart_the_release_publishes(release: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install in a cluster", 1)[1].split("\n## ", 1)[0]
    installs = re.findall(r"helm install llmroute (oci://\S+) --version (\S+)", section)
    assert installs == [(f"oci://{release['env']['CHART_REPOSITORY']}/llmroute", llmroute.__version__)]
    assert f"ghcr.io/llmroute/llmroute:{llmroute.__version__}" in section
    # the air-gapped path: build the image, then point the chart at it
    assert re.search(r"docker build -f operator/Dockerfile .*-t (\S+):(\S+) \.", section)
    assert "--set image.repository=" in section and "image.tag=" in section
