"""``llmroute scan``: find personal data in logged prompts, line by line, before escalation is turned on.

Owns the contract of issue 11 and its streaming I/O. JSON lines in, each an object with an ``id`` and either
``text`` (a string) or an OpenAI request body (the object itself with ``messages``, ``prompt`` or ``input``, or
under ``body``); JSON lines out, exactly one per input line, in input order:

* ``{"id": ..., "findings": [{"type": "email", "start": 12, "end": 31}], "classes": [...]}`` - offsets in code
  points into ``text``; for a body, each finding also has ``path`` (keys and indices to the string it is in, on into
  the JSON of tool-call arguments; offsets are into that string). ``classes`` (only with ``--policy``): the classes
  whose ``detect`` lists a type found, in policy order - what the router would escalate the request to.
* ``{"id": ..., "error": "..."}`` for a line that cannot be scanned (``id`` null when unknown); the scan goes on.

Blank lines are not inputs and get no output line. Nothing is ever printed of what was found or of a bad line: types,
positions and fixed messages only. Memory is bounded whatever the input's size: input is read in chunks (a line
longer than ``max_line_bytes`` is skipped unread and reported), and output is flushed before every read that could
wait, so a pipe sees results as its input arrives. Used by :mod:`llmroute.cli`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core import pii, request_text
from llmroute.core.escalation import DetectRules, detecting
from llmroute.documents import load
from llmroute.errors import InputError

CHUNK_BYTES = 1 << 20
DEFAULT_MAX_LINE_BYTES = 16 << 20
_BODY_KEYS = ("messages", "prompt", "input")
_FIXED_KEYS = frozenset(("messages", "prompt", "input", "content", "text", "refusal", "reasoning_content", "reasoning",
                         "tool_calls", "function", "arguments", "function_call"))


def load_policy(path: str) -> ProviderPolicy:
    """The one ProviderPolicy in ``path`` (a YAML file or folder); raises :class:`InputError` otherwise."""
    policies = load([path]).policies
    if len(policies) != 1:
        found = ", ".join(sorted(policies)) or "none"
        raise InputError(f"--policy {path}: expected exactly one ProviderPolicy (found: {found})")
    return next(iter(policies.values()))


@dataclass
class Scanner:
    """Turns one input line into one output line; counts what it saw (types and numbers only)."""

    detector: pii.Detector
    rules: DetectRules | None = None  # the policy's (class, types) pairs; None: no --policy, no "classes"
    lines: int = 0
    errors: int = 0
    flagged: int = 0
    types: Counter[str] = field(default_factory=Counter)

    @classmethod
    def for_policy(cls, policy: ProviderPolicy | None) -> Scanner:
        if policy is None:
            return cls(pii.DEFAULT)
        custom = [pii.CustomDetector(d.name, d.pattern, d.confidence) for d in policy.spec.detectors]
        rules = tuple((c.name, tuple(c.detect)) for c in policy.spec.data_classes if c.detect)
        return cls(pii.Detector(custom), rules)

    def line(self, raw: bytes) -> bytes:
        """The output line (no newline) for one input line."""
        self.lines += 1
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = _json_fallback(raw)
            if doc is _INVALID:
                return self._error(None, "invalid JSON")
        if not isinstance(doc, dict):
            return self._error(None, "a line must be a JSON object")
        if "id" not in doc:
            return self._error(None, "no id")
        ident = doc["id"]
        if isinstance(ident, float):  # orjson reads integers beyond 64 bits as floats: echo the id as it was
            exact = _json_fallback(raw)
            ident = exact["id"] if isinstance(exact, dict) else ident
        text = doc.get("text")
        if text is not None:
            if not isinstance(text, str):
                return self._error(ident, "text must be a string")
            findings = self.detector.detect(text)
            out: list[dict[str, Any]] = [{"type": f.type, "start": f.start, "end": f.end} for f in findings]
            found = {f.type for f in findings}
        else:
            body = doc.get("body", doc)
            if not isinstance(body, Mapping) or not any(k in body for k in _BODY_KEYS):
                return self._error(ident, "no text and no OpenAI request body (messages, prompt or input)")
            scanned = request_text.scan(body, self.detector)
            out = [{"type": f.type, "start": f.start, "end": f.end, "path": self._path(place.path)}
                   for place, f in scanned]
            found = {f.type for _, f in scanned}
        if out:
            self.flagged += 1
            self.types.update(f["type"] for f in out)
        result: dict[str, Any] = {"id": ident, "findings": out}
        if self.rules is not None:
            result["classes"] = list(detecting(self.rules, found))
        return _dumps(result)

    def _path(self, path: request_text.Path) -> list[str | int]:
        """``path`` as printed: a key that itself looks like personal data (keys inside tool-call arguments are the
        caller's) is printed as ``*``."""
        return [k if isinstance(k, int) or k in _FIXED_KEYS or not self.detector.detect(k) else "*" for k in path]

    def overlong(self, max_line_bytes: int) -> bytes:
        """The output line for an input line too long to read."""
        self.lines += 1
        return self._error(None, f"line longer than {max_line_bytes} bytes")

    def _error(self, ident: Any, message: str) -> bytes:
        self.errors += 1
        return _dumps({"id": ident, "error": message})

    def summary(self) -> str:
        """One line for stderr: counts and types, never a value."""
        types = ", ".join(f"{t} {n}" for t, n in self.types.most_common())
        return (f"llmroute scan: {self.lines} lines, {self.flagged} with findings"
                + (f" ({types})" if types else "") + f", {self.errors} errors")


_INVALID = object()


def _json_fallback(raw: bytes) -> Any:
    """What orjson refuses and ``json`` reads (integers beyond 64 bits, NaN); ``_INVALID`` if neither can."""
    try:
        return json.loads(raw)
    except ValueError:
        return _INVALID


def _dumps(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:  # an id orjson cannot write (an integer beyond 64 bits)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def records(stream: IO[bytes], max_line_bytes: int, before_read: Callable[[], None] = lambda: None,
            chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes | None]:
    """The non-blank lines of ``stream`` as they arrive (None for a line longer than ``max_line_bytes``, which is
    skipped without being held). ``before_read`` runs before every read that may wait for input."""
    read = getattr(stream, "read1", stream.read)
    pending = b""
    skipping = False  # inside an overlong line: drop everything up to its newline
    while True:
        before_read()
        chunk = read(chunk_bytes)
        if not chunk:
            break
        if skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                continue
            skipping, chunk = False, chunk[cut + 1:]
            yield None
        lines = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if len(line) > max_line_bytes:
                yield None
            elif line.strip():
                yield line
        if len(pending) > max_line_bytes:
            pending, skipping = b"", True
    if skipping:
        yield None
    elif pending.strip():
        yield pending if len(pending) <= max_line_bytes else None


def run(scanner: Scanner, source: IO[bytes], sink: IO[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
    """Scan every line of ``source`` into ``sink``, one output line per input line, in order."""
    write = sink.write
    for raw in records(source, max_line_bytes, sink.flush):
        write((scanner.overlong(max_line_bytes) if raw is None else scanner.line(raw)) + b"\n")
    sink.flush()


def open_input(name: str, stdin: IO[bytes]) -> IO[bytes]:
    """``-`` is ``stdin``; anything else a file, opened for reading bytes."""
    if name == "-":
        return stdin
    path = Path(name)
    if not path.is_file():
        raise InputError(f"{name}: no such file")
    return path.open("rb")
