"""The SSE state machines on their own (pure, no I/O): relaying a stream and assembling a JSON answer from one.

Aspects: comments and blank lines pass before the first data event, which is detected whatever the chunking; an
error event before it is an upstream failure; after it chunks pass untouched; the failover comment goes right
before ``data: [DONE]``; the assembler merges content, reasoning, tool-call deltas, logprobs and usage into the
non-streaming shape, and tolerates DeepSeek's blank lines.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmroute.router.sse import Assembler, ProtocolError, StreamRelay, end_comment

pytestmark = pytest.mark.unit


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0, **extra: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m", "system_fingerprint": "fp",
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}


def test_relay_passes_keep_alives_and_detects_first_data_across_chunks() -> None:
    relay = StreamRelay()
    assert relay.feed(b": keep-alive\n\n") == b": keep-alive\n\n"
    assert relay.feed(b"\n") == b"\n" and not relay.first_data
    assert relay.feed(b"data: {\"cho") == b""  # incomplete line: held back until it can be classified
    assert not relay.first_data
    assert relay.feed(b"ices\":[]}\n\ndata: {\"x\":1}") == b"data: {\"choices\":[]}\n\ndata: {\"x\":1}"
    assert relay.first_data and not relay.done
    assert relay.feed(b"\n\ndata: [DO") == b"\n\ndata: [DO"
    assert relay.feed(b"NE]\n\n") == b"NE]\n\n"
    assert relay.done


def test_relay_error_event_before_first_token_is_a_failure() -> None:
    relay = StreamRelay()
    relay.feed(b": keep-alive\n\n")
    with pytest.raises(ProtocolError):
        relay.feed(b'data: {"error": {"message": "overloaded"}}\n\n')


def test_relay_inserts_failover_comment_before_done() -> None:
    relay = StreamRelay(end_comment("together", 2))
    out = relay.feed(b": keep-alive\n\n" + sse({"a": 1}) + b"data: [DONE]\n\n")
    assert out == b": keep-alive\n\n" + sse({"a": 1}) + b": llmroute provider=together attempts=2\n\ndata: [DONE]\n\n"
    assert relay.done


def test_assembler_builds_the_non_stream_shape() -> None:
    asm = Assembler(chat=True)
    stream = (b"\n\n: keep-alive\n\n"
              + sse(chunk({"role": "assistant", "content": None, "reasoning_content": "Think"}))
              + sse(chunk({"content": None, "reasoning_content": " hard"}))
              + sse(chunk({"content": "Hel", "reasoning_content": None}))
              + sse(chunk({"content": "lo"}, "stop", service_tier="default"))
              + sse({**chunk({}), "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 4}})
              + b"data: [DONE]\n\n")
    for i in range(0, len(stream), 7):  # any chunking
        asm.feed(stream[i:i + 7])
    assert asm.done
    assert asm.result() == {
        "id": "c1", "object": "chat.completion", "created": 7, "model": "m", "system_fingerprint": "fp",
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": "Hello", "reasoning_content": "Think hard"},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 4}, "service_tier": "default",
    }


def test_assembler_merges_tool_calls_and_logprobs() -> None:
    asm = Assembler(chat=True)
    calls = [
        {"role": "assistant", "content": None,
         "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                         "function": {"name": "get", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}},
                        {"index": 1, "id": "call_2", "type": "function",
                         "function": {"name": "now", "arguments": "{}"}}]},
    ]
    for delta in calls:
        asm.feed(sse(chunk(delta)))
    asm.feed(sse({**chunk({}, "tool_calls"), "choices": [
        {"index": 0, "delta": {}, "logprobs": {"content": [{"token": "x", "logprob": -0.1}]},
         "finish_reason": "tool_calls"}]}))
    asm.feed(b"data: [DONE]\n\n")
    choice = asm.result()["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]}
    assert choice["finish_reason"] == "tool_calls"
    assert choice["logprobs"] == {"content": [{"token": "x", "logprob": -0.1}]}


def test_assembler_text_completions_and_several_choices() -> None:
    asm = Assembler(chat=False)
    for index, text in ((0, "Hel"), (1, "Bon"), (0, "lo"), (1, "jour")):
        asm.feed(sse({"id": "t", "object": "text_completion", "created": 1, "model": "m",
                      "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": None}]}))
    asm.feed(b"data: [DONE]\n\n")
    body = asm.result()
    assert body["object"] == "text_completion"
    assert [(c["index"], c["text"]) for c in body["choices"]] == [(0, "Hello"), (1, "Bonjour")]


@pytest.mark.parametrize("payload", [b'data: {"error": {"message": "x"}}\n\n', b"data: {not json\n\n"])
def test_assembler_rejects_error_events_and_garbage(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        Assembler(chat=True).feed(payload)


def test_assembler_finds_done_at_the_end_of_each_read_without_scanning_the_answer() -> None:
    """``[DONE]`` is looked for in each read's last bytes only (a long answer is not searched per read), so a
    500-token answer in one read completes at once."""
    events = [sse(chunk({"content": f"t{i} "})) for i in range(500)]
    asm = Assembler(chat=True)
    asm.feed(b"".join(events) + b"data: [DONE]\n\n: trailing comment\n\n")
    assert asm.done
    assert asm.result()["choices"][0]["message"]["content"] == "".join(f"t{i} " for i in range(500))


def test_assembler_a_done_line_far_from_the_end_of_its_read_is_found_when_the_body_ends() -> None:
    """A ``data: [DONE]`` followed in the same read by more than the watched window (a long comment) is not seen
    while reading; at the end of the response body it is, and the answer is the same as event by event."""
    stream = (sse(chunk({"role": "assistant", "content": "Hel"})) + sse(chunk({"content": "lo"}, "stop"))
              + b"data: [DONE]\n\n: " + b"x" * 2000 + b"\n\n")
    asm = Assembler(chat=True)
    asm.feed(stream)
    assert not asm.done  # not yet: the marker is 2 KB from the end of the read
    asm.end()
    assert asm.done
    reference = Assembler(chat=True, batched=False)
    reference.feed(stream)
    assert reference.done and asm.result() == reference.result()
    assert asm.result()["choices"][0]["message"]["content"] == "Hello"


def test_assembler_end_without_done_leaves_the_answer_incomplete() -> None:
    asm = Assembler(chat=True)
    asm.feed(sse(chunk({"content": "[DONE]"})) + sse(chunk({"content": "data: [DONE]"})))  # text, not a line
    asm.end()
    assert not asm.done
