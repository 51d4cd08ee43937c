"""Redaction: placeholders issued once per request, bodies rewritten everywhere text goes upstream, originals restored
exactly - whole, and streamed in any chunking (every chunk boundary), in text, tool-call arguments and several
choices; altered echoes of issued placeholders only; held text bounded and flushed unchanged.

Property-based (hypothesis) where the claim is "for any text": texts are drawn from an alphabet rich in what
placeholders are made of (``<``, ``>``, ``[``, ``]``, ``_``, capitals, digits, backslashes, quotes), so partial and
look-alike forms are common.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy, RedactionMode
from llmroute.core import redaction
from llmroute.core.compile import compile_route
from llmroute.core.pii import Finding
from llmroute.core.redaction import AnswerStream, Placeholder, Redactor, Restorer
from llmroute.core.request_text import places, scan
from llmroute.core.router_config import Redaction, RouterConfig
from llmroute.errors import CompileError
from llmroute.router.redaction import Blocked, Index, Rule, SseRestorer, prepare

pytestmark = pytest.mark.unit

R, D, B = RedactionMode.RESTORE, RedactionMode.REDACT, RedactionMode.BLOCK
FILLER = st.text(alphabet="<>[]_ EMAILPHONemailphon0123\\\"u{}:,.xyz\n", max_size=24)
VALUE = st.text(alphabet="0123456789@#+", min_size=1, max_size=8).map(lambda v: "@" + v)  # never in FILLER
TYPES = st.sampled_from(["email", "phone", "us_ssn", "employee_id"])


def ph(core: str, value: str) -> Placeholder:
    kind = core.rsplit("_", 1)[0].lower()
    return Placeholder(core, value, kind, frozenset({kind}))


def streamed(restorer: Restorer, pieces: Sequence[str], in_json: bool = False) -> str:
    stream = restorer.stream(in_json)
    out = "".join(stream.feed(p) for p in pieces)
    return out + stream.flush()


def splits(text: str) -> list[list[str]]:
    """Every way to cut ``text`` once, and the cut into single characters."""
    return [[text[:i], text[i:]] for i in range(len(text) + 1)] + [list(text)]


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[tuple[str, int, int]]]:
    """A text with values at known places: (text, [(type, start, end)])."""
    parts = draw(st.lists(st.tuples(FILLER, TYPES, VALUE), max_size=5))
    text, found = "", []
    for filler, kind, value in parts:
        text += filler
        found.append((kind, len(text), len(text) + len(value)))
        text += value
    return text + draw(FILLER), found


def redactor_for(body: dict[str, Any], spans: dict[tuple[Any, ...], list[tuple[str, int, int]]]) -> Redactor:
    texts = places(body)
    found = [(p, Finding(kind, s, e, 1.0)) for p in texts for kind, s, e in spans.get(p.path, ())]
    return Redactor(body, texts, found)


# --- modes ----------------------------------------------------------------------------------------------------


def test_the_strictest_mode_wins() -> None:
    assert redaction.merge({"email": R, "phone": B}, {"email": D, "phone": R}, {"iban": R}) == {
        "email": D, "phone": B, "iban": R}
    assert redaction.merge() == {}


# --- placeholders and bodies ----------------------------------------------------------------------------------

BODY = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "Support desk."},
        {"role": "user", "content": "Write to alice@example.com or bob@example.org; call 415-555-0100."},
        {"role": "assistant", "content": None, "reasoning_content": "alice@example.com wants a reply",
         "tool_calls": [{"id": "c1", "type": "function", "function": {
             "name": "send", "arguments": json.dumps({"to": ["alice@example.com"], "note": "cc bob@example.org"})}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sent to alice@example.com"},
        {"role": "user", "content": [{"type": "text", "text": "And again alice@example.com, thanks"},
                                     {"type": "image_url", "image_url": {"url": "data:,"}}]},
    ],
}


def test_the_same_value_gets_the_same_placeholder_in_every_message() -> None:
    red = Redactor(BODY, places(BODY), scan(BODY))
    assert [(p.core, p.value) for p in red.placeholders] == [
        ("EMAIL_1", "alice@example.com"), ("EMAIL_2", "bob@example.org"), ("PHONE_1", "415-555-0100")]
    body, counts = red.body({"email", "phone"})
    dumped = json.dumps(body)
    for value in ("alice@example.com", "bob@example.org", "415-555-0100"):
        assert value not in dumped
    messages = body["messages"]
    assert messages[1]["content"] == "Write to <EMAIL_1> or <EMAIL_2>; call <PHONE_1>."
    assert messages[2]["reasoning_content"] == "<EMAIL_1> wants a reply"
    assert json.loads(messages[2]["tool_calls"][0]["function"]["arguments"]) == {
        "to": ["<EMAIL_1>"], "note": "cc <EMAIL_2>"}
    assert messages[3]["content"] == "sent to <EMAIL_1>"
    assert messages[4]["content"][0]["text"] == "And again <EMAIL_1>, thanks"
    assert messages[4]["content"][1] is BODY["messages"][4]["content"][1]  # copied only along changed paths
    assert messages[0] is BODY["messages"][0]
    assert counts == {"email": 7, "phone": 1}
    assert "alice@example.com" in json.dumps(BODY)  # the client's body is untouched


def test_only_the_chosen_types_are_replaced() -> None:
    red = Redactor(BODY, places(BODY), scan(BODY))
    body, counts = red.body({"phone"})
    assert body["messages"][1]["content"] == "Write to alice@example.com or bob@example.org; call <PHONE_1>."
    assert counts == {"phone": 1}
    same, none = red.body({"iban"})
    assert same is BODY and not none


def test_names_already_in_the_request_are_never_issued() -> None:
    body = {"messages": [{"role": "user", "content": "keep <EMAIL_1> and [email_2] and Email_3 as typed: a@b.co"}]}
    red = Redactor(body, places(body), scan(body))
    assert [p.core for p in red.placeholders] == ["EMAIL_4"]
    restorer = red.restorer({"email"})
    assert restorer is not None
    assert restorer.restore("<EMAIL_1> [email_2] Email_3 <EMAIL_4>") == "<EMAIL_1> [email_2] Email_3 a@b.co"


def test_names_in_other_request_fields_are_avoided_too() -> None:
    body = {"messages": [{"role": "user", "content": "a@b.co"}], "tools": [{"function": {"description": "EMAIL_1"}}]}
    red = Redactor(body, places(body), scan(body), taken=json.dumps(body))
    assert [p.core for p in red.placeholders] == ["EMAIL_2"]


def test_other_occurrences_of_a_value_found_are_replaced_but_not_inside_longer_numbers() -> None:
    body = {"messages": [{"role": "user", "content": "call 415-555-0100"},
                         {"role": "user", "content": "ref 415-555-0100, not 415-555-01001"}]}
    texts = places(body)
    found = [(texts[0], Finding("phone", 5, 17, 0.7))]  # the second message's number was not flagged
    sent, counts = Redactor(body, texts, found).body({"phone"})
    assert sent["messages"][1]["content"] == "ref <PHONE_1>, not 415-555-01001"
    assert counts == {"phone": 2}


def test_arguments_that_are_one_json_string_stay_one() -> None:
    body = {"messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": json.dumps("mail a@b.co")}}]}]}
    sent, _ = Redactor(body, places(body), scan(body)).body({"email"})
    assert json.loads(sent["messages"][0]["tool_calls"][0]["function"]["arguments"]) == "mail <EMAIL_1>"


def test_a_value_found_as_two_types_is_one_placeholder_and_the_strictest_decides_restore() -> None:
    body = {"messages": [{"role": "user", "content": "x 123 and 123"}]}
    texts = places(body)
    red = Redactor(body, texts, [(texts[0], Finding("phone", 2, 5, 1)), (texts[0], Finding("employee_id", 10, 13, 1))])
    assert [(p.core, p.types) for p in red.placeholders] == [("PHONE_1", frozenset({"phone", "employee_id"}))]
    assert red.body({"employee_id"})[0]["messages"][0]["content"] == "x <PHONE_1> and <PHONE_1>"
    assert red.restorer({"phone"}, keep={"employee_id"}) is None
    assert red.restorer({"phone"}) is not None


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), documents(), st.data())
def test_redacted_bodies_hold_no_value_and_restore_to_the_original(
        content: tuple[str, list[tuple[str, int, int]]], inner: tuple[str, list[tuple[str, int, int]]],
        data: st.DataObject) -> None:
    text, found = content
    arg, arg_found = inner
    arguments = json.dumps({"q": arg, "n": 1}, ensure_ascii=data.draw(st.booleans()))
    body = {"messages": [{"role": "user", "content": text},
                         {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": arguments}}]}]}
    red = redactor_for(body, {("messages", 0, "content"): found,
                              ("messages", 1, "tool_calls", 0, "function", "arguments", "q"): arg_found})
    kinds = {k for k, _, _ in (*found, *arg_found)}
    sent, _ = red.body(kinds)
    dumped = json.dumps(sent, ensure_ascii=False)
    for _, s, e in found:
        assert text[s:e] not in dumped
    for _, s, e in arg_found:
        assert arg[s:e] not in dumped
    restorer = red.restorer(kinds) or Restorer([])
    # a model that echoes everything it was sent gets everything back, whole and in any chunking
    said = sent["messages"][0]["content"]
    assert restorer.restore(said) == text
    for pieces in splits(said):
        assert streamed(restorer, pieces) == text
    args_sent = sent["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(restorer.restore(args_sent, in_json=True)) == {"q": arg, "n": 1}
    for pieces in splits(args_sent):
        assert json.loads(streamed(restorer, pieces, in_json=True)) == {"q": arg, "n": 1}


# --- restoring ------------------------------------------------------------------------------------------------

ISSUED = Restorer([ph("EMAIL_1", "alice@example.com"), ph("EMAIL_10", "ten@example.com"),
                   ph("US_SSN_1", "078-05-1120"), ph("NOTE_1", 'say "hi"\\ now')])


@pytest.mark.parametrize(("said", "restored"), [
    ("<EMAIL_1> and <EMAIL_10>", "alice@example.com and ten@example.com"),
    ("<email_1>, [EMAIL_1], EMAIL_1.", "alice@example.com, alice@example.com, alice@example.com."),
    ("EMAIL_10 is not EMAIL_1x nor xEMAIL_1 nor EMAIL_100",
     "ten@example.com is not EMAIL_1x nor xEMAIL_1 nor EMAIL_100"),
    ("<EMAIL_2> and <PHONE_1> were never issued", "<EMAIL_2> and <PHONE_1> were never issued"),
    ("<US_SSN_1>", "078-05-1120"),
    ("<EMAIL_1", "<alice@example.com"),  # the bare name is a complete echo; the lone "<" stays
    ("<EMAI", "<EMAI"),  # a partial form is never guessed
])
def test_restore_issued_forms_only(said: str, restored: str) -> None:
    assert ISSUED.restore(said) == restored
    for pieces in splits(said):
        assert streamed(ISSUED, pieces) == restored


def test_json_text_gets_escaped_originals_and_escaped_brackets() -> None:
    args = '{"to": "<EMAIL_1>", "note": "\\u003cNOTE_1\\u003e", "bare": "NOTE_1"}'
    assert json.loads(ISSUED.restore(args, in_json=True)) == {
        "to": "alice@example.com", "note": 'say "hi"\\ now', "bare": 'say "hi"\\ now'}
    for pieces in splits(args):
        assert json.loads(streamed(ISSUED, pieces, in_json=True))["note"] == 'say "hi"\\ now'


def test_restores_are_counted_by_type() -> None:
    restorer = Restorer([ph("EMAIL_1", "a@b.co"), ph("US_SSN_1", "078-05-1120")])
    restorer.restore("<EMAIL_1> <US_SSN_1> EMAIL_1")
    assert restorer.restored == {"email": 2, "us_ssn": 1}


@settings(max_examples=300)
@given(st.text(alphabet="<>[]_ EMAILemail013\\u\"x", max_size=40), st.data())
def test_any_chunking_restores_like_the_whole(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    for in_json in (False, True):
        assert streamed(ISSUED, pieces, in_json) == ISSUED.restore(text, in_json)


@settings(max_examples=200)
@given(st.text(alphabet="<>[]_ EMAILemail01\\u3c\"x.", max_size=40))
def test_held_text_is_bounded_and_plain_text_is_never_held(text: str) -> None:
    stream = ISSUED.stream()
    longest = max(len(f"[{p.core}]") for p in ISSUED.placeholders)
    for ch in text:
        stream.feed(ch)
        assert len(stream.held) <= longest
        assert stream.held == "" or re.fullmatch(r"[<\[]?[A-Za-z0-9_]*", stream.held)
    plain = ISSUED.stream()
    assert plain.feed("Hello there, the end.") == "Hello there, the end."


def test_flush_gives_held_text_unchanged() -> None:
    stream = ISSUED.stream()
    assert stream.feed("Write to <EMA") == "Write to "
    assert stream.held == "<EMA"
    assert stream.flush() == "<EMA"
    assert stream.flush() == ""


# --- streamed answers: choices, fields, tool calls ------------------------------------------------------------


def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def assemble(chunks: Sequence[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Per choice: each text field and each tool call's arguments (``tool0``) concatenated."""
    out: dict[int, dict[str, str]] = {}
    for c in chunks:
        for choice in c["choices"]:
            fields = out.setdefault(choice["index"], {})
            for key, value in choice.get("delta", {}).items():
                if isinstance(value, str) and key != "role":
                    fields[key] = fields.get(key, "") + value
                elif key == "tool_calls":
                    for call in value:
                        name = f"tool{call['index']}"
                        fields[name] = fields.get(name, "") + call["function"].get("arguments", "")
    return out


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents(), min_size=1, max_size=3), documents(), st.data())
def test_several_choices_and_tool_calls_restore_in_any_chunking(
        contents: list[tuple[str, list[tuple[str, int, int]]]], inner: tuple[str, list[tuple[str, int, int]]],
        data: st.DataObject) -> None:
    texts = [t for t, _ in contents]
    body = {"messages": [{"role": "user", "content": t} for t in texts]
            + [{"role": "user", "content": inner[0]}]}
    spans = {("messages", i, "content"): f for i, (_, f) in enumerate(contents)}
    spans[("messages", len(texts), "content")] = inner[1]
    red = redactor_for(body, spans)
    kinds = {"email", "phone", "us_ssn", "employee_id"}
    sent, _ = red.body(kinds)
    restorer = red.restorer(kinds)
    assume(restorer is not None)
    assert restorer is not None
    said = [m["content"] for m in sent["messages"]]
    arguments = json.dumps({"text": said[-1]})  # the model calls a tool with the placeholders it was given
    # every choice streams its content and a tool call, interleaved with the others, cut anywhere
    events: list[tuple[int, dict[str, Any]]] = []
    for index, text in enumerate(said[:-1]):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
        events += [(index, {"content": text[a:b]}) for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        cuts = sorted(data.draw(st.lists(st.integers(0, len(arguments)), max_size=6)))
        events += [(index, {"tool_calls": [{"index": 0, "function": {"arguments": arguments[a:b]}}]})
                   for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)]
    per_choice: dict[int, list[dict[str, Any]]] = {}
    for index, delta in events:
        per_choice.setdefault(index, []).append(delta)
    stream = AnswerStream(restorer)
    out: list[dict[str, Any]] = []
    finish_some = data.draw(st.booleans())
    queues = {i: list(d) for i, d in per_choice.items()}
    while any(queues.values()):
        index = data.draw(st.sampled_from(sorted(i for i, q in queues.items() if q)))
        c = chunk(index, queues[index].pop(0))
        stream.chunk(c)
        out.append(c)
        if finish_some and not queues[index]:
            c = chunk(index, {}, "stop")
            stream.chunk(c)
            out.append(c)
    out += stream.flush()
    got = assemble(out)
    for index, text in enumerate(texts):
        assert got[index].get("content", "") == text
        assert json.loads(got[index]["tool0"]) == {"text": inner[0]}


def test_held_text_goes_out_with_the_finish_reason_or_in_a_chunk_of_its_own() -> None:
    stream = AnswerStream(ISSUED)
    first = chunk(0, {"role": "assistant", "content": "to <EMA"})
    assert stream.chunk(first) and first["choices"][0]["delta"]["content"] == "to "
    last = chunk(0, {}, "stop")
    assert stream.chunk(last) and last["choices"][0]["delta"] == {"content": "<EMA"}
    assert stream.flush() == []
    other = AnswerStream(ISSUED)
    other.chunk(chunk(1, {"reasoning_content": "EMAIL_1"}))  # a bare name at the end may still grow
    tail = other.flush()
    assert [c["choices"] for c in tail] == [[{"index": 1, "delta": {"reasoning_content": "alice@example.com"},
                                              "logprobs": None, "finish_reason": None}]]
    assert tail[0]["id"] == "x" and tail[0]["model"] == "m"


def test_completions_text_is_restored() -> None:
    stream = AnswerStream(ISSUED, chat=False)
    chunks = [{"choices": [{"index": 0, "text": t, "finish_reason": None}]} for t in ("a <EMA", "IL_1> b")]
    for c in chunks:
        stream.chunk(c)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "a alice@example.com b"


def test_whole_answers_are_restored_everywhere_text_is() -> None:
    answer = {"choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi <EMAIL_1>", "reasoning": "EMAIL_1?",
                                 "tool_calls": [{"function": {"name": "f", "arguments": '{"a": "<NOTE_1>"}'}}]}},
        {"index": 1, "text": "[US_SSN_1]"}]}
    ISSUED.answer(answer)
    message = answer["choices"][0]["message"]
    assert (message["content"], message["reasoning"]) == ("hi alice@example.com", "alice@example.com?")
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"a": 'say "hi"\\ now'}
    assert answer["choices"][1]["text"] == "078-05-1120"


# --- the SSE relay: bytes in, bytes out -----------------------------------------------------------------------


def sse(events: Sequence[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events) \
        + b"data: [DONE]\n\n"


def relayed(restorer: Restorer, data: bytes, cuts: Sequence[int]) -> bytes:
    sse_restorer = SseRestorer(restorer, chat=True)
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return b"".join(sse_restorer.feed(p) for p in pieces) + sse_restorer.close()


def events_of(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: {")]


def test_sse_restore_at_every_byte_boundary() -> None:
    text = "Dear <EMAIL_1>, your SSN [US_SSN_1] is on file; write EMAIL_10 or <EMAIL_2>."
    events = [chunk(0, {"role": "assistant", "content": ""})]
    events += [chunk(0, {"content": text[i:i + 4]}) for i in range(0, len(text), 4)]
    events.append(chunk(0, {}, "stop"))
    data = sse(events)
    want = "Dear alice@example.com, your SSN 078-05-1120 is on file; write ten@example.com or <EMAIL_2>."
    for cut in range(len(data) + 1):
        out = relayed(ISSUED, data, [cut])
        assert assemble(events_of(out))[0]["content"] == want
        assert out.endswith(b"data: [DONE]\n\n")


def test_sse_events_without_placeholders_pass_as_they_came() -> None:
    plain = [chunk(0, {"role": "assistant", "content": "Hello"}), chunk(0, {"content": " world"}), chunk(0, {}, "stop")]
    data = sse(plain)
    assert relayed(ISSUED, data, [10, 30]) == data
    mixed = [chunk(0, {"content": "Hello <EMAIL_1>"}), chunk(0, {"content": " and bye"})]
    out = relayed(ISSUED, sse(mixed), [])
    assert out.split(b"\n\n")[1] == sse(mixed).split(b"\n\n")[1]  # the unchanged event is byte-identical


def test_sse_held_text_is_flushed_before_done_and_on_close() -> None:
    events = [chunk(0, {"content": "to <EMA"})]
    out = relayed(ISSUED, sse(events), [])
    assert assemble(events_of(out))[0]["content"] == "to <EMA"
    assert out.endswith(b"data: [DONE]\n\n")
    restorer = SseRestorer(ISSUED, chat=True)
    first = restorer.feed(sse(events)[:-len(b"data: [DONE]\n\n")])
    assert assemble(events_of(first))[0]["content"] == "to "
    assert assemble(events_of(restorer.close()))[0]["content"] == "<EMA"  # a cut stream still gets it


def test_sse_a_bare_echo_after_a_word_in_the_previous_event_is_left_alone() -> None:
    # the previous event went out as it came; the next one is judged on the real previous character
    events = [chunk(0, {"content": "MY"}), chunk(0, {"content": "EMAIL_1 and "}), chunk(0, {"content": "EMAIL_1"})]
    out = relayed(ISSUED, sse(events), [])
    assert assemble(events_of(out))[0]["content"] == ISSUED.restore("MYEMAIL_1 and EMAIL_1") == \
        "MYEMAIL_1 and alice@example.com"


# --- compile: the API to the router config --------------------------------------------------------------------


def with_redaction(route_doc: dict[str, Any], policy_doc: dict[str, Any], rules: list[dict[str, Any]],
                   deepseek: dict[str, Any] | None = None) -> RouterConfig:
    route_doc["spec"]["redaction"] = rules
    policy_doc["spec"]["detectors"] = [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"},
                                       {"name": "ticket", "pattern": "TCK-[0-9]+"}]
    if deepseek is not None:
        next(p for p in policy_doc["spec"]["providers"] if p["name"] == "deepseek")["redaction"] = deepseek
    return compile_route(LLMRoute.model_validate(route_doc), ProviderPolicy.model_validate(policy_doc))


def test_a_route_without_redaction_compiles_to_the_same_wire_form(route: LLMRoute, policy: ProviderPolicy) -> None:
    config = compile_route(route, policy)
    assert config.redaction is None and "redaction" not in config.wire()


def test_rules_compile_to_resolved_modes_per_class_and_provider(route_doc: dict[str, Any],
                                                                 policy_doc: dict[str, Any]) -> None:
    config = with_redaction(route_doc, policy_doc, [
        {"dataClass": "public", "mode": "Restore"},
        {"dataClass": "public", "mode": "Block", "types": ["us_ssn"]},
        {"dataClass": "internal", "mode": "Redact", "types": ["email", "employee_id"]},
    ], deepseek={"mode": "Restore", "types": ["phone"]})
    settings = config.redaction
    assert settings is not None
    every = {"email", "phone", "credit_card", "us_ssn", "iban", "ip_address", "api_key", "employee_id", "ticket"}
    assert set(settings.classes["public"]) == every and settings.classes["public"]["us_ssn"] is B
    assert settings.classes["public"]["email"] is R
    assert settings.classes["internal"] == {"email": D, "employee_id": D}
    assert settings.providers == {"deepseek": {"phone": R}}
    assert [d.name for d in settings.detectors] == ["employee_id", "ticket"]
    assert RouterConfig.model_validate_json(config.to_json()) == config


def test_a_provider_requirement_alone_is_enough(route_doc: dict[str, Any], policy_doc: dict[str, Any]) -> None:
    config = with_redaction(route_doc, policy_doc, [], deepseek={"mode": "Redact", "types": ["email"]})
    assert config.redaction is not None and config.redaction.classes == {}
    assert [d.name for d in config.redaction.detectors] == ["employee_id", "ticket"]  # as detection has them


def test_unknown_classes_and_types_name_their_field(route_doc: dict[str, Any], policy_doc: dict[str, Any]) -> None:
    with pytest.raises(CompileError) as caught:
        with_redaction(route_doc, policy_doc, [{"dataClass": "nosuch", "mode": "Restore", "types": ["email"]},
                                               {"dataClass": "public", "mode": "Redact", "types": ["passport"]}])
    message = str(caught.value)
    assert "spec.redaction[0].dataClass: unknown data class" in message
    assert 'spec.redaction[1].types[0]: unknown type "passport"' in message and "employee_id, ticket" in message


def test_a_provider_cannot_block_or_name_unknown_types(policy_doc: dict[str, Any]) -> None:
    deepseek = next(p for p in policy_doc["spec"]["providers"] if p["name"] == "deepseek")
    deepseek["redaction"] = {"mode": "Block"}
    with pytest.raises(ValidationError, match="Restore or Redact"):
        ProviderPolicy.model_validate(policy_doc)
    deepseek["redaction"] = {"mode": "Redact", "types": ["passport"]}
    with pytest.raises(ValidationError, match='unknown "passport"'):
        ProviderPolicy.model_validate(policy_doc)


# --- the router's index, requests and attempts ----------------------------------------------------------------


def index_of(classes: dict[str, dict[str, RedactionMode]],
             providers: dict[str, dict[str, RedactionMode]] | None = None) -> Index:
    return Index(Redaction(classes=classes, providers=providers or {}))


def test_policies_merge_classes_and_each_providers_requirement() -> None:
    index = index_of({"public": {"email": R, "us_ssn": B}, "pii": {"email": D}}, {"cn": {"phone": R, "email": R}})
    assert index.policy(["internal"], ["us"]) is None  # nothing for this route: it pays nothing
    policy = index.policy(["public"], ["cn", "us"])
    assert policy is not None and policy.blocked == {"us_ssn"}
    assert policy.rules["cn"] == Rule(frozenset({"email", "phone"}), frozenset({"email", "phone"}), frozenset())
    assert policy.rules["us"] == Rule(frozenset({"email"}), frozenset({"email"}), frozenset())
    escalated = index.policy(["public", "pii"], ["cn"])  # escalation adds a class: the strictest mode wins
    assert escalated is not None and escalated.rules["cn"].keep == {"email"}
    assert index.policy(["public"], ["cn", "us"]) is policy  # cached


def test_prepare_blocks_or_finds_nothing_or_redacts_per_provider() -> None:
    index = index_of({"public": {"email": R, "us_ssn": B}}, {"cn": {"phone": D}})
    policy = index.policy(["public"], ["cn", "us"])
    assert policy is not None
    with pytest.raises(Blocked) as caught:
        prepare(policy, {"messages": [{"role": "user", "content": "ssn 536-22-8147"}]}, b"")
    assert caught.value.types == ("us_ssn",)
    assert prepare(policy, {"messages": [{"role": "user", "content": "nothing here"}]}, b"") is None
    body = {"model": "m", "messages": [{"role": "user", "content": "a@b.co or 415-555-0134"}]}
    red = prepare(policy, body, json.dumps(body).encode())
    assert red is not None
    sent, _ = red.attempt("cn", body, None)
    assert sent["messages"][0]["content"] == "<EMAIL_1> or <PHONE_1>" and red.restorer is not None
    assert [p.core for p in red.restorer.placeholders] == ["EMAIL_1"]  # the phone is Redact at cn
    again, _ = red.attempt("cn", body, None)
    assert again is sent  # built once per rule
    to_us, _ = red.attempt("us", body, None)
    assert to_us["messages"][0]["content"] == "<EMAIL_1> or 415-555-0134"
    assert red.attempt("other", body, None)[0] is body and red.restorer is None


@pytest.mark.parametrize(("key", "redacted"), [("mobile", True), ("order_id", False)])
def test_json_keys_are_context_when_redaction_scans_itself(key: str, redacted: bool) -> None:
    """Without escalation's scan, redaction scans the body itself - with the same JSON-key context, so a number that
    escalation calls a phone (``{"mobile": ...}``) is also replaced before it goes upstream."""
    from llmroute.core import pii
    from llmroute.router.redaction import Policy

    arguments = json.dumps({key: "4155550134"})
    body = {"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": arguments}}]}]}
    policy = Policy(pii.DEFAULT, frozenset({"phone"}), frozenset(), {})
    assert (prepare(policy, body, json.dumps(body).encode()) is not None) is redacted
