"""Server-sent events between the upstream and the client: relaying a stream and assembling a JSON answer from one.

Owns two per-attempt state machines, fed with the raw chunks the upstream module reads (no I/O here):

* :class:`StreamRelay` - what to write to a streaming client. Until the first ``data:`` event it works line by
  line: ``: keep-alive`` comments, blank lines and ``event:``/``id:`` lines pass through as they came (so the
  client's headers may already be out), and the first data event is detected (``first_data``: the first token,
  which ends the failover-invisible phase). A data event carrying ``{"error": ...}`` before that is an upstream
  failure, not a token (:class:`ProtocolError`). After the first event chunks are relayed as they arrived - never
  parsed, never re-serialised - and only watched for ``data: [DONE]``; if a failover happened after the headers
  went out, a comment ``: llmroute provider=<name> attempts=<n>`` is put in front of ``data: [DONE]``. Reasoning
  keys are renamed to the published model's field on the bytes (:class:`llmroute.router.reasoning.StreamRenamer`;
  a chunk without ``"reasoning`` in it passes as it came).
* :class:`Assembler` - a non-streaming answer built from an upstream stream. The router asks providers for a stream
  even when the client did not (``stream: true``, ``stream_options.include_usage: true``): DeepSeek answers a
  non-streaming request with blank lines until the whole answer is ready, so without a stream "no token yet" and
  "still thinking" look the same, and the time-to-first-token budget could not protect non-streaming clients. The
  assembled body has the upstream's non-streaming shape: ``id``, ``object`` (``chat.completion`` or
  ``text_completion``), ``created``, ``model``, ``system_fingerprint``, ``choices`` (``message`` with ``role``,
  ``content``, the reasoning text under the published model's field (:func:`llmroute.router.reasoning.settle`)
  and any other text fields, ``tool_calls`` merged from their deltas; or ``text``), ``logprobs``,
  ``finish_reason``, ``usage``, and unknown top-level fields. Its cost does not grow per token in Python: after
  the first event the bytes are only kept and searched for ``[DONE]`` and ``"error"``, and merged at the end,
  runs of repeated events in one go (:mod:`llmroute.router.sse_batch`).

Used by :mod:`llmroute.router.failover`.
"""

from __future__ import annotations

from typing import Any

from llmroute.router import jsonwire, reasoning, sse_batch

DONE = b"data: [DONE]"
_DONE_MARK = b"[DONE]"
_ERROR_MARK = b'"error"'
_ERROR_WINDOW = 4096
"""How far from the end of each read an ``"error"`` is looked for while bytes are kept: an error event ends the
stream, so it is in the last read (one elsewhere, followed by more events, is found when they are merged)."""
_DONE_WINDOW = 512
"""How far from the end of each read ``[DONE]`` is looked for while bytes are kept (a full search of every read
cost half of a 500-token answer's assembly): ``data: [DONE]`` ends the stream, so it is in the last read, followed
at most by blank lines or a comment; one further from the end is found when the body ends (:meth:`Assembler.end`)."""
_MAX_RUNS = 16
"""Runs of repeated events merged in one go per answer (a reasoning answer has two: thinking, then the answer);
past them, the rest is merged event by event."""
_RUN_MIN_BYTES = 1024
"""Below this many bytes left (a few events: a short answer, the finish and usage events after a run) looking for
a run costs more than merging event by event."""
_DONE_COMPACT = b"data:[DONE]"
_HEAD = ("id", "created", "model", "system_fingerprint")
"""Top-level fields whose first value is the answer's."""
_TOP_LEVEL = frozenset({*_HEAD, "object", "choices", "usage"})
"""Top-level fields the assembler handles; any other passes through (last value wins)."""
_CHOICE_FIELDS = frozenset({"index", "delta", "text", "logprobs", "finish_reason"})
"""Choice fields the assembler handles; any other passes through (last value wins)."""


class ProtocolError(Exception):
    """The upstream sent an error event or an unparsable chunk before the answer was committed."""


def end_comment(provider: str, attempts: int) -> bytes:
    """The SSE comment that names the serving provider after a failover the client could not see."""
    return f": llmroute provider={provider} attempts={attempts}\n\n".encode()


def _payload(line: bytes) -> bytes:
    """The data of a ``data:`` line (one optional space after the colon removed, as the SSE spec says)."""
    value = line[5:]
    return value[1:] if value[:1] == b" " else value


def _is_error_event(payload: bytes) -> bool:
    return payload.lstrip().startswith((b'{"error"', b'{ "error"'))


def _is_done(line: bytes) -> bool:
    return line.rstrip(b"\r") in (DONE, _DONE_COMPACT)


class StreamRelay:
    """One streaming attempt: ``feed`` upstream chunks, write what it returns to the client."""

    __slots__ = ("_comment", "_names", "_partial", "_tail", "done", "first_data")

    def __init__(self, comment: bytes | None = None, reasoning_field: str = reasoning.DEFAULT) -> None:
        self._comment = comment  # inserted before data: [DONE] (set after a failover behind sent headers)
        self._names = reasoning.StreamRenamer(reasoning_field)
        self._partial = b""
        self._tail = b""
        self.first_data = False
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to relay for ``chunk``; raises :class:`ProtocolError` for an error event before the first."""
        if self.first_data and self._comment is None:  # the hot path: one search for [DONE], one in the renamer
            if _DONE_MARK in chunk or _DONE_MARK in self._tail + chunk[:len(_DONE_MARK)]:
                window = self._tail + chunk
                if DONE in window or _DONE_COMPACT in window:
                    self.done = True
            self._tail = chunk[-len(DONE):]
            return self._names.feed(chunk)
        return self._names.feed(self._by_line(chunk))

    def close(self) -> bytes:
        """What is still owed to the client when the stream ends (a restoring relay's held text: see
        :class:`llmroute.router.redaction.RestoringRelay`); nothing here."""
        return b""

    def _by_line(self, chunk: bytes) -> bytes:
        data = self._partial + chunk
        if self._comment is None:
            return self._to_first(data)
        end = data.rfind(b"\n")
        if end < 0:
            self._partial = data
            return b""
        complete, self._partial = data[:end + 1], data[end + 1:]
        out: list[bytes] = []
        for line in complete.split(b"\n")[:-1]:
            if not self.first_data and line.startswith(b"data:"):
                if _is_error_event(_payload(line)):
                    raise ProtocolError("error event before the first token")
                self.first_data = True
            elif self.first_data and _is_done(line):
                self.done = True
                if self._comment is not None:
                    out.append(self._comment.rstrip(b"\n"))
                    out.append(b"")
            out.append(line)
        relayed = b"\n".join(out) + b"\n"
        if self.first_data and self._comment is None:  # from here on, raw relay
            relayed, self._partial = relayed + self._partial, b""
            self._tail = relayed[-len(DONE):]
        return relayed


    def _to_first(self, data: bytes) -> bytes:
        """Before the first event, without a comment to insert: scan lines only up to the first event, then relay
        everything (the rest of a large first read is not split into lines, only searched for ``[DONE]``)."""
        pos = 0
        while (nl := data.find(b"\n", pos)) >= 0:
            if data.startswith(b"data:", pos):
                if _is_error_event(_payload(data[pos:nl])):
                    raise ProtocolError("error event before the first token")
                self.first_data = True
                self.done = _has_done_line(data, nl + 1)
                self._partial = b""
                self._tail = data[-len(DONE):]
                return data
            pos = nl + 1
        self._partial = data[pos:]
        return data[:pos]


def _has_done_line(data: bytes, start: int) -> bool:
    """Whether a complete line of ``data`` from ``start`` on is ``data: [DONE]`` (trailing ``\\r`` allowed)."""
    for marker in (DONE, _DONE_COMPACT):
        i = data.find(marker, start)
        while i >= 0:
            k = i + len(marker)
            while k < len(data) and data[k] == 13:
                k += 1
            if (i == 0 or data[i - 1] == 10) and k < len(data) and data[k] == 10:
                return True
            i = data.find(marker, i + 1)
    return False


class Assembler:
    """Builds the non-streaming response body from the chunks of one upstream stream.

    Until the first data event, chunks are read line by line. After it they are only kept, and watched for
    ``[DONE]`` and ``"error"`` (in each read's last :data:`_DONE_WINDOW` and :data:`_ERROR_WINDOW` bytes), with no
    per-event work: at ``data: [DONE]`` the kept bytes are merged at once, runs of repeated events through
    :mod:`llmroute.router.sse_batch` and anything else event by event - with the same result as merging each event
    as it came. A chunk with ``"error"`` near its end sends the kept bytes, and every later chunk, event by event,
    so an error event that ends a stream fails the attempt as soon as it arrives.
    """

    __slots__ = ("_choices", "_eventwise", "_extra", "_head", "_kept", "_need_head", "_partial", "_tail", "_usage",
                 "chat", "done", "first_data", "reasoning_field")

    def __init__(self, chat: bool, reasoning_field: str = reasoning.DEFAULT, batched: bool = True) -> None:
        """``batched=False``: merge event by event as they come (the reference the batched merge is tested against)."""
        self.chat = chat
        self.reasoning_field = reasoning_field  # the name the message carries reasoning text under
        self.first_data = False
        self.done = False
        self._partial = b""
        self._kept: list[bytes] | None = None  # after the first data event: the stream's bytes, merged at [DONE]
        self._tail = b""  # the kept bytes' last few (a marker split over two reads)
        self._eventwise = not batched  # an "error" came: no more keeping
        self._head: dict[str, Any] = {}
        self._need_head = True  # until every _HEAD key has been seen (the first chunk usually has them all)
        self._extra: dict[str, Any] = {}
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None

    def feed(self, chunk: bytes) -> None:
        """Consume ``chunk``; blank lines and comments are ignored; raises :class:`ProtocolError`."""
        if self._kept is not None:
            self._keep(chunk)
            return
        data = self._partial + chunk
        pos = 0
        while (nl := data.find(b"\n", pos)) >= 0:
            line, pos = data[pos:nl], nl + 1
            if line[:5] == b"data:":
                payload = line[5:].strip()  # the SSE spec's one optional space, and any \r or padding
                if payload == b"[DONE]":
                    self.done = True
                    continue
                self._data(payload)
                if not self.done and not self._eventwise:
                    self._kept, self._tail, self._partial = [b"\n"], b"", b""  # the first event's "\n" first:
                    # every kept line follows one
                    self._keep(data[pos:])
                    return
        self._partial = data[pos:]

    def _keep(self, chunk: bytes) -> None:
        kept = self._kept
        assert kept is not None
        kept.append(chunk)
        edge = self._tail + chunk[:len(_DONE_MARK)]
        self._tail = chunk[-len(_DONE_MARK):]
        n = len(chunk)  # (searched from an offset: a slice of the read's end would copy it)
        if chunk.find(_ERROR_MARK, n - _ERROR_WINDOW if n > _ERROR_WINDOW else 0) >= 0 or _ERROR_MARK in edge:
            self._by_event()
        elif chunk.find(_DONE_MARK, n - _DONE_WINDOW if n > _DONE_WINDOW else 0) >= 0 or _DONE_MARK in edge:
            self._at_done()

    def end(self) -> None:
        """The upstream's response body ended: a ``data: [DONE]`` line the reads' ends did not show (one followed
        by more than :data:`_DONE_WINDOW` bytes in the same read) is looked for in everything kept."""
        if self._kept is not None and not self.done:
            self._at_done()

    def _by_event(self) -> None:
        """From now on, event by event (the kept bytes first)."""
        kept, self._kept, self._eventwise = self._kept or [], None, True
        self.feed(b"".join(kept))

    def _at_done(self) -> None:
        """A ``[DONE]`` arrived: if the last one is a complete ``data: [DONE]`` line with nothing but blank lines
        after it, merge everything before it (an earlier ``[DONE]`` line in there ends the answer the same way
        event by event would, the events after it merged); with more after it, event by event. Searched from the
        end (``rfind``): the line is there, so the search touches a few bytes, not the whole answer."""
        kept = self._kept
        assert kept is not None
        body = b"".join(kept) if len(kept) > 1 else kept[0]
        kept[:] = [body]
        i = body.rfind(_DONE_MARK)
        while i >= 0:
            start, end = body.rfind(b"\n", 0, i) + 1, body.find(b"\n", i)
            line = body[start:end] if end >= 0 else b""
            if line[:5] == b"data:" and line[5:].strip() == b"[DONE]":
                if body[end:].strip():  # events after [DONE]: merged as they come, as always
                    self._by_event()
                    return
                self._merge_lines(body[:start])
                self._kept, self.done = None, True
                return
            i = body.rfind(_DONE_MARK, 0, i)

    def _merge_lines(self, body: bytes) -> None:
        """Merge ``body`` (complete lines, each after a newline): runs in one go, other events one by one."""
        pos = runs = 0
        while (runs < _MAX_RUNS and len(body) - pos >= _RUN_MIN_BYTES
               and (t := sse_batch.template(body, pos, self.chat)) is not None):
            self._lines(body[pos:t.start])
            pos = t.end + 1
            if t.field:
                count, text, stop = sse_batch.run(body, t)
                if count:  # merging the template once with the run's text is merging each event of the run
                    choice = t.event["choices"][0]
                    if self.chat:
                        choice["delta"][t.field] = text
                    else:
                        choice["text"] = text
                    self._event(t.event)
                    runs, pos = runs + 1, stop
                    continue
            if isinstance(t.event, dict) and "error" not in t.event:
                self._event(t.event)
            else:
                self._lines(body[t.start:t.end + 1])  # raises as event by event would
        self._lines(body[pos:])

    def _lines(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if line[:5] == b"data:":
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    self.done = True
                else:
                    self._data(payload)

    def _data(self, payload: bytes) -> None:
        try:
            chunk = jsonwire.loads_chunk(payload)
        except ValueError:
            raise ProtocolError("unparsable data event") from None
        if not isinstance(chunk, dict) or "error" in chunk:
            raise ProtocolError("error event" if isinstance(chunk, dict) else "data event is not an object")
        self._event(chunk)

    def _event(self, chunk: dict[str, Any]) -> None:
        self.first_data = True
        if self._need_head:
            head = self._head
            for key in _HEAD:
                if key in chunk and key not in head:
                    head[key] = chunk[key]
            self._need_head = len(head) < len(_HEAD)
        if not _TOP_LEVEL.issuperset(chunk):
            for key, value in chunk.items():
                if key not in _TOP_LEVEL:
                    self._extra[key] = value
        usage = chunk.get("usage")
        if usage is not None:
            self._usage = usage
        for raw in chunk.get("choices") or ():
            index = raw.get("index", 0)
            choice = self._choices.get(index)
            if choice is None:
                choice = self._choices[index] = _Choice(index)
            choice.merge(raw, self.chat)

    def result(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self._head.get("id"),
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self._head.get("created"),
            "model": self._head.get("model"),
        }
        if "system_fingerprint" in self._head:
            body["system_fingerprint"] = self._head["system_fingerprint"]
        body["choices"] = [self._choices[i].render(self.chat, self.reasoning_field) for i in sorted(self._choices)]
        if self._usage is not None:
            body["usage"] = self._usage
        body.update(self._extra)
        return body


class _Choice:
    """One choice being assembled."""

    __slots__ = ("extra", "finish_reason", "index", "logprobs", "other", "role", "text", "tool_calls")

    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        self.text: dict[str, list[str]] = {}  # delta text fields (content, reasoning_content, ...) or "text"; a
        # field only ever null is left out of the message (content excepted: it is always there)
        self.other: dict[str, Any] = {}
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: Any = None
        self.extra: dict[str, Any] = {}

    def merge(self, raw: dict[str, Any], chat: bool) -> None:
        if chat:
            delta = raw.get("delta")
            if delta:
                text = self.text
                for key, value in delta.items():
                    if isinstance(value, str) and key != "role" and key != "tool_calls":
                        parts = text.get(key)
                        if parts is None:
                            text[key] = [value]
                        else:
                            parts.append(value)
                    else:
                        self._delta(key, value)
        elif isinstance(raw.get("text"), str):
            self.text.setdefault("text", []).append(raw["text"])
        logprobs = raw.get("logprobs")
        if logprobs is not None:
            self._logprobs(logprobs)
        finish_reason = raw.get("finish_reason")
        if finish_reason is not None:
            self.finish_reason = finish_reason
        if not _CHOICE_FIELDS.issuperset(raw):
            for key, value in raw.items():
                if key not in _CHOICE_FIELDS:
                    self.extra[key] = value

    def _delta(self, key: str, value: Any) -> None:
        """A delta field that is not plain text."""
        if key == "role":
            self.role = value or self.role
        elif key == "tool_calls":
            for call in value or ():
                self._tool_call(call)
        elif isinstance(value, str):
            self.text.setdefault(key, []).append(value)
        elif value is not None:
            self.other[key] = value

    def _tool_call(self, call: dict[str, Any]) -> None:
        slot = self.tool_calls.setdefault(call.get("index", len(self.tool_calls)), {})
        for key, value in call.items():
            if key == "function" and isinstance(value, dict):
                fn = slot.setdefault("function", {})
                for fkey, fvalue in value.items():
                    fn[fkey] = fn.get(fkey, "") + fvalue if isinstance(fvalue, str) else fvalue
            elif key != "index" and value is not None:
                slot[key] = value

    def _logprobs(self, logprobs: Any) -> None:
        if not isinstance(logprobs, dict):
            self.logprobs = logprobs
            return
        acc = self.logprobs if isinstance(self.logprobs, dict) else {}
        for key, value in logprobs.items():
            if isinstance(value, list) and isinstance(acc.get(key), list):
                acc[key] = acc[key] + value
            else:
                acc[key] = value
        self.logprobs = acc

    def render(self, chat: bool, reasoning_field: str) -> dict[str, Any]:
        if not chat:
            return {"text": "".join(self.text.get("text", [])), "index": self.index, "logprobs": self.logprobs,
                    "finish_reason": self.finish_reason, **self.extra}
        reasoning.settle(self.text, reasoning_field)
        content = "".join(self.text["content"]) if "content" in self.text else None
        if content is None and not self.tool_calls:
            content = ""
        message: dict[str, Any] = {"role": self.role or "assistant", "content": content}
        for key in sorted(self.text.keys() - {"content"}):
            message[key] = "".join(self.text[key])
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        message.update(self.other)
        return {"index": self.index, "message": message, "logprobs": self.logprobs,
                "finish_reason": self.finish_reason, **self.extra}
