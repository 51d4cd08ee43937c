"""Runs of repeated stream events, merged without parsing each one: the assembler's constant-cost path.

A provider's stream repeats one event shape token after token: the same ``id``, ``model``, ``created``, the same
``"choices":[{"index":0,"delta":{"content":"`` before the token and the same ``"},"logprobs":null,...}]}`` after it.
Parsing each event (orjson, ~0.8 us per token on the benchmark machine) and merging it in Python (~3 us) is what
made a long non-streaming answer cost 4 us per token. This module finds such a run with C-level bytes operations
only: the first data event of the run (the *template*) is parsed, the bytes before and after its one text value
(prefix ``P`` and suffix ``S``) are taken from it, the stream is split on ``P`` and each piece checked to end
with ``S`` (``bytes.endswith`` mapped in C), and the text values in between are decoded all at once as one JSON
array of strings. Merging the whole run is then merging the template once, with its text the concatenation of the
run's texts - which is exactly what merging each event would give, because a template is accepted only when every
other field of it merges idempotently (no ``logprobs``, no ``tool_calls``, a single text field: see
:func:`template`).

Exactness: the run's texts are decoded from their raw JSON bytes; the decoded array is accepted only when orjson,
re-encoding it, gives the same bytes (or, when the upstream escapes differently, when each one parses on its own
as a JSON string), so every event of the run is valid JSON identical to the template but for its text. Anything
else - an error event, a line that is not the template's, CRLF variants, comments in between - ends the run and is
merged the ordinary way by :class:`llmroute.router.sse.Assembler`. Pure; used only by that class.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from llmroute.router import jsonwire

_SPACE = b" \t\r\n"
_BACKSLASH = 0x5C
_NEEDLE = 16


class Template(NamedTuple):
    """The first data line of a run: its bounds in the stream, its parsed event and its text field's prefix and
    suffix (no ``field``: this line cannot start a run)."""

    start: int
    end: int
    """Index of the line's ``\\n``."""
    event: Any = None
    """The line's payload parsed (None: it does not parse)."""
    field: str = ""
    prefix: bytes = b""
    suffix: bytes = b""
    next_at: int = 0
    """Where the next event's prefix starts if that event continues the run."""


def template(body: bytes, pos: int, chat: bool) -> Template | None:
    """The next data line of ``body`` (complete lines, each preceded by ``\\n``) at or after ``pos``; None: none."""
    start = pos if body.startswith(b"data:", pos) else body.find(b"\ndata:", max(pos - 1, 0)) + 1
    if start <= 0:
        return None
    end = body.find(b"\n", start)
    if end < 0:
        return None
    line = body[start:end]
    try:
        event = jsonwire.loads_chunk(line[5:])
    except ValueError:
        return Template(start, end)
    field = _text_field(event, chat)
    bounds = None if field is None else _raw_bounds(line, field)
    if field is None or bounds is None:
        return Template(start, end, event)
    sep_end = end + 1
    while sep_end < len(body) and body[sep_end] in b"\r\n":
        sep_end += 1
    # the line's own "\n" starts the prefix, so a run only matches at line starts
    prefix, suffix = b"\n" + line[: bounds[0]], line[bounds[1] :] + body[end : sep_end - 1]
    return Template(start, end, event, field, prefix, suffix, sep_end - 1)


def _text_field(event: Any, chat: bool) -> str | None:
    """The one text field of an event all of whose other fields merge idempotently; None if it has none."""
    if not isinstance(event, dict) or "error" in event:
        return None
    choices = event.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    if choice.get("logprobs") is not None:
        return None
    if not chat:
        return "text" if isinstance(choice.get("text"), str) else None
    delta = choice.get("delta")
    if not isinstance(delta, dict) or "tool_calls" in delta:
        return None
    texts = [k for k, v in delta.items() if isinstance(v, str) and k != "role"]
    return texts[0] if len(texts) == 1 else None


def _raw_bounds(line: bytes, field: str) -> tuple[int, int] | None:
    """Where the JSON string value of the only ``"field"`` key of ``line`` starts and ends (its quotes excluded)."""
    key = b'"' + field.encode() + b'"'
    if line.count(key) != 1:  # a quoted name cannot be inside a string (its closing quote would be escaped)
        return None
    i = line.find(key) + len(key)
    while i < len(line) and line[i] in _SPACE:
        i += 1
    if line[i : i + 1] != b":":
        return None
    i += 1
    while i < len(line) and line[i] in _SPACE:
        i += 1
    if line[i : i + 1] != b'"':
        return None
    start = k = i + 1
    while (q := line.find(b'"', k)) >= 0:
        slashes = 0
        while line[q - 1 - slashes] == _BACKSLASH:
            slashes += 1
        if slashes % 2 == 0:
            return start, q
        k = q + 1
    return None


def run(body: bytes, t: Template) -> tuple[int, str, int]:
    """(events, their texts concatenated, where the run ends in ``body``): the events from ``t`` on that are ``t``
    but for their text, each followed by one more such event's prefix. The run ends at the start of the first line
    that is not; (0, "", t.start) if there is no run."""
    if not body.startswith(t.prefix, t.next_at):  # the next event breaks it already: no search over the rest
        return 0, "", t.start
    n = min(len(t.prefix), _NEEDLE)  # bytes.split's search costs per byte of needle at each match: 16 bytes split
    # a 500-token answer in 57 us, 64 in 92, 235 (the whole glue) in 248; a false match only shortens the run
    head, glue = t.prefix[:-n], t.suffix + t.prefix[:-n]
    pieces = body[t.start - 1 :].split(t.prefix[-n:])  # [head, raw1 + S + head, raw2 + S + head, ..., rest]
    if pieces[0] != head:
        return 0, "", t.start
    mids = pieces[1:-1]
    raws = list(map(itemgetter(slice(None, -len(glue))), mids))
    raws.append(b"")
    if glue.join(raws) == b"".join(mids):  # the usual case: every piece ends with the glue, the run goes on to the
        # last piece. (Each raw is its piece less the glue's length, so the two sides are as long only when no piece
        # is shorter than the glue; then, piece by piece from the first, each one is its raw and then the glue.)
        k = len(mids)
        stop = len(body) + 1 - len(pieces[-1]) - len(t.prefix)  # the start of the last piece's event
    else:
        ends = list(map(bytes.endswith, mids, repeat(glue)))
        k = ends.index(False)
        stop = t.start + sum(map(len, pieces[: k + 1])) + n * (k + 1) - len(t.prefix)
    del raws[k:]
    if not k:
        return 0, "", t.start
    texts = _decode(raws)
    if texts is None:
        return 0, "", t.start
    return k, "".join(texts), stop


def _decode(raws: list[bytes]) -> list[str] | None:
    """The JSON string bodies ``raws`` decoded, or None if one of them is not exactly one valid JSON string body."""
    if len(raws) > 1:  # the array in one join (its ends added to the first and last texts: they are short)
        first, last = raws[0], raws[-1]
        raws[0], raws[-1] = b'["' + first, last + b'"]'
        array = b'","'.join(raws)
        raws[0], raws[-1] = first, last
    else:
        array = b'["' + raws[0] + b'"]'
    try:
        texts = orjson.loads(array)
    except orjson.JSONDecodeError:
        return None
    if len(texts) != len(raws):
        return None
    if array.count(b'"') == 2 * len(raws) and b"\\" not in array:
        return texts  # type: ignore[no-any-return]  # no quote in any text (each has its two): the commas are ours
    if orjson.dumps(texts) == array:
        return texts  # type: ignore[no-any-return]  # the canonical encoding: each text is one of ours
    out: list[str] = []  # quotes, and escaped differently (\\uXXXX, \\/): check each one on its own
    for raw in raws:
        try:
            out.append(orjson.loads(b'"' + raw + b'"'))
        except orjson.JSONDecodeError:
            return None
    return out
