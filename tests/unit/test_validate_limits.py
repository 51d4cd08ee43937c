"""Hostile YAML against the manifest reader (:mod:`llmroute.manifest_yaml`) and the loader (:mod:`llmroute.documents`).

Each case is one clear error naming file, document and (where there is one) field, within a time bound, with both
parsers (libyaml and pure Python). Also: what stays as Kubernetes reads it (times and keys as strings, merge keys),
objects as the API server returns them still load, and a Secret's values never appear in an error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.documents import load_all
from llmroute.manifest_yaml import MAX_DEPTH, MAX_DOCUMENTS, MAX_FILE_BYTES, MAX_VALUES, parse_documents, read_documents
from tests.conftest import EXAMPLE, example_doc

pytestmark = pytest.mark.unit
PARSERS = [pytest.param(False, id="libyaml"), pytest.param(True, id="pure-python")]
BOUND_S = 5.0  # CPU seconds (the machine is shared); each case takes well under a second


def _bomb(levels: int) -> str:
    lines = ["l0: &l0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _merge_bomb(levels: int) -> str:
    lines = ["m0: &m0 {k: 1}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


HOSTILE = [
    pytest.param(_bomb(9), " (document 1): l4: more than 100000 values once YAML aliases are expanded", id="laughs"),
    pytest.param(
        _merge_bomb(40), " (document 1): more than 100000 values once YAML aliases are expanded", id="merge-key-laughs"
    ),
    pytest.param("a: &a [1, *a]\n", " (document 1): a[1]: an alias refers to a node that contains it", id="recursive"),
    pytest.param("[" * 100_000 + "]" * 100_000, " (document 1): invalid YAML: line 1, column ", id="deep-flow"),
    pytest.param(
        "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 300)),
        f" (document 1): nested more than {MAX_DEPTH} levels deep (line {MAX_DEPTH})",
        id="deep-block",
    ),
    pytest.param(
        "kind: LLMRoute\nmetadata: {name: x, name: y}\n",
        ' (document 1, LLMRoute x): metadata.name: duplicate key "name" (line 2)',
        id="duplicate-key",
    ),
    pytest.param(
        "a: {b: [{c: 1, c: 2}]}\n", ' (document 1): a.b[0].c: duplicate key "c" (line 1)', id="duplicate-key-nested"
    ),
    pytest.param(
        "? [a, b]\n: 1\n",
        " (document 1): a mapping key must be a string, not a list or mapping (line 1)",
        id="list-as-key",
    ),
    pytest.param("a: !!binary aGVsbG8=\n", " (document 1): a: the YAML tag !!binary is not allowed", id="binary-tag"),
    pytest.param(
        "a: !!python/object:os.system x\n",
        " (document 1): a: the YAML tag !!python/object:os.system",
        id="python-tag",
    ),
    pytest.param(
        "a: [1, {b: !!int abc}]\n", " (document 1): a[1].b: the value is not a valid !!int (line 1)", id="bad-int-tag"
    ),
    pytest.param("a: !!map abc\n", " (document 1): invalid YAML: expected a mapping node", id="scalar-as-map"),
    pytest.param(
        "a:\n\tb: 1\n",
        " (document 1): invalid YAML: line 2, column 1: a tab character where YAML needs spaces",
        id="tab",
    ),
    pytest.param("a: [1, 2\n", " (document 1): invalid YAML: line ", id="unclosed"),
    pytest.param("a: *nowhere\n", " (document 1): invalid YAML: line 1, column 4: found undefined alias", id="alias"),
    pytest.param(
        "{}\n---\n" * (MAX_DOCUMENTS + 1), f": more than {MAX_DOCUMENTS} documents in one file", id="too-many-documents"
    ),
]


@pytest.mark.parametrize("pure", PARSERS)
@pytest.mark.parametrize(("text", "message"), HOSTILE)
def test_hostile_yaml_is_one_clear_error_in_bounded_time(text: str, message: str, pure: bool) -> None:
    start = time.process_time()
    _, errors = parse_documents(text, "f.yaml", pure_python=pure)
    assert time.process_time() - start < BOUND_S
    assert len(errors) == 1, errors
    assert str(errors[0]).startswith(f"f.yaml{message}"), str(errors[0])


@pytest.mark.parametrize("pure", PARSERS)
def test_a_bad_document_does_not_hide_the_next_ones(pure: bool) -> None:
    text = "a: 1\n---\nb: *x\n---\nc: {d: 1, d: 2}\n---\n\n---\ne: !!set {x}\n---\nf: 2\n---\ng: [\n---\nh: 3\n"
    docs, errors = parse_documents(text, "f.yaml", pure_python=pure)
    assert [(d.index, d.value) for d in docs] == [(0, {"a": 1}), (5, {"f": 2})]
    assert [e.index for e in errors] == [1, 2, 4, 6]  # the syntax error in document 7 ends the file


@pytest.mark.parametrize("pure", PARSERS)
def test_values_as_kubernetes_reads_them(pure: bool) -> None:
    text = (
        "\ufeffat: 2026-03-01T15:00:00Z\non: 2026-03-01\n1: one\ntrue: yes\nbase: &b {x: 1}\nmerged: {<<: *b, y: 2}\n"
    )
    docs, errors = parse_documents(text, "f.yaml", pure_python=pure)
    assert errors == []
    assert docs[0].value == {
        "at": "2026-03-01T15:00:00Z",
        "on": "2026-03-01",
        "1": "one",
        "true": True,
        "base": {"x": 1},
        "merged": {"x": 1, "y": 2},
    }


def test_values_up_to_the_limit_are_read() -> None:
    per_line = 9  # a key, a list and its items
    text = "".join(f"k{i}: [" + ", ".join(["v"] * (per_line - 2)) + "]\n" for i in range(MAX_VALUES // per_line - 1))
    docs, errors = parse_documents(text, "f.yaml")
    assert errors == [] and len(docs[0].value) == MAX_VALUES // per_line - 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"a: " + b"x" * MAX_FILE_BYTES, "file larger than 2 MiB; split it", id="too-large"),
        pytest.param(bytes(range(256)), "not a text file (a NUL byte at offset 0)", id="binary"),
        pytest.param("name: café\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 9)", id="latin-1"),
        pytest.param(b"a: \x07\n", "invalid YAML: ", id="control-character"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(content)
    docs, errors = read_documents(path)
    assert docs == [] and len(errors) == 1
    assert str(errors[0]).startswith(f"{path}") and message in str(errors[0])


def _write(tmp: Path, *docs: Any) -> Path:
    path = tmp / "m.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_objects_as_the_api_server_returns_them_still_load(tmp_path: Path) -> None:
    route = example_doc("route")
    route["metadata"].update(
        uid="0a1b",
        resourceVersion="42",
        generation=3,
        creationTimestamp="2026-03-01T15:00:00Z",
        finalizers=["llmroute.io/cleanup"],
        managedFields=[{"manager": "kubectl"}],
    )
    route["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ok"}], "modelNames": "a"}
    bundle, errors = load_all([_write(tmp_path, example_doc("policy"), route)])
    assert errors == [] and len(bundle.routes) == 1


def test_status_keys_outside_the_crd_schema_are_unknown_fields(tmp_path: Path) -> None:
    """The status models ignore what they do not know (the operator reads status back); the CRD does not."""
    route = example_doc("route")
    route["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ok", "sevrity": "x"}], "foo": 1}
    _, errors = load_all([_write(tmp_path, route)])
    assert [str(e.error) for e in errors] == [
        'unknown field "status.conditions[0].sevrity"',
        'unknown field "status.foo"',
    ]


def test_metadata_keys_outside_object_meta_are_unknown_fields(tmp_path: Path) -> None:
    route = example_doc("route")
    route["metadata"]["lables"] = {"team": "a"}
    _, errors = load_all([_write(tmp_path, route)])
    assert [str(e).split("): ")[1] for e in errors] == ['unknown field "metadata.lables" (line 6)']


def test_secret_problems_name_keys_never_values(tmp_path: Path) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "keys", "namespace": "apps", "labelz": {}},
        "data": {"deepseek": "sk-not-base64!", "n": 7},
        "stringData": ["sk-in-a-list"],
        "extra": "sk-extra",
    }
    _, errors = load_all([_write(tmp_path, secret)])
    text = "\n".join(str(e) for e in errors)
    assert [e.error.path for e in errors] == ["extra", "metadata.labelz", "data.deepseek", "data.n", "stringData"]
    assert "(document 1, Secret apps/keys)" in text and "sk-" not in text


def test_duplicate_objects_name_the_first(tmp_path: Path) -> None:
    secrets, route = (EXAMPLE / "secrets.yaml").read_text(), (EXAMPLE / "route.yaml").read_text()
    (tmp_path / "a.yaml").write_text(secrets)
    b = route + "---\n" + route + "---\n" + secrets
    (tmp_path / "b.yaml").write_text(b)
    names = [i + 1 for i, line in enumerate(b.splitlines()) if line.startswith("  name: ")]  # metadata.name lines
    _, errors = load_all([tmp_path])
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'b.yaml'} (document 2, LLMRoute apps/deepseek): metadata.name: duplicate LLMRoute apps/deepseek "
        f"(first in {tmp_path / 'b.yaml'} (document 1)) (line {names[1]})",
        f"{tmp_path / 'b.yaml'} (document 3, Secret llmroute-system/llm-provider-keys): metadata.name: duplicate "
        f"Secret llmroute-system/llm-provider-keys (first in {tmp_path / 'a.yaml'} (document 1)) (line {names[2]})",
    ]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_is_never_read() -> None:
    start = time.process_time()
    _, errors = load_all(["/dev/zero"])
    assert [str(e) for e in errors] == ["/dev/zero: not a regular file or folder"]
    assert time.process_time() - start < BOUND_S
