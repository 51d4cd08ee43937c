"""The docs hold together and say what is true of this repository:

* every relative link between the pages (and to the repository) lands on a file, and every ``#anchor`` on a heading
  of its page (GitHub's anchor rules);
* every repository path the guides name exists;
* every ``helm install``/``helm upgrade`` of the local chart renders with real ``helm template`` and the same
  ``--set`` flags (``values.schema.json`` rejects unknown keys), and the image flags reach the operator;
* every ``llmroute`` command in a shell block parses with the CLI's own parser, and those that read only the
  repository's files run and succeed;
* the names getting-started uses (namespace, route, router, policy, Secret and its keys) are the example's;
* what operations.md says of the operator Deployment (replicas, strategy) is what the chart renders.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.api.reference import heading_anchors
from llmroute.cli import _parser, main
from llmroute.core.manifests import router_name
from tests.chart.toolchain import run, tool

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = {p.name: p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md"))}
GUIDES = ("getting-started.md", "operations.md", "runbooks.md", "troubleshooting.md", "README.md")
EXAMPLE = ROOT / "examples" / "deepseek-residency"


def shell_commands(text: str) -> list[str]:
    """The commands of the ```sh blocks: continuation lines joined, comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#(?![^']*'[^']*$).*$", "", line).strip()  # a trailing comment (not inside quotes)
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def links(text: str) -> list[str]:
    """Relative link targets, outside code blocks and code spans."""
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", prose) if not t.startswith(("http://", "https://", "mailto:"))]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_relative_link_and_anchor_resolves(page: str) -> None:
    for target in links(PAGES[page]):
        path, _, anchor = target.partition("#")
        file = (DOCS / path).resolve() if path else DOCS / page
        assert file.exists(), f"{page}: {target} does not exist"
        if anchor:
            assert file.suffix == ".md", f"{page}: {target}: anchor into a non-Markdown file"
            assert anchor in heading_anchors(file.read_text(encoding="utf-8")), f"{page}: {target}: no such heading"


@pytest.mark.parametrize("page", GUIDES)
def test_every_repository_path_named_exists(page: str) -> None:
    named = set(re.findall(r"(?<![\w/.-])((?:examples|charts|tests|operator|scripts|crds)/[\w./-]*[\w])", PAGES[page]))
    assert named or page in {"troubleshooting.md", "runbooks.md"}
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == [], f"{page} names paths that do not exist"


@pytest.mark.parametrize("page", GUIDES)
def test_no_raw_html_brackets_in_prose(page: str) -> None:
    """``<route>`` outside code would be swallowed by GitHub as an HTML tag."""
    prose = re.sub(
        r"<!--.*?-->",
        "",
        re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", PAGES[page], flags=re.DOTALL)),
        flags=re.DOTALL,
    )
    assert re.findall(r"<[^>\n]*>", prose) == []


def _helm_commands() -> list[tuple[str, str]]:
    return [
        (page, c)
        for page in GUIDES
        for c in shell_commands(PAGES[page])
        if re.match(r"helm (install|upgrade) ", c) and " charts/llmroute" in c
    ]


def test_the_guides_install_and_upgrade_the_local_chart() -> None:
    pages = {page for page, _ in _helm_commands()}
    assert {"getting-started.md", "operations.md"} <= pages


def render_operator(sets: list[str]) -> dict[str, Any]:
    """The operator Deployment ``helm template`` renders with these ``--set`` values (fails if it does not render)."""
    render = [tool("helm"), "template", "llmroute", str(ROOT / "charts/llmroute"), "-n", "llmroute-system"]
    proc = run([*render, *(x for s in sets for x in ("--set", s))])
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    found: dict[str, Any] = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "llmroute-operator"
    )
    return found


@pytest.mark.parametrize(("page", "command"), _helm_commands())
def test_each_helm_command_renders_with_its_values(page: str, command: str) -> None:
    argv = shlex.split(command)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    operator = render_operator(sets)
    container = operator["spec"]["template"]["spec"]["containers"][0]
    values = dict(s.split("=", 1) for s in sets)
    if "image.repository" in values:
        assert container["image"] == f"{values['image.repository']}:{values['image.tag']}"
        assert container["imagePullPolicy"] == values["image.pullPolicy"]
    if "operator.resources.limits.memory" in values:
        assert container["resources"]["limits"]["memory"] == values["operator.resources.limits.memory"]


def test_operations_describes_the_operator_deployment_the_chart_renders() -> None:
    spec = render_operator([])["spec"]
    text = PAGES["operations.md"]
    assert f"`replicas: {spec['replicas']}`" in text, "operations.md: the operator's replica count changed"
    assert f"`strategy: {spec['strategy']['type']}`" in text, "operations.md: the operator's rollout strategy changed"


def _llmroute_commands() -> list[tuple[str, list[str]]]:
    out = []
    for page in GUIDES:
        for command in shell_commands(PAGES[page]):
            if command.startswith("llmroute "):
                out.append((page, shlex.split(command)[1:]))
    return out


def test_the_guides_use_the_cli() -> None:
    used = {argv[0] for _, argv in _llmroute_commands()}
    assert {"validate", "explain", "scan"} <= used


@pytest.mark.parametrize(
    ("page", "argv"), _llmroute_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_each_llmroute_command_parses_and_runs_on_the_repository_files(
    page: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _parser().parse_args(argv)  # argparse exits (a test failure) on an unknown subcommand or flag
    files = [a for a in argv[1:] if "/" in a and not a.startswith("-")]
    if files and all(not f.startswith("/") and (ROOT / f).exists() for f in files):  # not /tmp/<exported>.yaml
        argv = [a if a not in files else str(ROOT / a) for a in argv]
        assert main(argv) == 0, f"{page}: llmroute {' '.join(argv)}\n{capsys.readouterr()}"


def test_getting_started_names_are_the_examples() -> None:
    text = PAGES["getting-started.md"]
    route = yaml.safe_load((EXAMPLE / "route.yaml").read_text(encoding="utf-8"))
    policy = yaml.safe_load((EXAMPLE / "policy.yaml").read_text(encoding="utf-8"))
    name, namespace = route["metadata"]["name"], route["metadata"]["namespace"]
    assert f"kubectl create namespace {namespace}" in text
    assert f"llmroute/{name} " in text and f"service/{router_name(name)} " in text
    assert f"deployment/{router_name(name)} " in text and f"{router_name(name)}.{namespace}.svc" in text
    assert f"providerpolicy {policy['metadata']['name']}" in text
    refs = {
        (
            p["credentials"]["secretRef"]["name"],
            p["credentials"]["secretRef"]["namespace"],
            p["credentials"]["secretRef"]["key"],
        )
        for p in policy["spec"]["providers"]
        if "credentials" in p
    }
    ((secret, secret_ns),) = {(n, ns) for n, ns, _ in refs}
    create = next(c for c in shell_commands(text) if c.startswith("kubectl create secret generic"))
    assert f"generic {secret} -n {secret_ns}" in create
    assert set(re.findall(r"--from-literal=(\w+)=", create)) == {k for _, _, k in refs}
    models = [m["name"] for m in route["spec"]["models"]]
    assert all(f'"model": "{m}"' in text or f'model="{m}"' in text for m in models[:1])
