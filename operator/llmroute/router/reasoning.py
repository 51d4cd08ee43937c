"""One name for reasoning text, whichever backend served: ``reasoning`` (current vLLM) or ``reasoning_content``
(DeepSeek's API, most hosted APIs).

Owns the two directions of issue "Same weights, same answer shape":

* **Answers** - a published model promises one field (``RouteEntry.reasoning_field``); the other name is renamed to
  it in stream deltas (:class:`StreamRenamer`, fed by :class:`llmroute.router.sse.StreamRelay`), in assembled
  messages (:func:`settle`, used by :class:`llmroute.router.sse.Assembler`) and in plain JSON answers
  (:func:`rename_json`). The answer carries only the promised name, never both. Renaming is done on the bytes: a key
  is the exact ``"reasoning"`` or ``"reasoning_content"`` whose opening quote is not escaped and which is followed by
  ``:`` (in valid JSON that is a key and nothing else; an escaped ``\\"reasoning\\":`` inside a string is text and
  stays as it is), so everything else, content included, is relayed byte for byte. Only an event or body carrying
  both names (vLLM 0.11-0.16 sent both) is parsed and re-serialised, keeping the promised one (the other's value if
  the promised one is empty). Fast path: a stream chunk without the other name's quoted key (``"reasoning"`` when
  ``reasoning_content`` is promised, and the reverse) is returned as it came.
* **Input history** - clients send back what they got, so assistant messages may carry either name (or both).
  :class:`History` makes, once per request and at most once per name, the messages an upstream gets:

  - an assistant message **without** ``tool_calls`` loses both fields, for every upstream: DeepSeek's documented
    rule for its reasoner is a 400 for ``reasoning_content`` in input (api-docs.deepseek.com/guides/reasoning_model);
    its thinking mode ignores it there; vLLM's chat templates drop earlier turns' reasoning anyway;
  - an assistant message **with** ``tool_calls`` keeps its reasoning, under the upstream's name: ``reasoning`` for
    a self-hosted provider (current vLLM reads that name for interleaved thinking; vllm-project/router PR #115 fixed
    that router's multi-turn tool calls by sending ``reasoning`` instead of ``reasoning_content``), and
    ``reasoning_content`` for any other, because DeepSeek's thinking mode rejects a tool-call turn whose
    ``reasoning_content`` was not passed back (400 "The reasoning_content in the thinking mode must be passed back
    to the API", api-docs.deepseek.com/guides/thinking_mode): stripping it would break agents there.

  Fast path: :func:`history` returns None (nothing to do per attempt) unless an assistant message carries a field.

Pure (no I/O). Used by :mod:`llmroute.router.sse`, :mod:`llmroute.router.proxy` and :mod:`llmroute.router.failover`.
"""

from __future__ import annotations

from typing import Any

from llmroute.router import jsonwire

REASONING = "reasoning"
REASONING_CONTENT = "reasoning_content"
DEFAULT = REASONING_CONTENT
"""The field clients get when the published model does not say (DeepSeek's name)."""
MARKER = b'"reasoning'
"""Bytes every key of either name starts with; data without them needs no work."""
_OTHER = {REASONING: REASONING_CONTENT, REASONING_CONTENT: REASONING}
_QUOTED = {REASONING: b'"reasoning"', REASONING_CONTENT: b'"reasoning_content"'}
_BACKSLASH = 0x5C
_SPACE = b" \t\r\n"


def _keys(data: bytes) -> list[tuple[int, int, str]]:
    """(start, end, name) of every ``"reasoning"``/``"reasoning_content"`` key in JSON text ``data``."""
    found: list[tuple[int, int, str]] = []
    i = data.find(MARKER)
    while i >= 0:
        j = i + len(MARKER)
        if data[j:j + 1] == b'"':
            name, end = REASONING, j + 1
        elif data.startswith(b'_content"', j):
            name, end = REASONING_CONTENT, j + 9
        else:
            name, end = "", j  # another key or text, e.g. "reasoning_tokens"
        if name and (i == 0 or data[i - 1] != _BACKSLASH):
            k = end
            while k < len(data) and data[k] in _SPACE:
                k += 1
            if data[k:k + 1] == b":":
                found.append((i, end, name))
        i = data.find(MARKER, end)
    return found


def rename_json(data: bytes, promised: str) -> bytes:
    """JSON text ``data`` (a body or one event's payload) with reasoning under the ``promised`` name only."""
    if MARKER not in data:
        return data
    keys = _keys(data)
    others = _others(keys, promised)
    if not others:
        return data
    if len(others) < len(keys):  # both names: only parsing tells which object has which
        doc = _parsed(data)
        if doc is not None:
            _settle_all(doc, promised)
            return jsonwire.dumps(doc)
    return _renamed(data, others, promised)


def _others(keys: list[tuple[int, int, str]], promised: str) -> list[tuple[int, int, str]]:
    other = _OTHER[promised]
    return [k for k in keys if k[2] == other]


def _renamed(data: bytes, keys: list[tuple[int, int, str]], promised: str) -> bytes:
    """``data`` with every one of ``keys`` (keys of the other name) written as ``promised``."""
    out: list[bytes] = []
    prev = 0
    for start, end, _ in keys:
        out += (data[prev:start], _QUOTED[promised])
        prev = end
    out.append(data[prev:])
    return b"".join(out)


def _parsed(data: bytes) -> Any:
    """``data`` parsed, or None when it is not JSON (then it is only renamed on the bytes)."""
    try:
        return jsonwire.loads_chunk(data)
    except ValueError:
        return None


def _settle_all(node: Any, promised: str) -> None:
    if isinstance(node, dict):
        settle(node, promised)
        for value in node.values():
            _settle_all(value, promised)
    elif isinstance(node, list):
        for item in node:
            _settle_all(item, promised)


def settle(fields: dict[str, Any], promised: str) -> None:
    """Rename the other reasoning field of ``fields`` to ``promised`` in place (same position); if both are there,
    keep ``promised``, or the other's value when ``promised`` is empty."""
    other = _OTHER[promised]
    if other not in fields:
        return
    if promised in fields:
        value = fields.pop(other)
        if not fields[promised]:
            fields[promised] = value
        return
    items = [(promised if key == other else key, value) for key, value in fields.items()]
    fields.clear()
    fields.update(items)


class StreamRenamer:
    """Renames reasoning keys in an SSE byte stream, whatever its chunking.

    A key split over two reads is held back until its rest arrives: the incomplete last line is kept when it has
    ``"reasoning`` in it or ends in what may become that. Everything else goes out as it came, so a stream that never
    names reasoning (or a ``data: [DONE]`` line) is never delayed. An event with both names is parsed and written
    again; if its start went out before the names came (a read ended early in the line), the rest cannot be parsed
    and is renamed on the bytes: the client still sees one name, possibly twice in that object (the last wins).
    """

    __slots__ = ("_carry", "_other", "promised")

    def __init__(self, promised: str) -> None:
        self.promised = promised
        self._other = _QUOTED[_OTHER[promised]]  # only the other name needs work: a stream that already uses the
        # promised one (DeepSeek's reasoning_content to a route promising it) passes with one search per chunk
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        other = self._other
        if not self._carry and other not in chunk and chunk[-1:] == b"\n":  # the hot path: one search per chunk
            return chunk
        data, self._carry = self._carry + chunk, b""
        end = data.rfind(b"\n") + 1
        rest = data[end:]  # an incomplete last line naming either (or ending in a start of a name) waits for its
        # end: the other name may still come in it, and an event with both is parsed whole
        if rest and (MARKER in rest or _split_marker(rest)):
            data, self._carry = data[:end], rest
        return data if other not in data else self._lines(data)

    def _lines(self, data: bytes) -> bytes:
        other, promised = self._other, _QUOTED[self.promised]
        if promised not in data and data.count(other) == data.count(other + b":"):
            # every key of the other name, none of the promised one: one replace (a quoted name followed by ":"
            # is a key - inside a string its quotes would be escaped)
            return data.replace(other + b":", promised + b":")
        keys = _keys(data)
        others = _others(keys, self.promised)
        if not others:
            return data
        if len(others) == len(keys):
            return _renamed(data, others, self.promised)  # no object can end up with both: rename every key
        return b"\n".join(self._line(line) for line in data.split(b"\n"))  # both names: event by event

    def _line(self, line: bytes) -> bytes:
        if MARKER not in line:
            return line
        if not line.startswith(b"data:"):  # the rest of a line whose start went out already: bytes only
            return _renamed(line, _others(_keys(line), self.promised), self.promised)
        head = 6 if line[5:6] == b" " else 5
        payload = line[head:].rstrip(b"\r")
        return line[:head] + rename_json(payload, self.promised) + line[head + len(payload):]


def _split_marker(data: bytes) -> bool:
    """Whether ``data`` ends in a proper beginning of ``"reasoning`` (its rest may be in the next read)."""
    k = data.rfind(b'"', -len(MARKER))
    return k >= 0 and MARKER.startswith(data[k:])


class History:
    """The ``messages`` of one request as each kind of upstream gets them (see the module docstring), built at
    most once per name: the body is re-sent on every attempt."""

    __slots__ = ("_by_name", "_messages")

    def __init__(self, messages: list[Any]) -> None:
        self._messages = messages
        self._by_name: dict[str, list[Any]] = {}

    def messages(self, self_hosted: bool) -> list[Any]:
        name = REASONING if self_hosted else REASONING_CONTENT
        out = self._by_name.get(name)
        if out is None:
            out = self._by_name[name] = [_input_message(m, name) for m in self._messages]
        return out


def history(body: dict[str, Any]) -> History | None:
    """A :class:`History` for a chat request whose assistant messages carry reasoning, else None."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not any(_has_reasoning(m) for m in messages):
        return None
    return History(messages)


def _has_reasoning(message: Any) -> bool:
    return (isinstance(message, dict) and message.get("role") == "assistant"
            and (REASONING in message or REASONING_CONTENT in message))


def _input_message(message: Any, name: str) -> Any:
    if not _has_reasoning(message):
        return message
    out = dict(message)
    if out.get("tool_calls"):
        settle(out, name)
    else:
        out.pop(REASONING, None)
        out.pop(REASONING_CONTENT, None)
    return out
