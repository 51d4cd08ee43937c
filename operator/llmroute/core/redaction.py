"""Redaction: the placeholders a request sends upstream instead of the personal data found in it, and how the answer
gets the originals back - in whole answers and in streams split anywhere.

Owns the pure half of issue 11's redaction (the router half is :mod:`llmroute.router.redaction`):

* **Modes** - :func:`merge` settles overlapping rules per type: Block, then Redact, then Restore (the strictest wins).
* **Placeholders** (:class:`Redactor`) - ``<EMAIL_1>``, ``<US_SSN_2>``, ``<EMPLOYEE_ID_1>``: the type in capitals and
  a number per type, in the order values first appear. A value gets one placeholder for the whole request (every
  message, tool-call arguments in the history, every attempt), so the model can tell two people apart and refer
  back (LiteLLM #31959 numbered per message and collided). A number whose name appears anywhere in the request
  already, in any case (``email_1`` in a variable name, or a ``<EMAIL_1>`` an earlier answer kept), is skipped, so
  text the client wrote is never taken for a placeholder on the way back. The mapping lives only in the request's
  memory.
* **Request bodies** (:meth:`Redactor.body`) - every place :func:`llmroute.core.request_text.places` yields, with
  each finding of the chosen types replaced, and every other occurrence of a value found (a phone number the
  detector's context rule missed in another message is the same datum); the body is copied only along changed
  paths. Tool-call arguments are JSON in a string: their values are replaced inside the decoded document and the
  document is encoded again (LiteLLM #41265 sent them upstream in clear).
* **Restoring** (:class:`Restorer`) - the placeholders issued for the types to restore, and the altered echoes models
  write - ``<email_1>``, ``[EMAIL_1]``, a bare ``EMAIL_1`` between non-word characters, and in JSON text
  ``\\u003cEMAIL_1\\u003e`` - only for placeholders issued in this request, so ``<EMAIL_1>`` in an answer to a
  request that was not given one stays as it is. One pass of one process-wide pattern for any placeholder-shaped
  name (nothing is compiled per request); a match is never re-scanned, so an original that looks like a placeholder
  is not replaced again, and ``<EMAIL_1>`` never eats the start of ``<EMAIL_10>`` (Kong's shared-prefix bug). In JSON
  text (tool-call arguments) the original goes in JSON-escaped (``json.dumps(value)[1:-1]``), so the arguments still
  parse (LiteLLM #31950 never restored them).
* **Streams** (:class:`TextStream`, :class:`AnswerStream`) - per choice, per text field and per tool call, each delta
  is emitted at once with complete placeholders replaced, holding back only a suffix that can still grow into an
  issued form (at most the longest form; plain text holds back nothing), and flushing what is held when the choice
  finishes or the stream ends: a partial form as it came, never guessed (a whole bare name at the very end is a
  complete echo and is restored, as in a whole answer). A stream restored in any chunking equals the whole text
  restored (:meth:`Restorer.restore`): the property tests check exactly that, at every chunk boundary.

Pure (no I/O); nothing here logs or returns a value except into the answer it restores.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmroute.api.provider_policy import RedactionMode
from llmroute.core.pii import Finding
from llmroute.core.request_text import Path, Place

STRICTNESS = {RedactionMode.RESTORE: 0, RedactionMode.REDACT: 1, RedactionMode.BLOCK: 2}
"""Where rules overlap, the higher wins."""
REPLACED = frozenset({RedactionMode.RESTORE, RedactionMode.REDACT})
"""Modes that send a placeholder upstream."""
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_START = " "
"""The character a stream is taken to follow (a word boundary)."""


def merge(*rules: Mapping[str, RedactionMode]) -> dict[str, RedactionMode]:
    """The mode of every type ``rules`` name: the strictest among them."""
    out: dict[str, RedactionMode] = {}
    for rule in rules:
        for kind, mode in rule.items():
            have = out.get(kind)
            if have is None or STRICTNESS[mode] > STRICTNESS[have]:
                out[kind] = mode
    return out


def placeholder_name(kind: str) -> str:
    """``email`` -> ``EMAIL``; type names are ``[a-z][a-z0-9_]*``."""
    return kind.upper()


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One value of a request and what stands for it upstream: ``<{core}>``."""

    core: str
    value: str
    type: str
    """The type the value was first found as (it names the placeholder)."""
    types: frozenset[str]
    """Every type the value was found as."""

    @property
    def token(self) -> str:
        return f"<{self.core}>"


class Redactor:
    """The placeholders of one request, issued once from its findings, and the bodies sent with them.

    ``places`` are all the texts of ``body`` (:func:`llmroute.core.request_text.places`), ``found`` the findings in
    them; ``taken`` is any further text of the request (e.g. the raw body) whose placeholder-like names must not be
    issued.
    """

    __slots__ = ("_body", "_by_value", "_findings", "_places", "placeholders")

    def __init__(self, body: Mapping[str, Any], places: Sequence[Place], found: Sequence[tuple[Place, Finding]],
                 taken: str = "") -> None:
        self._body = body
        self._places = places
        self._findings: dict[Path, list[Finding]] = {}
        for place, f in found:
            self._findings.setdefault(place.path, []).append(f)
        seen = (taken + "\0" + "\0".join(p.text for p in places)).lower()
        numbers: dict[str, int] = {}
        values: dict[str, tuple[str, str, set[str]]] = {}  # value -> (core, type, types)
        for place, f in found:
            value = place.text[f.start:f.end]
            if not value:
                continue
            if value in values:
                values[value][2].add(f.type)
                continue
            n = numbers.get(f.type, 0) + 1
            while f"{placeholder_name(f.type)}_{n}".lower() in seen:
                n += 1
            numbers[f.type] = n
            values[value] = (f"{placeholder_name(f.type)}_{n}", f.type, {f.type})
        self._by_value = {v: Placeholder(core, v, kind, frozenset(types))
                          for v, (core, kind, types) in values.items()}
        self.placeholders: tuple[Placeholder, ...] = tuple(self._by_value.values())

    def body(self, types: Iterable[str]) -> tuple[Mapping[str, Any], Counter[str]]:
        """``body`` with every value found as one of ``types`` replaced by its placeholder, and how many findings
        of each type were replaced; the body itself (not a copy) when nothing is."""
        chosen = frozenset(types)
        replaced = {v: p for v, p in self._by_value.items() if p.types & chosen}
        counts: Counter[str] = Counter()
        if not replaced:
            return self._body, counts
        longest_first = sorted(replaced, key=len, reverse=True)
        edits: dict[Path, tuple[str, bool]] = {}
        for place in self._places:
            spans = []
            for f in self._findings.get(place.path, ()):
                p = replaced.get(place.text[f.start:f.end]) if f.end > f.start else None
                if p is not None:
                    spans.append((f.start, f.end, p))
                    counts[f.type] += 1
            for start, end in _occurrences(place.text, longest_first, [(s, e) for s, e, _ in spans]):
                p = replaced[place.text[start:end]]
                spans.append((start, end, p))
                counts[p.type] += 1
            if spans:
                edits[place.path] = (_replaced(place.text, spans), place.in_json)
        return (_edited(self._body, edits), counts) if edits else (self._body, counts)

    def restorer(self, types: Iterable[str], keep: Iterable[str] = ()) -> Restorer | None:
        """The restorer of the placeholders of values found as one of ``types`` and as none of ``keep`` (a value
        found as a type to redact stays redacted: the strictest mode wins); None when there is nothing to restore."""
        chosen, kept = frozenset(types), frozenset(keep)
        restored = [p for p in self.placeholders if p.types & chosen and not p.types & kept]
        return Restorer(restored) if restored else None


def _occurrences(text: str, values: Sequence[str], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans of ``values`` (longest first) in ``text`` that overlap nothing in ``taken`` (extended as it goes) and
    are not part of a longer word or number."""
    found: list[tuple[int, int]] = []
    for value in values:
        i = text.find(value)
        while i >= 0:
            j = i + len(value)
            if ((i == 0 or value[0] not in _WORD or text[i - 1] not in _WORD)
                    and (j == len(text) or value[-1] not in _WORD or text[j] not in _WORD)
                    and not any(i < e and s < j for s, e in taken)):
                taken.append((i, j))
                found.append((i, j))
            i = text.find(value, i + 1)
    return found


def _replaced(text: str, spans: list[tuple[int, int, Placeholder]]) -> str:
    out: list[str] = []
    pos = 0
    for start, end, p in sorted(spans, key=lambda s: s[0]):
        out += (text[pos:start], p.token)
        pos = end
    out.append(text[pos:])
    return "".join(out)


class _Leaf:
    __slots__ = ("in_json", "text")

    def __init__(self, text: str, in_json: bool) -> None:
        self.text, self.in_json = text, in_json


def _edited(body: Mapping[str, Any], edits: Mapping[Path, tuple[str, bool]]) -> dict[str, Any]:
    """``body`` with each path of ``edits`` set to its text, copying only the containers on those paths."""
    tree: dict[Any, Any] = {}
    for path, (text, in_json) in edits.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = _Leaf(text, in_json)
    out = _apply(body, tree, inside=False)
    assert isinstance(out, dict)
    return out


def _apply(node: Any, tree: Any, inside: bool) -> Any:
    if isinstance(tree, _Leaf):
        # an in_json place whose document is one string: the string is the document, so encode it again
        return json.dumps(tree.text, ensure_ascii=False) if tree.in_json and not inside else tree.text
    if isinstance(node, str):  # tool-call arguments: the places are inside the decoded document
        return json.dumps(_apply(json.loads(node), tree, inside=True), ensure_ascii=False)
    out: Any = dict(node) if isinstance(node, Mapping) else list(node)
    for key, sub in tree.items():
        out[key] = _apply(node[key], sub, inside)
    return out


_NAME = r"[A-Za-z][A-Za-z0-9_]*_[0-9]+"
_BARE = rf"(?<![A-Za-z0-9_])({_NAME})(?![A-Za-z0-9_])"
_PATTERNS = {
    False: re.compile(rf"<({_NAME})>|\[({_NAME})\]|{_BARE}", re.ASCII),
    True: re.compile(rf"(?:<|\\u003[cC])({_NAME})(?:>|\\u003[eE])|\[({_NAME})\]|{_BARE}", re.ASCII),
}
"""Any placeholder-shaped name, bracketed or bare, in text and in JSON text: compiled once per process; a match is
restored only when its name (in any case) was issued, so this finds exactly what a pattern of the issued names
would (a non-issued match is one word, or one bracketed word, and cannot hide an issued one)."""
_OPENERS = {False: (("<", False), ("[", False)), True: (("<", True), ("\\u003c", True), ("[", False))}
"""Per kind of text: (opener, whether ``\\u003e`` may close it - the one closer longer than a character)."""
_WORD_CHARS = "".join(sorted(_WORD))


class _Forms:
    """The issued placeholders as one kind of text (plain, or JSON where ``<`` may be ``\\u003c``) writes them."""

    __slots__ = ("in_json", "longest", "names", "sorted", "values")

    def __init__(self, placeholders: Sequence[Placeholder], in_json: bool) -> None:
        self.in_json = in_json
        self.values = {p.core.lower(): (p, json.dumps(p.value, ensure_ascii=False)[1:-1] if in_json else p.value)
                       for p in placeholders}
        self.names = self.values.keys()
        self.sorted = sorted(self.names)
        self.longest = max(map(len, self.sorted), default=0) + (12 if in_json else 2)

    def _prefix(self, t: str) -> bool:
        """Whether ``t`` (lowercase) begins an issued name, or is one."""
        i = bisect_left(self.sorted, t)
        return i < len(self.sorted) and self.sorted[i].startswith(t)

    def hold_from(self, s: str) -> int:
        """Where the suffix of ``s`` (``s[0]`` is the character before the text) that may still grow into an issued
        form starts; ``len(s)`` when none may. Candidates: the last ``<`` and ``[``, the last two backslashes (JSON),
        and the trailing run of name characters (a bare name needs a non-name character before it)."""
        n = len(s)
        low = max(1, n - self.longest)
        run = len(s.rstrip(_WORD_CHARS))
        starts = [s.rfind("<", low), s.rfind("[", low)]
        if self.in_json:
            last = s.rfind("\\", low)
            starts += (last, s.rfind("\\", low, last) if last > low else -1)
        hold = n
        for i in starts:
            if 0 < i < hold and self._begun(s[i:]):
                hold = i
        if run < hold and n - run <= self.longest and run >= 1 and self._named(s[run:]):
            hold = run
        return hold

    def _named(self, tail: str) -> bool:
        return tail.isascii() and self._prefix(tail.lower())

    def _begun(self, tail: str) -> bool:
        """Whether ``tail`` is a proper beginning of a bracketed form of an issued name."""
        if not tail.isascii():
            return False
        t = tail.lower()
        for opener, escaped_close in _OPENERS[self.in_json]:
            if len(t) <= len(opener):
                if opener.startswith(t):
                    return True
                continue
            if not t.startswith(opener):
                continue
            rest = t[len(opener):]
            if self._prefix(rest):  # a name begun, or whole and not yet closed
                return True
            cut = rest.find("\\")
            if escaped_close and cut > 0 and rest[:cut] in self.names and "\\u003e".startswith(rest[cut:]):
                return True  # a whole name and a JSON closer begun
        return False

    def replace(self, s: str, start: int, end: int, counts: Counter[str]) -> tuple[str, int]:
        """``s[start:end]`` with the issued forms in it replaced (the characters around are context for the
        boundaries), and where the replaced text really ended (a match running past ``end`` stops it there)."""
        out: list[str] = []
        pos = start
        for m in _PATTERNS[self.in_json].finditer(s, start):
            if m.start() >= end:
                break
            if m.end() > end:
                end = m.start()
                break
            found = self.values.get((m.group(1) or m.group(2) or m.group(3)).lower())
            if found is None:
                continue
            placeholder, text = found
            out += (s[pos:m.start()], text)
            counts[placeholder.type] += 1
            pos = m.end()
        out.append(s[pos:end])
        return "".join(out), end


class Restorer:
    """Puts the originals of ``placeholders`` back; counts what it restored by type in ``restored``."""

    __slots__ = ("_json", "_text", "placeholders", "restored")

    def __init__(self, placeholders: Sequence[Placeholder]) -> None:
        self.placeholders = tuple(placeholders)
        self.restored: Counter[str] = Counter()
        self._text: _Forms | None = None
        self._json: _Forms | None = None

    def forms(self, in_json: bool) -> _Forms:
        if in_json:
            if self._json is None:
                self._json = _Forms(self.placeholders, True)
            return self._json
        if self._text is None:
            self._text = _Forms(self.placeholders, False)
        return self._text

    def restore(self, text: str, in_json: bool = False) -> str:
        """``text`` (whole) with every form of the placeholders replaced by its original (JSON-escaped in JSON)."""
        s = _START + text
        return self.forms(in_json).replace(s, 1, len(s), self.restored)[0]

    def stream(self, in_json: bool = False) -> TextStream:
        return TextStream(self, in_json)

    def answer(self, body: dict[str, Any]) -> None:
        """Restore a chat or completions answer in place: every text field of every message (content, reasoning,
        refusal), tool-call and function-call arguments (as JSON text), completion ``text``."""
        for choice in body.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict):
                self._fields(message)
            if isinstance(choice.get("text"), str):
                choice["text"] = self.restore(choice["text"])

    def _fields(self, message: dict[str, Any]) -> None:
        for key, value in message.items():
            if isinstance(value, str) and key != "role":
                message[key] = self.restore(value)
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                function["arguments"] = self.restore(function["arguments"], in_json=True)
        legacy = message.get("function_call")
        if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
            legacy["arguments"] = self.restore(legacy["arguments"], in_json=True)


class TextStream:
    """One streamed text (a choice's content, reasoning or one tool call's arguments): ``feed`` each delta, write
    what it returns, ``flush`` at the end. The output of any chunking equals :meth:`Restorer.restore` of the whole."""

    __slots__ = ("_forms", "_held", "_prev", "_restorer")

    def __init__(self, restorer: Restorer, in_json: bool) -> None:
        self._restorer = restorer
        self._forms = restorer.forms(in_json)
        self._held = ""
        self._prev = _START  # the last character before ``_held`` (for the bare form's boundary)

    @property
    def held(self) -> str:
        return self._held

    def feed(self, text: str) -> str:
        if not text:
            return ""
        s = self._prev + self._held + text
        forms = self._forms
        out, end = forms.replace(s, 1, forms.hold_from(s), self._restorer.restored)
        self._held, self._prev = s[end:], s[end - 1]
        return out

    def flush(self) -> str:
        """The held text: complete forms in it replaced, a partial one as it came (never guessed)."""
        if not self._held:
            return ""
        s = self._prev + self._held
        out, _ = self._forms.replace(s, 1, len(s), self._restorer.restored)
        self._held, self._prev = "", s[-1]
        return out


_HEAD = ("id", "object", "created", "model", "system_fingerprint")
_NOT_TEXT = frozenset({"role", "tool_calls", "function_call"})


class AnswerStream:
    """A streamed answer's chunks (parsed SSE data events) restored in place: per choice, per text field and per
    tool call. :meth:`chunk` returns whether it changed the chunk (unchanged chunks can be relayed as they came);
    a choice's held text goes into the chunk carrying its ``finish_reason``; :meth:`flush` gives the chunks carrying
    what is still held when the stream ends without one (``[DONE]``, an error, a cut)."""

    __slots__ = ("_chat", "_head", "_restorer", "_streams")

    def __init__(self, restorer: Restorer, chat: bool = True) -> None:
        self._restorer = restorer
        self._chat = chat
        self._streams: dict[tuple[int, str, int], TextStream] = {}  # (choice, field, tool call index or -1)
        self._head: dict[str, Any] = {}

    @property
    def holding(self) -> bool:
        return any(s.held for s in self._streams.values())

    def _stream(self, key: tuple[int, str, int]) -> TextStream:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = self._restorer.stream(in_json=key[1] in _NOT_TEXT)
        return stream

    def chunk(self, chunk: dict[str, Any]) -> bool:
        """Restore ``chunk`` in place; True when it changed."""
        for name in _HEAD:
            if name in chunk:
                self._head[name] = chunk[name]
        changed = False
        for index, choice in _choices(chunk):
            for key, holder, field in _texts(index, choice, self._chat):
                text = holder[field]
                new = self._stream(key).feed(text)
                if new != text:
                    holder[field], changed = new, True
            if choice.get("finish_reason") is not None:
                changed |= self._finish(index, choice)
        return changed

    def _finish(self, index: int, choice: dict[str, Any]) -> bool:
        """Flush every stream of choice ``index`` into ``choice`` (the one carrying its finish_reason)."""
        changed = False
        for key in [k for k in self._streams if k[0] == index]:
            text = self._streams.pop(key).flush()
            if text:
                _put(choice, key, text, self._chat)
                changed = True
        return changed

    def flush(self) -> list[dict[str, Any]]:
        """One chunk per choice that still holds text (none when nothing is held)."""
        out: list[dict[str, Any]] = []
        for index in sorted({k[0] for k, s in self._streams.items() if s.held}):
            choice: dict[str, Any] = {"index": index}
            if self._chat:
                choice["delta"] = {}
            self._finish(index, choice)
            choice.update({"logprobs": None, "finish_reason": None})
            out.append({**self._head, "choices": [choice]})
        self._streams.clear()
        return out


def _choices(chunk: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict):
            index = choice.get("index", 0)
            out.append((index if isinstance(index, int) else 0, choice))
    return out


def _texts(index: int, choice: dict[str, Any], chat: bool) -> list[tuple[tuple[int, str, int], dict[str, Any], str]]:
    """The streamed texts of one choice of a chunk: (stream key, the dict holding the text, its key)."""
    if not chat:
        return [((index, "text", -1), choice, "text")] if isinstance(choice.get("text"), str) else []
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return []
    out = [((index, k, -1), delta, k) for k, v in delta.items() if isinstance(v, str) and k not in _NOT_TEXT]
    calls = delta.get("tool_calls")
    for position, call in enumerate(calls if isinstance(calls, list) else ()):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            k = call.get("index", position)
            out.append(((index, "tool_calls", k if isinstance(k, int) else position), function, "arguments"))
    legacy = delta.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        out.append(((index, "function_call", -1), legacy, "arguments"))
    return out


def _put(choice: dict[str, Any], key: tuple[int, str, int], text: str, chat: bool) -> None:
    """Append flushed ``text`` to the field ``key`` names in ``choice``."""
    _, field, call_index = key
    if not chat:
        choice["text"] = (choice.get("text") or "") + text
        return
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        delta = choice["delta"] = {}
    if field == "tool_calls":
        calls = delta.get("tool_calls")
        if not isinstance(calls, list):
            calls = delta["tool_calls"] = []
        call = next((c for c in calls if isinstance(c, dict) and c.get("index") == call_index), None)
        if call is None:
            calls.append({"index": call_index, "function": {"arguments": text}})
            return
        function = call.setdefault("function", {})
        function["arguments"] = (function.get("arguments") or "") + text
    elif field == "function_call":
        legacy = delta.setdefault("function_call", {})
        legacy["arguments"] = (legacy.get("arguments") or "") + text
    else:
        delta[field] = (delta.get(field) or "") + text
