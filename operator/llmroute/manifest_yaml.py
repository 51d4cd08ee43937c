"""Reading YAML manifest files with bounds and the strictness of the API server, before any model sees them.

Used by :mod:`llmroute.documents` (``llmroute validate``/``explain``, local mode, the router's ``--config``
YAML mode). PyYAML's ``safe_load`` alone is not enough for input a user (or an attacker) hands us:

* it reads files of any size, expands aliases without limit (a "billion laughs" document of a few hundred bytes
  becomes billions of values once validated or serialised) and composes nesting recursively (a deep ``[[[[...``
  ends in a ``RecursionError``);
* a duplicate key in a mapping silently keeps the last value (YAML 1.1 parsers allow it; the API server's strict
  decoding does not);
* unquoted times become ``datetime`` objects and non-string keys stay ints, where Kubernetes sees strings;
* tags build ``bytes``, sets or (with unsafe loaders) objects, none of which a Kubernetes object can hold.

Here each file is read with limits (:data:`MAX_FILE_BYTES`, :data:`MAX_DOCUMENTS`, :data:`MAX_DEPTH`,
:data:`MAX_VALUES`), must be UTF-8 text, and each document is composed, checked (duplicate keys, keys that are
not scalars, tags beyond JSON's types, alias expansion) and only then constructed. libyaml scans and parses where
PyYAML has it (3-6x faster than the pure-Python parser, which remains the fallback). Every problem is a
:class:`llmroute.errors.LoadError` naming the file, the document and, where there is one, the field. A syntax error
ends the file (YAML cannot resynchronise); a problem confined to one document skips that document only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from llmroute.errors import FieldError, LoadError

MAX_FILE_BYTES = 2 * 1024 * 1024
"""Largest manifest file read: the API server stores objects up to ~1.5 MiB. Reading the worst 2 MiB file
(hundreds of thousands of values) takes a few seconds."""
MAX_DOCUMENTS = 1000
"""Most documents read from one file."""
MAX_DEPTH = 100
"""Deepest nesting of mappings and lists in a document (llmroute's own schemas need about 10)."""
MAX_VALUES = 100_000
"""Most values (scalars, mappings, lists) a document may hold once its aliases are expanded."""

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map"))
"""Tags a manifest may carry: JSON's types. ``!!binary``, ``!!set``, ``!!timestamp`` or custom tags are errors."""


@dataclass(frozen=True)
class Document:
    """One non-empty document of a file: its zero-based index in the file and its plain Python value."""

    index: int
    value: Any
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    """Line (1-based) of each field path (``spec.models[0].backends``) as written; aliased values under the first."""


class _Rejected(Exception):
    """A problem confined to the document being read; ``error`` names the field when there is one."""

    def __init__(self, error: FieldError, line: int | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.line = line
        self.what: str | None = None


class _Bounded(Composer, SafeConstructor, Resolver):
    """PyYAML's composer with bounded nesting, and Kubernetes' view of scalars (times stay strings)."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }
    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event: yaml.Event = self.peek_event()  # type: ignore[attr-defined]
                line = event.start_mark.line + 1 if event.start_mark else None
                raise _Rejected(FieldError("", f"nested more than {MAX_DEPTH} levels deep"), line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _PyLoader(_Bounded, Reader, Scanner, Parser):
    """The pure-Python reader, where PyYAML was built without libyaml."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        # Bounded here, not only when composing: PyYAML's scanner is quadratic in flow depth ("[[[[...").
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested more than {MAX_DEPTH} levels deep", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)


_Loader: type[_PyLoader] = _PyLoader
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(_Bounded, CParser):
        """libyaml scans and parses (3-6x faster, nesting capped at 1000); Python composes, checks, constructs."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    _Loader = _CLoader  # type: ignore[assignment]


def read_documents(path: Path) -> tuple[list[Document], list[LoadError]]:
    """The non-empty documents of ``path`` and every problem found reading them (file-level ones have no index)."""
    try:
        text = _text(path)
    except _Rejected as exc:
        return [], [LoadError(str(path), None, exc.error)]
    return parse_documents(text, str(path))


def parse_documents(text: str, source: str, pure_python: bool = False) -> tuple[list[Document], list[LoadError]]:
    """:func:`read_documents` for text already read; ``pure_python`` parses without libyaml (tests both paths)."""
    docs: list[Document] = []
    errors: list[LoadError] = []
    for index, item in _parse(_PyLoader(text) if pure_python else _Loader(text), text):
        if isinstance(item, _Rejected):
            errors.append(LoadError(source, index, item.error, item.what, item.line))
        elif item is not None:
            docs.append(item)
    return docs, errors


def _text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _Rejected(FieldError("", f"cannot read: {exc.strerror or exc}")) from None
    if len(data) > MAX_FILE_BYTES:
        raise _Rejected(FieldError("", f"file larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; split it"))
    nul = data.find(b"\0")
    if nul >= 0:
        raise _Rejected(FieldError("", f"not a text file (a NUL byte at offset {nul})"))
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        bad = f"byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise _Rejected(FieldError("", f"not UTF-8 text ({bad})")) from None


def _parse(loader: _Bounded, text: str) -> Iterator[tuple[int | None, Document | _Rejected | None]]:
    """(document index, document) in turn: None for an empty one, a :class:`_Rejected` for a bad one.

    A syntax error, too many documents or a failure nothing else caught ends the stream.
    """
    index = 0
    try:
        while loader.check_node():
            if index == MAX_DOCUMENTS:
                yield None, _Rejected(FieldError("", f"more than {MAX_DOCUMENTS} documents in one file; split it"))
                return
            node: Node | None = None
            try:
                node = loader.get_node()
                lines: dict[str, int] = {}
                value = None if node is None else _construct(loader, _checked(node, lines))
            except (_Rejected, ComposerError) as exc:  # composing stops mid-document, the parser is fine
                rejected = exc if isinstance(exc, _Rejected) else _Rejected(FieldError("", _yaml_problem(exc, text)))
                rejected.what = None if node is None else _what(node)
                yield index, rejected
                _skip_document(loader)
            else:
                yield index, None if value is None else Document(index, value, lines)
            index += 1
    except yaml.YAMLError as exc:
        yield index, _Rejected(FieldError("", _yaml_problem(exc, text)))
    except RecursionError:  # the depth bound makes this unreachable; never a traceback if it is not
        yield index, _Rejected(FieldError("", "nested too deeply"))
    finally:
        parser: Any = loader  # the parser half (Python or libyaml) has no common type
        parser.dispose()


def _construct(loader: _Bounded, node: Node) -> Any:
    """The document's value; a value its tag cannot hold (``!!int abc``) rejects the document, not the file."""
    try:
        return loader.construct_document(node)
    except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        loader.constructed_objects, loader.recursive_objects, loader.state_generators = {}, {}, []
        culprit = _unconstructible(node)
        if culprit is not None:
            raise _Rejected(*culprit) from None
        problem = getattr(exc, "problem", None) or "a value does not fit its YAML tag"
        raise _Rejected(FieldError("", f"invalid YAML: {problem}")) from None


def _unconstructible(root: Node) -> tuple[FieldError, int] | None:
    """The first value its tag cannot hold (``!!int abc``), found after construction failed; each node once."""
    stack: list[tuple[Node, str]] = [(root, "")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            try:
                SafeConstructor().construct_object(node)
            except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
                return FieldError(path, f"the value is not a valid {_short(node.tag)}"), node.start_mark.line + 1
        elif isinstance(node, SequenceNode):
            stack += [(item, f"{path}[{i}]") for i, item in reversed(list(enumerate(node.value)))]
        elif isinstance(node, MappingNode):
            stack += [(v, f"{path}.{k.value}" if path else str(k.value)) for k, v in reversed(node.value)]
    return None


def _skip_document(loader: _Bounded) -> None:
    """After a rejected document, move the event stream to the start of the next one."""
    loader._depth = 0
    loader.anchors = {}
    events: Any = loader  # the parser half (Python or libyaml) has no common type
    while not events.check_event(yaml.DocumentStartEvent, yaml.StreamEndEvent):
        events.get_event()


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = str(getattr(exc, "problem", None) or str(exc).splitlines()[0])
    if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        problem = "a tab character where YAML needs spaces (indent with spaces)"
    return f"invalid YAML: {where}{problem}"


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line + 1)
    return lines[line][column : column + 1] if line < len(lines) else ""


def _checked(root: Node, lines: dict[str, int]) -> Node:
    """``root`` after the checks the constructor does not make; mapping keys become strings as written.

    ``lines`` receives the line of each field path.
    """
    _walk(root, "", _Walk({}, set(), lines))
    return root


@dataclass(frozen=True)
class _Walk:
    sizes: dict[int, int]
    open_nodes: set[int]
    lines: dict[str, int]


def _walk(node: Node, path: str, w: _Walk) -> int:
    """The number of values under ``node`` with aliases expanded; checks keys on the way (each node once)."""
    sizes, open_nodes = w.sizes, w.open_nodes
    key = id(node)
    if key in sizes:
        return sizes[key]
    line = node.start_mark.line + 1
    if key in open_nodes:
        raise _Rejected(FieldError(path, "an alias refers to a node that contains it (a recursive structure)"), line)
    open_nodes.add(key)
    if node.tag not in _PLAIN_TAGS:
        allowed = "only strings, numbers, booleans, null, lists and mappings"
        raise _Rejected(
            FieldError(path, f"the YAML tag {_short(node.tag)} is not allowed in a manifest ({allowed})"), line
        )
    size = 1
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            w.lines[f"{path}[{i}]"] = item.start_mark.line + 1
            size += _walk(item, f"{path}[{i}]", w)
            _bound(size, path, line)
    elif isinstance(node, MappingNode):
        seen: set[str] = set()
        for key_node, value in node.value:
            name = _key(key_node, path, seen)
            child = f"{path}.{name}" if path else name
            w.lines[child] = key_node.start_mark.line + 1
            size += 1 + _walk(value, child, w)
            _bound(size, path, line)
    open_nodes.discard(key)
    sizes[key] = size
    return size


def _key(node: Node, path: str, seen: set[str]) -> str:
    """The key as Kubernetes reads it (the text as written), rejecting duplicates and non-scalar keys."""
    if not isinstance(node, ScalarNode):
        raise _Rejected(
            FieldError(path, "a mapping key must be a string, not a list or mapping"), node.start_mark.line + 1
        )
    if node.tag == _MERGE_TAG:
        return "<<"
    name = str(node.value)
    if name in seen:
        where = f"{path}.{name}" if path else name
        raise _Rejected(FieldError(where, f'duplicate key "{name}"'), node.start_mark.line + 1)
    seen.add(name)
    node.tag = _STR_TAG
    return name


def _bound(size: int, path: str, line: int) -> None:
    if size > MAX_VALUES:
        raise _Rejected(FieldError(path, f"more than {MAX_VALUES} values once YAML aliases are expanded"), line)


def _short(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of ``path``, or of its nearest ancestor that is written (a missing field: its parent's)."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[: max(cut, 0)]
    return None


def describe(kind: str, name: object, namespace: object = None) -> str:
    """``LLMRoute apps/deepseek``: how an error names the object, as far as the document says what it is."""
    if not isinstance(name, str) or not name:
        return kind
    return f"{kind} {namespace}/{name}" if isinstance(namespace, str) and namespace else f"{kind} {name}"


def _what(root: Node) -> str | None:
    """:func:`describe` read from the nodes of a document rejected before it became a value."""
    fields = _scalars(root)
    kind = fields.get("kind")
    if kind is None:
        return None
    meta = next((v for k, v in root.value if isinstance(k, ScalarNode) and k.value == "metadata"), None)
    meta_fields = _scalars(meta) if meta is not None else {}
    return describe(kind, meta_fields.get("name"), meta_fields.get("namespace"))


def _scalars(node: Node) -> dict[str, str]:
    """A mapping node's scalar entries; the first of duplicate keys wins (it is the one the error points past)."""
    out: dict[str, str] = {}
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and isinstance(v, ScalarNode):
                out.setdefault(str(k.value), str(v.value))
    return out
