"""The assembler's batched merge (llmroute.router.sse_batch) against merging event by event, on generated streams.

Aspects: whatever the events (runs of content or reasoning deltas, a second choice's events in a run, tool calls,
logprobs, finish and usage events, unknown fields, keep-alives between events, error events, garbage), their text
(quotes, backslashes, newlines, non-ASCII, escaped or raw), their JSON style (spacing, key order,
``ensure_ascii``), the line endings and the chunking, the batched assembler gives the same answer - or the same
failure - as the event-by-event one; runs really are batched (the number of events parsed one by one stays small).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.router import jsonwire
from llmroute.router.sse import Assembler, ProtocolError

pytestmark = pytest.mark.unit

TEXT = st.text(
    st.sampled_from(["a", "b", " ", '"', "\\", "\n", "é", "文", "/", "\u2028", "\x01", "😀", "t"]), max_size=6
)


def encode(obj: Any, style: int) -> bytes:
    if style == 0:
        return orjson.dumps(obj)
    if style == 1:
        return json.dumps(obj).encode()  # ", " and ": ", non-ASCII as \\uXXXX
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, bool]:
    chat = draw(st.booleans())
    style = draw(st.integers(0, 2))
    end = draw(st.sampled_from([b"\n\n", b"\r\n\r\n", b"\n"]))
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m"}
    if draw(st.booleans()):
        head["system_fingerprint"] = "fp"

    def event(choice: dict[str, Any], index: int = 0, **extra: Any) -> bytes:
        return b"data: " + encode({**head, "choices": [{"index": index, **choice}], **extra}, style) + end

    def text_event(field: str, text: str, index: int = 0) -> bytes:
        if not chat:
            return event({"text": text, "logprobs": None, "finish_reason": None}, index)
        return event({"delta": {field: text}, "logprobs": None, "finish_reason": None}, index)

    out = [b": keep-alive" + end] * draw(st.integers(0, 2))
    out.append(
        text_event("content", draw(TEXT))
        if not chat
        else event({"delta": {"role": "assistant", "content": draw(TEXT)}, "logprobs": None, "finish_reason": None})
    )
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(
            st.sampled_from(
                [
                    "run",
                    "run",
                    "long",
                    "second_choice",
                    "reasoning",
                    "tool",
                    "logprobs",
                    "extra",
                    "obfuscated",
                    "keepalive",
                    "error",
                    "garbage",
                    "null",
                ]
            )
        )
        if kind in ("run", "reasoning"):
            field = "reasoning_content" if kind == "reasoning" else "content"
            out += [text_event(field, t) for t in draw(st.lists(TEXT, max_size=12))]
        elif kind == "long":  # long enough to be merged as a run (over 1 KB), with events of the second choice in it
            # that differ from the run's only in a digit (no quote moves: only the check of each piece's glue sees it)
            texts = draw(st.lists(TEXT, min_size=10, max_size=40))
            others = draw(st.sets(st.integers(0, len(texts) - 1), max_size=2))
            out += [text_event("content", t, 1 if i in others else 0) for i, t in enumerate(texts)]
        elif kind == "second_choice":
            out.append(text_event("content", draw(TEXT), 1))
        elif kind == "tool" and chat:
            out.append(event({"delta": {"tool_calls": [{"index": 0, "function": {"arguments": draw(TEXT)}}]}}))
        elif kind == "logprobs":
            out.append(
                event(
                    {
                        **({"delta": {"content": "x"}} if chat else {"text": "x"}),
                        "logprobs": {"content": [{"token": "x", "logprob": -0.5}]},
                    }
                )
            )
        elif kind == "extra":
            out.append(
                text_event("content", draw(TEXT))[: -len(end)].replace(b'"model"', b'"service_tier":"a","model"', 1)
                + end
            )
        elif kind == "obfuscated":  # OpenAI pads each chunk differently: no two events alike
            out += [
                text_event("content", t)[: -len(end)].replace(b'"model"', b'"obfuscation":"%d","model"' % i, 1) + end
                for i, t in enumerate(draw(st.lists(TEXT, max_size=8)))
            ]
        elif kind == "keepalive":
            out.append(b": keep-alive" + end)
        elif kind == "error":
            out.append(b'data: {"error": {"message": "overloaded"}}' + end)
        elif kind == "garbage":
            out.append(b"data: {not json" + end)
        elif kind == "null":
            out.append(event({"delta": {"content": None}, "logprobs": None, "finish_reason": None}))
    out.append(
        event(
            {"delta": {}, "logprobs": None, "finish_reason": "stop"}
            if chat
            else {"text": "", "logprobs": None, "finish_reason": "stop"}
        )
    )
    out.append(b"data: " + encode({**head, "choices": [], "usage": {"prompt_tokens": 1}}, style) + end)
    out.append(b"data: [DONE]" + end)
    return b"".join(out), chat


def assemble(stream: bytes, cuts: list[int], chat: bool, batched: bool) -> Any:
    asm = Assembler(chat, batched=batched)
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    try:
        for piece in pieces:
            asm.feed(piece)
            if asm.done:
                break
    except ProtocolError as exc:
        return "ProtocolError", str(exc)
    return asm.done, asm.result() if asm.done else None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_batched_merge_equals_event_by_event(case: tuple[bytes, bool], data: st.DataObject) -> None:
    stream, chat = case
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(len(stream) - 1, 1)), max_size=5))))
    assert assemble(stream, cuts, chat, batched=True) == assemble(stream, cuts, chat, batched=False)


def test_long_runs_are_merged_without_parsing_each_event(monkeypatch: pytest.MonkeyPatch) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return (
            b"data: "
            + json.dumps(
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                }
            ).encode()
            + b"\n\n"
        )

    stream = (
        chunk({"role": "assistant", "content": ""})
        + b"".join(chunk({"reasoning_content": f"r{i} "}) for i in range(300))
        + b"".join(chunk({"content": f't\u00e9{i}" '}) for i in range(300))
        + chunk({}, "stop")
        + b"data: [DONE]\n\n"
    )
    parsed: list[bytes] = []
    real = jsonwire.loads_chunk

    def counting(data: bytes) -> Any:
        parsed.append(data)
        return real(data)

    monkeypatch.setattr(jsonwire, "loads_chunk", counting)
    asm = Assembler(chat=True)
    for i in range(0, len(stream), 4096):
        asm.feed(stream[i : i + 4096])
    assert asm.done
    message = asm.result()["choices"][0]["message"]
    assert message["reasoning_content"] == "".join(f"r{i} " for i in range(300))
    assert message["content"] == "".join(f't\u00e9{i}" ' for i in range(300))
    assert len(parsed) <= 6  # the first event, per run its template and the event that ends it, the finish
