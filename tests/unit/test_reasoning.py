"""The reasoning-name transforms on their own (bytes in, bytes out; no I/O).

Aspects: a chunk without ``"reasoning`` comes back as the same object; the other name is renamed on the bytes, the
rest byte for byte; text that spells ``"reasoning":`` (escaped quotes), ``reasoning_tokens`` and tool-call arguments
are never touched; an object with both names keeps only the promised one; a key split over reads is renamed and a
``[DONE]`` line is never held back; through :class:`StreamRelay` and :class:`Assembler` too; request history: no
reasoning on plain assistant turns, the upstream's name on tool-call turns, built once per name.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmroute.router.reasoning import REASONING, REASONING_CONTENT, StreamRenamer, history, rename_json, settle
from llmroute.router.sse import Assembler, StreamRelay

pytestmark = pytest.mark.unit


def event(delta: dict[str, Any], **choice: Any) -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m",
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None, **choice}]}
    return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def relay_all(renamer: StreamRenamer, data: bytes, size: int) -> bytes:
    return b"".join(renamer.feed(data[i:i + size]) for i in range(0, len(data), size))


def test_bytes_without_reasoning_are_returned_as_they_came() -> None:
    chunk = event({"content": "Hello"})
    assert StreamRenamer(REASONING_CONTENT).feed(chunk) is chunk
    assert rename_json(chunk, REASONING) is chunk


@pytest.mark.parametrize(("promised", "other"), [(REASONING_CONTENT, REASONING), (REASONING, REASONING_CONTENT)])
def test_the_other_name_is_renamed_and_nothing_else_changes(promised: str, other: str) -> None:
    raw = event({"content": None, other: "Let me think"})
    out = StreamRenamer(promised).feed(raw)
    assert out == raw.replace(f'"{other}":'.encode(), f'"{promised}":'.encode())
    assert json.loads(out[6:])["choices"][0]["delta"] == {"content": None, promised: "Let me think"}


def test_the_promised_name_is_left_alone() -> None:
    raw = event({"content": "Hi", REASONING_CONTENT: None})  # DeepSeek's content deltas name the field as null
    assert StreamRenamer(REASONING_CONTENT).feed(raw) is raw


def test_text_that_spells_the_key_is_not_mangled() -> None:
    text = 'He wrote {"reasoning": "x"} and "reasoning_content": y, then \\"reasoning\\"'
    raw = event({"content": text, REASONING: 'quote "reasoning": here'})
    out = StreamRenamer(REASONING_CONTENT).feed(raw)
    delta = json.loads(out[6:])["choices"][0]["delta"]
    assert delta == {"content": text, REASONING_CONTENT: 'quote "reasoning": here'}
    assert out.count(b'"reasoning_content":') == 1


def test_values_and_other_keys_named_like_reasoning_are_not_keys() -> None:
    raw = (b'data: {"type":"reasoning","choices":[],"usage":{"completion_tokens_details":{"reasoning_tokens":8}},'
           b'"tags":["reasoning"]}\n\n')
    assert StreamRenamer(REASONING_CONTENT).feed(raw) == raw


def test_tool_call_deltas_are_untouched() -> None:
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": '{"reasoning": "keep me", "reasoning_content": 1}'}}
    raw = event({"tool_calls": [call]}) + event({REASONING: "why"})
    out = StreamRenamer(REASONING_CONTENT).feed(raw)
    first, second = (json.loads(part[6:]) for part in out.split(b"\n\n")[:2])
    assert first["choices"][0]["delta"]["tool_calls"] == [call]
    assert second["choices"][0]["delta"] == {REASONING_CONTENT: "why"}
    assert out.startswith(event({"tool_calls": [call]}))


def test_a_delta_with_both_names_keeps_only_the_promised_one() -> None:
    raw = event({REASONING: "think", REASONING_CONTENT: "think"}) + event({REASONING_CONTENT: "more"})
    out = StreamRenamer(REASONING).feed(raw)
    deltas = [json.loads(part[6:])["choices"][0]["delta"] for part in out.split(b"\n\n")[:2]]
    assert deltas == [{REASONING: "think"}, {REASONING: "more"}]
    assert out.endswith(event({REASONING: "more"}))  # the line with one name is still renamed on the bytes


def test_both_names_with_the_promised_one_empty_keep_the_other_value() -> None:
    raw = event({REASONING_CONTENT: None, REASONING: "think"})
    out = StreamRenamer(REASONING_CONTENT).feed(raw)
    assert json.loads(out[6:])["choices"][0]["delta"] == {REASONING_CONTENT: "think"}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 11, 64])
def test_keys_split_over_reads_are_renamed(size: int) -> None:
    raw = (b": keep-alive\n\n" + event({"role": "assistant", "content": None, REASONING: "Think"})
           + event({"content": "Hi \"reasoning\": no", REASONING: None}) + b"data: [DONE]\n\n")
    want = raw.replace(b'"reasoning":', b'"reasoning_content":')
    assert relay_all(StreamRenamer(REASONING_CONTENT), raw, size) == want


def test_any_chunking_of_a_mixed_stream_gives_the_same_events() -> None:
    events = [event({"role": "assistant", REASONING: "a", REASONING_CONTENT: "a"}), event({REASONING: "b"}),
              event({"content": 'say "reasoning": x', REASONING_CONTENT: None}), b": keep-alive\n\n",
              event({"tool_calls": [{"index": 0, "function": {"arguments": '{"reasoning":1}'}}]})]
    raw = b"".join(events) + b"data: [DONE]\n\n"
    want = [{"role": "assistant", REASONING_CONTENT: "a"}, {REASONING_CONTENT: "b"},
            {"content": 'say "reasoning": x', REASONING_CONTENT: None},
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"reasoning":1}'}}]}]
    for size in range(1, 60):
        out = relay_all(StreamRenamer(REASONING_CONTENT), raw, size)
        assert b'"reasoning":' not in out and out.endswith(b"data: [DONE]\n\n")
        got = [json.loads(line[6:])["choices"][0]["delta"] for line in out.split(b"\n") if line.startswith(b"data: {")]
        assert got == want, size


def test_a_line_without_reasoning_is_not_held_back() -> None:
    renamer = StreamRenamer(REASONING_CONTENT)
    assert renamer.feed(event({REASONING: "a"}) + b"data: [DO") == event({REASONING_CONTENT: "a"}) + b"data: [DO"
    assert renamer.feed(b'data: {"choices":[{"delta":{"reas') == b""  # may become a key: wait for the rest
    assert renamer.feed(b'oning":"b"}}]}\n\n') == b'data: {"choices":[{"delta":{"reasoning_content":"b"}}]}\n\n'


def test_both_names_after_the_start_of_the_line_went_out_still_show_one_name() -> None:
    renamer = StreamRenamer(REASONING_CONTENT)
    start = renamer.feed(b'data: {"choices":[{"delta":{"content":null,')
    rest = renamer.feed(b'"reasoning_content":null,"reasoning":"x"}}]}\n\n')
    assert start == b'data: {"choices":[{"delta":{"content":null,'  # nothing to hold back yet
    assert b'"reasoning"' not in rest
    assert json.loads((start + rest)[6:])["choices"][0]["delta"] == {"content": None, REASONING_CONTENT: "x"}


def test_both_names_in_text_that_is_not_json_are_renamed_on_the_bytes() -> None:
    assert rename_json(b'{"reasoning":"a","reasoning_content":"b",', REASONING) == (
        b'{"reasoning":"a","reasoning":"b",')


def test_spaced_json_is_renamed_too() -> None:
    raw = b'data: {"choices": [{"delta": {"reasoning" : "x"}}]}\r\n\r\n'
    assert StreamRenamer(REASONING_CONTENT).feed(raw) == raw.replace(b'"reasoning" :', b'"reasoning_content" :')


def test_plain_json_answers_are_renamed() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", REASONING: "Think"}}]}
    raw = json.dumps(body, indent=2).encode()
    assert json.loads(rename_json(raw, REASONING_CONTENT))["choices"][0]["message"] == {
        "role": "assistant", "content": "Hi", REASONING_CONTENT: "Think"}
    both = {"choices": [{"message": {"content": "Hi", REASONING: "Think", REASONING_CONTENT: "Think"}}]}
    assert json.loads(rename_json(json.dumps(both).encode(), REASONING)) == {
        "choices": [{"message": {"content": "Hi", REASONING: "Think"}}]}


def test_settle_renames_in_place() -> None:
    fields: dict[str, Any] = {"role": "assistant", REASONING: "a", "content": "b"}
    settle(fields, REASONING_CONTENT)
    assert list(fields.items()) == [("role", "assistant"), (REASONING_CONTENT, "a"), ("content", "b")]


def test_relay_renames_before_and_after_the_first_event() -> None:
    relay = StreamRelay(reasoning_field=REASONING)
    first = relay.feed(b": keep-alive\n\n" + event({"role": "assistant", REASONING_CONTENT: "a"}))
    assert first == b": keep-alive\n\n" + event({"role": "assistant", REASONING: "a"}) and relay.first_data
    assert relay.feed(event({REASONING_CONTENT: "b"}) + b"data: [DONE]\n\n") == (
        event({REASONING: "b"}) + b"data: [DONE]\n\n")
    assert relay.done


def test_relay_with_a_failover_comment_renames_too() -> None:
    relay = StreamRelay(b": llmroute provider=p attempts=2\n\n", REASONING_CONTENT)
    out = relay.feed(event({REASONING: "a"}) + b"data: [DONE]\n\n")
    assert out == event({REASONING_CONTENT: "a"}) + b": llmroute provider=p attempts=2\n\ndata: [DONE]\n\n"


@pytest.mark.parametrize(("promised", "other"), [(REASONING_CONTENT, REASONING), (REASONING, REASONING_CONTENT)])
def test_assembled_messages_carry_only_the_promised_name(promised: str, other: str) -> None:
    asm = Assembler(chat=True, reasoning_field=promised)
    asm.feed(event({"role": "assistant", "content": None, other: "Think"}) + event({other: " hard"})
             + event({"content": "Hi"}) + b"data: [DONE]\n\n")
    assert asm.result()["choices"][0]["message"] == {"role": "assistant", "content": "Hi", promised: "Think hard"}


def test_assembled_messages_from_deltas_with_both_names() -> None:
    asm = Assembler(chat=True, reasoning_field=REASONING_CONTENT)
    asm.feed(event({REASONING: "a", REASONING_CONTENT: "a"}) + event({"content": "Hi"}) + b"data: [DONE]\n\n")
    assert asm.result()["choices"][0]["message"] == {"role": "assistant", "content": "Hi", REASONING_CONTENT: "a"}


TOOL_CALLS = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


def test_history_without_reasoning_needs_no_work() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            "reasoning_effort": "high"}
    assert history(body) is None


@pytest.mark.parametrize(("self_hosted", "name"), [(False, REASONING_CONTENT), (True, REASONING)])
def test_history_keeps_reasoning_only_on_tool_call_turns_under_the_upstreams_name(self_hosted: bool,
                                                                                   name: str) -> None:
    user = {"role": "user", "content": "hi", REASONING: "not an assistant turn: left alone"}
    plain = {"role": "assistant", "content": "yo", REASONING_CONTENT: "t1", REASONING: "t1"}
    tool_turn = {"role": "assistant", "content": None, REASONING: "t2", "tool_calls": TOOL_CALLS}
    tool_result = {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    body = {"model": "m", "messages": [user, plain, tool_turn, tool_result]}
    h = history(body)
    assert h is not None
    sent = h.messages(self_hosted)
    assert sent[0] is user and sent[3] is tool_result
    assert sent[1] == {"role": "assistant", "content": "yo"}
    assert sent[2] == {"role": "assistant", "content": None, name: "t2", "tool_calls": TOOL_CALLS}
    assert h.messages(self_hosted) is sent  # built once per name
    assert body["messages"][1] == plain and body["messages"][2][REASONING] == "t2"  # the client's body is intact
