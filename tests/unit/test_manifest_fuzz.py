"""Fuzzing the manifest loaders: whatever a file holds, the answer is errors or a bundle, never a traceback.

Inputs are derived from the examples' valid manifests (``examples/*/*.yaml``): keys deleted, renamed or added,
values retyped or replaced by random ones (structural mutations, still YAML); the YAML text truncated, spliced with
YAML syntax or random characters; random bytes. Each goes through every loader path users have:

* ``llmroute validate`` (``main()``): exit 0 or 1, and every line names the file, the document and (for valid YAML)
  the field, as ``llmroute: error: FILE (document N[, Kind name]): FIELD: problem (line L)``; an unknown key's line
  is the one it is written on;
* ``llmroute explain`` and local mode (:func:`llmroute.documents.load`) and the router's ``--config`` YAML mode
  (:func:`llmroute.router.config_source.load_snapshot`): a result or the documented error
  (:class:`llmroute.errors.InputError`; for the router :class:`llmroute.errors.LLMRouteError`) and nothing else;

each within :data:`BOUND_S`. The default run is derandomized (the same examples every run) and takes a few seconds;
``LLMROUTE_FUZZ_EXAMPLES=5000 pytest tests/unit/test_manifest_fuzz.py`` runs that many examples per test with random
seeds and the local example database (``.hypothesis/``), so a failure found once is replayed first.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from llmroute.cli import main
from llmroute.documents import load, load_all
from llmroute.errors import InputError, LLMRouteError, UnknownField
from llmroute.router.config_source import load_snapshot
from tests.conftest import ROOT
from tests.figures import record

pytestmark = pytest.mark.unit

EXAMPLES_ENV = "LLMROUTE_FUZZ_EXAMPLES"
SLOW = EXAMPLES_ENV in os.environ
FUZZ = settings(
    max_examples=int(os.environ.get(EXAMPLES_ENV, 150)),
    deadline=None,  # a shared 2-core machine stalls at random; the bound below is on the loaders' own time
    derandomize=not SLOW,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples") if SLOW else None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
BOUND_S = 5.0
"""CPU seconds one loader call may take on any input (files are at most a few KB here; the loaders' limits keep
large ones bounded, see test_validate_limits.py)."""

SEEDS: list[tuple[str, list[Any]]] = [
    (f"{p.parent.name}/{p.name}", [d for d in yaml.safe_load_all(p.read_text()) if d is not None])
    for p in sorted((ROOT / "examples").glob("*/*.yaml"))
    if p.parent.name != "helm"
]
BUNDLES: list[list[Any]] = [
    [d for name, docs in SEEDS if name.startswith(folder) for d in docs]
    for folder in sorted({name.split("/")[0] for name, _ in SEEDS})
]
"""Each example folder as one multi-document file: a route, its policy, pools and Secrets."""

_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=24)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=6,
)
_SYNTAX = [
    "\t",
    ": ",
    "- ",
    "---\n",
    "...\n",
    "&a ",
    "*a",
    "*b",
    "<<: ",
    "? ",
    "{",
    "}",
    "[",
    "]",
    '"',
    "'",
    "|\n",
    ">-\n",
    "!!binary ",
    "!!python/object:os.system ",
    "!foo ",
    "%YAML 1.1\n",
    "#",
    "\n",
    "\x00",
    "\ufeff",
    "\x85",
    "\ud7ff",
    "yes",
    "~",
    ".nan",
    "0x1F",
    "1e999",
    "2026-03-01",
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path in a document (the root included as ``()``)."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _mutate(docs: list[Any], data: st.DataObject) -> None:
    """One structural mutation somewhere in ``docs``: delete, rename, retype or add a key, or drop a document."""
    index = data.draw(st.integers(0, len(docs) - 1), label="document")
    path = data.draw(st.sampled_from(_paths(docs[index])), label="path")
    op = data.draw(st.sampled_from(["delete", "rename", "retype", "add", "drop-document", "duplicate-document"]))
    if op == "drop-document" or (not path and op in ("delete", "rename")):
        docs.pop(index)
        return
    if op == "duplicate-document":
        docs.insert(index, copy.deepcopy(docs[index]))
        return
    target = docs[index] if not path else _parent(docs[index], path)[path[-1]]
    if op == "add":
        if isinstance(target, dict):
            target[data.draw(st.text(min_size=1, max_size=12), label="key")] = data.draw(_values, label="value")
        elif isinstance(target, list):
            target.append(data.draw(_values, label="item"))
        return
    if not path:  # retype the whole document
        docs[index] = data.draw(_values, label="document value")
        return
    parent, key = _parent(docs[index], path), path[-1]
    if op == "delete":
        del parent[key]
    elif op == "retype":
        parent[key] = data.draw(_values, label="value")
    elif isinstance(parent, dict):  # rename: a typo of the key
        parent[f"{key}{data.draw(st.sampled_from(['z', 's', '_', 'X', ' ']))}"] = parent.pop(key)


def _text_mutation(text: str, data: st.DataObject) -> str:
    op = data.draw(st.sampled_from(["truncate", "splice-syntax", "splice-text", "replace-line"]))
    at = data.draw(st.integers(0, len(text)), label="offset")
    if op == "truncate":
        return text[:at]
    if op == "splice-syntax":
        return text[:at] + data.draw(st.sampled_from(_SYNTAX)) + text[at:]
    if op == "splice-text":
        return text[:at] + data.draw(st.text(max_size=12)) + text[at:]
    lines = text.splitlines(keepends=True)
    if lines:
        lines[at % len(lines)] = data.draw(st.text(max_size=30)) + "\n"
    return "".join(lines)


LINE = re.compile(r"^llmroute: error: (?P<file>[^ ]+)(?P<doc> \(document (?P<n>\d+)(?:, [^)]+)?\))?: (?P<what>.+)$")
SUMMARY = re.compile(r"^llmroute: \d+ problems? in \d+ files?$")


def _timed(fn: Callable[[], Any]) -> Any:
    start = time.process_time()  # CPU time: the machine is shared, a wall-clock stall is not the loader's
    try:
        return fn()
    finally:
        assert time.process_time() - start < BOUND_S, "a loader took too long"


def _validate(path: Path) -> tuple[int, list[str]]:
    """``llmroute validate path``: its exit code and stderr lines (the real CLI entry point)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = _timed(lambda: main(["validate", str(path)]))
    return code, err.getvalue().splitlines()


CHECKED: Counter[str] = Counter()
"""Manifests put through every loader in this module's run (their figure for docs/reliability.md)."""


@pytest.fixture(scope="module", autouse=True)
def _figures(request: pytest.FixtureRequest) -> Iterator[None]:
    failed = request.session.testsfailed
    yield
    if CHECKED and request.session.testsfailed == failed:
        record("manifest-fuzz", {"manifests": CHECKED["manifests"], "invalid": CHECKED["invalid"], "tracebacks": 0})


def _check_every_loader(path: Path, well_formed: bool) -> None:
    code, lines = _validate(path)
    CHECKED["manifests"] += 1
    CHECKED["invalid"] += code == 1
    assert code in (0, 1), lines
    assert (code == 1) == bool(lines)
    for line in lines[:-1]:
        m = LINE.match(line)
        assert m is not None and m["file"] == str(path), line
        if well_formed:  # valid YAML: every problem is in a document (and, with few exceptions, at a field)
            assert m["doc"], line
    if lines:
        assert SUMMARY.match(lines[-1]), lines[-1]
    _, errors = _timed(lambda: load_all([path]))
    if well_formed:
        text = path.read_text().splitlines()
        for e in errors:
            assert e.index is not None, str(e)
            assert e.error.path or e.error.message.startswith("a document must be a mapping"), str(e)
            key = e.error.path.rpartition(".")[2]
            if isinstance(e.error, UnknownField) and key.isascii() and key.isalnum():  # written as is, unquoted
                assert e.line is not None and re.search(rf"['\"]?{key}['\"]?:", text[e.line - 1]), str(e)
    with contextlib.suppress(InputError):
        _timed(lambda: load([path]))
    with contextlib.suppress(LLMRouteError):  # the router's own type: InputError, or ConfigVersionError
        _timed(lambda: load_snapshot([str(path)]))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "manifests.yaml"


@FUZZ
@given(data=st.data())
def test_structural_mutations(manifest: Path, data: st.DataObject) -> None:
    docs = copy.deepcopy(data.draw(st.sampled_from(BUNDLES), label="example"))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        if docs:
            _mutate(docs, data)
    manifest.write_text(yaml.safe_dump_all(docs, sort_keys=data.draw(st.booleans(), label="sorted")))
    _check_every_loader(manifest, well_formed=True)


@FUZZ
@given(data=st.data())
def test_text_mutations(manifest: Path, data: st.DataObject) -> None:
    _, docs = data.draw(st.sampled_from(SEEDS), label="example")
    text = yaml.safe_dump_all(docs, sort_keys=False)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        text = _text_mutation(text, data)
    manifest.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    _check_every_loader(manifest, well_formed=False)


@FUZZ
@given(content=st.binary(max_size=512) | st.binary(max_size=64).map(lambda b: b"apiVersion: v1\nkind: Secret\n" + b))
def test_random_bytes(manifest: Path, content: bytes) -> None:
    manifest.write_bytes(content)
    _check_every_loader(manifest, well_formed=False)


def test_the_seeds_are_valid() -> None:
    """The mutations start from manifests that load cleanly (else the fuzz would test nothing but errors)."""
    assert len(SEEDS) >= 8 and len(BUNDLES) >= 2
    for folder in {name.split("/")[0] for name, _ in SEEDS}:
        assert load_all([ROOT / "examples" / folder])[1] == []
