"""One version, one place: ``llmroute.__version__`` is the package version (pyproject reads it through setuptools),
and the chart's ``version`` and ``appVersion``, CHANGELOG.md's newest release and the versions users copy (the
README's install section, the production values example) must say the same. The release tooling keeps them so:
``scripts/changelog.py`` (the notes the release workflow publishes, the changelog's bump) and ``scripts/release.sh``
(``check``, run by the release workflow; ``bump``; ``assets``: the chart package, CRDs and install manifest attached
to the release, made here with the real helm)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

import llmroute
from tests.chart.conftest import CHART, NAMESPACE
from tests.chart.toolchain import ROOT, run, tool

pytestmark = pytest.mark.chart
RELEASE_SH = ROOT / "scripts" / "release.sh"
CHANGELOG = ROOT / "CHANGELOG.md"
VERSIONED = [
    "operator/llmroute/__init__.py",
    "charts/llmroute/Chart.yaml",
    "CHANGELOG.md",
    "README.md",
    "examples/helm/values-production.yaml",
]


def _load_changelog_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_changelog", ROOT / "scripts" / "changelog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


changelog = _load_changelog_module()


def _chart() -> dict[str, Any]:
    chart: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return chart


def release_sh(*args: str, root: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHON": sys.executable, "RELEASE_ROOT": str(root), **env}
    return subprocess.run(
        ["bash", str(RELEASE_SH), *args], capture_output=True, text=True, env=environ, timeout=60, check=False
    )


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    """The files that carry the version, laid out as in the repository."""
    for rel in VERSIONED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


# ---- the repository as it is -------------------------------------------------------------------------------------


def test_the_chart_and_changelog_carry_the_package_version() -> None:
    chart = _chart()
    assert chart["version"] == llmroute.__version__, "Chart.yaml version drifted: scripts/release.sh bump X.Y.Z"
    assert chart["appVersion"] == llmroute.__version__, "Chart.yaml appVersion drifted: scripts/release.sh bump X.Y.Z"
    assert changelog.newest(CHANGELOG.read_text()) == llmroute.__version__, "CHANGELOG.md's newest release drifted"
    assert release_sh("check", llmroute.__version__).returncode == 0


def test_pyproject_takes_the_version_from_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "llmroute.__version__"}
    # setuptools itself resolves it to the package's version (what a wheel built from here is called)
    proc = run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            "from setuptools.config.pyprojecttoml import read_configuration as r;"
            "print(r('pyproject.toml', expand=True)['project']['version'])",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == llmroute.__version__


def test_the_changelog_follows_keep_a_changelog() -> None:
    text = CHANGELOG.read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    released = headings[1:]
    assert released and all(date for _v, date in released), "every released version has a date"
    assert [d for _v, d in released] == sorted((d for _v, d in released), reverse=True), "newest first"
    assert "### Added" in changelog.notes(text, llmroute.__version__)


def test_release_script_is_shellcheck_clean() -> None:
    proc = run([tool("shellcheck"), "--severity=style", "--shell=bash", str(RELEASE_SH)])
    assert proc.returncode == 0, proc.stdout


# ---- scripts/changelog.py ----------------------------------------------------------------------------------------

SAMPLE = """# Changelog

Intro.

## [Unreleased]

### Fixed

- the thing

## [1.2.0] - 2027-01-02

### Added

- more

## [1.1.0] - 2026-12-01

- first

[1.2.0]: https://example.invalid/compare/v1.1.0...v1.2.0
"""


def test_notes_are_the_body_of_that_versions_section_only() -> None:
    assert changelog.notes(SAMPLE, "1.2.0") == "### Added\n\n- more"
    assert changelog.notes(SAMPLE, "1.1.0") == "- first"  # the link references below are not notes
    with pytest.raises(changelog.ChangelogError, match=r"no section for 1\.3\.0"):
        changelog.notes(SAMPLE, "1.3.0")
    with pytest.raises(changelog.ChangelogError, match="empty"):
        changelog.notes(SAMPLE.replace("### Added\n\n- more\n", ""), "1.2.0")


def test_newest_skips_unreleased() -> None:
    assert changelog.newest(SAMPLE) == "1.2.0"
    with pytest.raises(changelog.ChangelogError):
        changelog.newest("# Changelog\n\n## [Unreleased]\n\n- x\n")


def test_release_moves_the_unreleased_notes_into_a_dated_section() -> None:
    out = changelog.release(SAMPLE, "1.3.0", "2027-02-03")
    assert changelog.newest(out) == "1.3.0"
    assert changelog.notes(out, "1.3.0") == "### Fixed\n\n- the thing"
    assert re.search(r"^## \[Unreleased\]\n\n## \[1\.3\.0\] - 2027-02-03\n", out, re.MULTILINE)
    assert changelog.notes(out, "1.2.0") == changelog.notes(SAMPLE, "1.2.0")  # older sections untouched
    assert out.endswith("[1.2.0]: https://example.invalid/compare/v1.1.0...v1.2.0\n")
    for version, date, error in [
        ("1.2.0", "2027-02-03", "already"),
        ("v1.3", "2027-02-03", "not a release"),
        ("1.3.0", "03/02/2027", "not a date"),
    ]:
        with pytest.raises(changelog.ChangelogError, match=error):
            changelog.release(SAMPLE, version, date)
    with pytest.raises(changelog.ChangelogError, match="nothing to release"):
        changelog.release(out, "1.4.0", "2027-02-04")


def test_notes_command_prints_the_section_and_fails_on_a_missing_one() -> None:
    ok = run([sys.executable, "scripts/changelog.py", "notes", llmroute.__version__])
    assert ok.returncode == 0 and ok.stdout.strip() == changelog.notes(CHANGELOG.read_text(), llmroute.__version__)
    missing = run([sys.executable, "scripts/changelog.py", "notes", "99.0.0"])
    assert missing.returncode == 1 and "no section for 99.0.0" in missing.stderr and missing.stdout == ""


# ---- scripts/release.sh ------------------------------------------------------------------------------------------


def _install_section(readme: Path) -> str:
    return readme.read_text().split("## Install in a cluster", 1)[1].split("\n## ", 1)[0]


def test_users_are_told_to_install_the_current_version() -> None:
    install = _install_section(ROOT / "README.md")
    pins = re.findall(r"(?:--version |llmroute:|VERSION=|image\.tag=)(\d+\.\d+\.\d+\S*)", install)
    assert len(pins) >= 4 and set(pins) == {llmroute.__version__}
    production = yaml.safe_load((ROOT / "examples/helm/values-production.yaml").read_text())
    assert production["image"]["tag"] == llmroute.__version__


def test_check_names_each_place_that_drifts(repo_copy: Path) -> None:
    chart = repo_copy / "charts/llmroute/Chart.yaml"
    chart.write_text(re.sub(r"^appVersion: .*$", 'appVersion: "9.9.9"', chart.read_text(), flags=re.MULTILINE))
    proc = release_sh("check", llmroute.__version__, root=repo_copy)
    assert proc.returncode == 1
    assert f"chart.appVersion is 9.9.9, want {llmroute.__version__}" in proc.stderr
    assert "package is" not in proc.stderr and "chart.version is" not in proc.stderr
    readme = repo_copy / "README.md"
    readme.write_text(readme.read_text().replace(f"VERSION={llmroute.__version__}", "VERSION=0.0.1", 1))
    proc = release_sh("check", llmroute.__version__, root=repo_copy)
    assert f"README is 0.0.1 {llmroute.__version__}, want {llmroute.__version__}" in proc.stderr
    assert "README.chart is" not in proc.stderr
    assert release_sh("check", "9.9.9", root=repo_copy).returncode == 1  # the other three still say the old one


def _set_unreleased(changelog_path: Path, notes: str) -> None:
    """The repository copy's Unreleased section holds exactly ``notes`` (whatever the repository's holds now)."""
    text = changelog_path.read_text()
    start = text.index("## [Unreleased]\n") + len("## [Unreleased]\n")
    end = text.index("\n## [", start) + 1
    changelog_path.write_text(text[:start] + (f"\n{notes}\n" if notes else "") + "\n" + text[end:])


def test_bump_sets_every_place_and_dates_the_changelog(repo_copy: Path) -> None:
    cl = repo_copy / "CHANGELOG.md"
    _set_unreleased(cl, "### Fixed\n\n- a fix")
    proc = release_sh("bump", "7.8.9-rc.1", root=repo_copy, RELEASE_DATE="2027-03-04")
    assert proc.returncode == 0, proc.stderr
    init = (repo_copy / "operator/llmroute/__init__.py").read_text()
    assert '__version__ = "7.8.9-rc.1"' in init and init.count("__version__") == 1
    chart = yaml.safe_load((repo_copy / "charts/llmroute/Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == ("7.8.9-rc.1", "7.8.9-rc.1")
    assert chart["name"] == "llmroute" and chart["kubeVersion"] == _chart()["kubeVersion"]  # nothing else changed
    text = cl.read_text()
    assert "## [7.8.9-rc.1] - 2027-03-04" in text and changelog.notes(text, "7.8.9-rc.1") == "### Fixed\n\n- a fix"
    readme, install = (repo_copy / "README.md").read_text(), _install_section(repo_copy / "README.md")
    assert "llmroute --version 7.8.9-rc.1 " in install and llmroute.__version__ not in install
    assert readme.replace("7.8.9-rc.1", llmroute.__version__) == (ROOT / "README.md").read_text()  # only pins moved
    production = yaml.safe_load((repo_copy / "examples/helm/values-production.yaml").read_text())
    assert production["image"]["tag"] == "7.8.9-rc.1"
    assert release_sh("check", "7.8.9-rc.1", root=repo_copy).returncode == 0


def test_bump_refuses_a_bad_version_and_an_empty_release(repo_copy: Path) -> None:
    _set_unreleased(repo_copy / "CHANGELOG.md", "")
    before = {rel: (repo_copy / rel).read_text() for rel in VERSIONED}
    bad = release_sh("bump", "v2", root=repo_copy)
    assert bad.returncode == 1 and "not a release version" in bad.stderr
    empty = release_sh("bump", "2.0.0", root=repo_copy)  # the Unreleased section is empty
    assert empty.returncode == 1 and "nothing to release" in empty.stderr
    assert {rel: (repo_copy / rel).read_text() for rel in VERSIONED} == before  # nothing half-written


def test_assets_are_the_versioned_chart_the_crds_and_a_valid_install_manifest(tmp_path: Path) -> None:
    version = llmroute.__version__
    proc = release_sh("assets", version, str(tmp_path), HELM=tool("helm"))
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(tmp_path / f"llmroute-{version}.tgz") as tgz:
        member = tgz.extractfile("llmroute/Chart.yaml")
        assert member is not None
        packaged = yaml.safe_load(member.read())
    assert (packaged["version"], packaged["appVersion"]) == (version, version)

    crds = [d for d in yaml.safe_load_all((tmp_path / "llmroute-crds.yaml").read_text()) if d]
    shipped = [yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))]
    assert crds == shipped and len(crds) >= 3

    install = [d for d in yaml.safe_load_all((tmp_path / "llmroute-install.yaml").read_text()) if d]
    assert install[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    assert [d for d in install if d["kind"] == "CustomResourceDefinition"] == shipped
    for doc in install:
        try:
            kubernetes_validate.validate(doc, "1.35", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    namespaced = [d for d in install if d["kind"] in {"Deployment", "Service", "ServiceAccount", "ConfigMap"}]
    assert namespaced and all(d["metadata"].get("namespace") == NAMESPACE for d in namespaced)
    (deployment,) = [d for d in install if d["kind"] == "Deployment"]
    images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert images == {f"ghcr.io/llmroute/llmroute:{version}"}


def test_assets_refuse_a_version_the_repository_does_not_carry(tmp_path: Path) -> None:
    proc = release_sh("assets", "99.0.0", str(tmp_path / "out"), HELM=tool("helm"))
    assert proc.returncode == 1 and "versions drift" in proc.stderr
    assert not (tmp_path / "out").exists()
