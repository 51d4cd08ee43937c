"""Where an OpenAI request carries text: every string a chat, completions or embeddings body sends upstream.

Owns the walk shared by escalation (what does this request contain?), ``llmroute scan`` and redaction (which
strings to rewrite): each ``Place`` is a path into the body plus the string found there. Tool-call arguments in the
history are JSON inside a string, so they are decoded and each string value inside is its own place (the path goes
on inside the decoded JSON, ``in_json=True``); arguments that do not decode are scanned as the raw string. Token
arrays (lists of ints) are not text. The walk never raises on a malformed body: what is not where the API puts
text is skipped. Pure; values are returned to the caller and never logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from llmroute.core.pii import DEFAULT, Detector, Finding, place_key

Path = tuple[str | int, ...]

_MESSAGE_TEXT_FIELDS = ("content", "reasoning_content", "reasoning")
"""Message fields holding text (``reasoning*``: an assistant turn's reasoning sent back in the history)."""

_PART_TEXT_FIELDS = {"text": "text", "refusal": "refusal"}
"""Content part type -> the field holding its text; other parts (images, audio, files) are not text."""


class Place(NamedTuple):
    """One string in a request body: its ``path`` (keys and indices from the body's root) and its ``text``.

    ``in_json``: the path runs into a JSON document held in a string (tool-call arguments); the elements after the
    string's own key are keys/indices inside the decoded document and ``text`` is the decoded string value. (A named
    tuple: a request makes one per message, and a frozen dataclass costs three times as much to make.)
    """

    path: Path
    text: str
    in_json: bool


def places(body: Mapping[str, Any]) -> list[Place]:
    """Every non-empty text a chat/completions/embeddings request body carries, in document order."""
    out: list[Place] = []
    if _compiled_walk is not None and type(body) is dict:
        _compiled_walk(out, body, _WALK_HOOKS)
    else:
        _walk(out, body)
    return out


def scan(body: Mapping[str, Any], detector: Detector = DEFAULT) -> list[tuple[Place, Finding]]:
    """Every finding in every place of ``body``; a finding's offsets are into its place's ``text``.

    A string inside tool-call arguments is scanned with its JSON key as context (``{"phone": "4155550134"}``). All
    the places in one ``detect_many`` call."""
    return findings_in(places(body), detector)


def findings_in(found: list[Place], detector: Detector = DEFAULT) -> list[tuple[Place, Finding]]:
    """``scan``'s findings in places already walked."""
    results = detector.detect_places(found)
    return [(place, f) for place, findings in zip(found, results, strict=True) if findings for f in findings]


key_of = place_key
"""The JSON key a string in tool-call arguments is the value of, else ``""`` (``pii.place_key``)."""


# The walk appends to one list (no generator per message) and makes each Place with ``tuple.__new__`` (a named
# tuple's own constructor is a Python function): it runs over every message of every request, ~80 in 8 KB of chat.
_new = tuple.__new__


def _add(out: list[Place], path: Path, text: str, in_json: bool) -> None:
    if text:
        out.append(_new(Place, (path, text, in_json)))


def _walk(out: list[Place], body: Mapping[str, Any]) -> None:
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, message in enumerate(messages):
            if type(message) is dict or isinstance(message, Mapping):  # (the exact type first: an ABC check is slow)
                _message(out, ("messages", i), message)
    for key in ("prompt", "input"):
        _strings(out, (key,), body.get(key))


def _message(out: list[Place], path: Path, message: Mapping[str, Any]) -> None:
    for field in _MESSAGE_TEXT_FIELDS:
        content = message.get(field)
        if isinstance(content, str):  # (the common case)
            if content:
                out.append(_new(Place, ((*path, field), content, False)))
        elif isinstance(content, list):  # (most messages carry one of the three: no path for the others)
            _parts(out, (*path, field), content)
    _calls(out, path, message)


def _calls(out: list[Place], path: Path, message: Mapping[str, Any]) -> None:
    """The strings in a message's tool-call (and legacy function-call) arguments."""
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for j, call in enumerate(calls):
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                _arguments(out, (*path, "tool_calls", j, "function", "arguments"), function.get("arguments"))
    legacy = message.get("function_call")
    if isinstance(legacy, Mapping):
        _arguments(out, (*path, "function_call", "arguments"), legacy.get("arguments"))


def _parts(out: list[Place], path: Path, content: list[Any]) -> None:
    """The text of content parts (a string content is ``_message``'s own case)."""
    for k, part in enumerate(content):
        if not isinstance(part, Mapping):
            continue
        field = _PART_TEXT_FIELDS.get(part.get("type", ""))
        if field is not None and isinstance(part.get(field), str):
            _add(out, (*path, k, field), part[field], False)


def _strings(out: list[Place], path: Path, value: Any) -> None:
    """``prompt``/``input``: a string or a list of strings; token arrays (ints, lists of ints) are skipped."""
    if isinstance(value, str):
        _add(out, path, value, False)
    elif isinstance(value, list):
        for k, item in enumerate(value):
            if isinstance(item, str):
                _add(out, (*path, k), item, False)


def _arguments(out: list[Place], path: Path, arguments: Any) -> None:
    if not isinstance(arguments, str):
        return
    try:
        decoded = json.loads(arguments)
    except ValueError:
        _add(out, path, arguments, False)
        return
    _json_strings(out, path, decoded)


def _json_strings(out: list[Place], path: Path, value: Any) -> None:
    """String values (not keys) anywhere in a decoded JSON document; numbers, booleans and null are not text."""
    if isinstance(value, str):
        _add(out, path, value, True)
    elif isinstance(value, dict):
        for key, item in value.items():
            _json_strings(out, (*path, key), item)
    elif isinstance(value, list):
        for k, item in enumerate(value):
            _json_strings(out, (*path, k), item)


_WALK_HOOKS = (Place, _message, _parts, _calls, _strings)
"""What the compiled walk is given: the Place type, and the functions of this walk it calls for what is not a dict
with string contents (a message of another Mapping type, content parts, tool calls, ``prompt``/``input``)."""

_compiled_walk: Callable[[list[Place], dict[str, Any], tuple[object, ...]], None] | None
try:
    from llmroute.core._pii_clusters import walk as _compiled_walk
except ImportError:  # not built: ``_walk``
    _compiled_walk = None
