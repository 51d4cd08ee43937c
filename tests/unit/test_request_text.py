"""Where a request carries text: every string of every request shape is a place, its path leads back to it (into
decoded tool-call arguments too), what is not text is skipped, and scanning finds PII in each place."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute.core import pii
from llmroute.core.request_text import Place, key_of, places, scan

pytestmark = pytest.mark.unit

CHAT: dict[str, Any] = {
    "model": "deepseek-chat",
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "name": "jane@example.com", "content": [
            {"type": "text", "text": "look at this"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "text", "text": "and this"},
        ]},
        {"role": "assistant", "content": None, "reasoning_content": "thinking", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": json.dumps(
                {"query": "find", "filters": {"emails": ["a@b.io", "c@d.io"], "limit": 3, "exact": True,
                                              "note": None}})}},
            {"id": "c2", "type": "function", "function": {"name": "broken", "arguments": "{not json: x@y.io"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "found 2"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}], "function_call": {
            "name": "legacy", "arguments": "{\"to\": \"e@f.io\"}"}},
        {"role": "user", "content": ""},
        "not a message",
    ],
}


ARGS = ("messages", 2, "tool_calls", 0, "function", "arguments")


def test_chat_places_in_document_order() -> None:
    assert places(CHAT) == [
        Place(("messages", 0, "content"), "You are helpful.", in_json=False),
        Place(("messages", 1, "content", 0, "text"), "look at this", in_json=False),
        Place(("messages", 1, "content", 2, "text"), "and this", in_json=False),
        Place(("messages", 2, "reasoning_content"), "thinking", in_json=False),
        Place((*ARGS, "query"), "find", in_json=True),
        Place((*ARGS, "filters", "emails", 0), "a@b.io", in_json=True),
        Place((*ARGS, "filters", "emails", 1), "c@d.io", in_json=True),
        Place(("messages", 2, "tool_calls", 1, "function", "arguments"), "{not json: x@y.io", in_json=False),
        Place(("messages", 3, "content"), "found 2", in_json=False),
        Place(("messages", 4, "content", 0, "refusal"), "no", in_json=False),
        Place(("messages", 4, "function_call", "arguments", "to"), "e@f.io", in_json=True),
    ]


def _calls(*functions: Any) -> dict[str, Any]:
    calls = [{"function": f} if isinstance(f, dict) and f else f for f in functions]
    return {"messages": [{"role": "assistant", "tool_calls": calls}]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"prompt": "hi"}, [(("prompt",), "hi")], id="prompt-str"),
        pytest.param({"prompt": ["a", "b"]}, [(("prompt", 0), "a"), (("prompt", 1), "b")], id="prompt-list"),
        pytest.param({"prompt": [1, 2, 3]}, [], id="prompt-tokens"),
        pytest.param({"prompt": [[1, 2], [3]]}, [], id="prompt-token-lists"),
        pytest.param({"input": "hi"}, [(("input",), "hi")], id="input-str"),
        pytest.param({"input": ["a", 7, "b"]}, [(("input", 0), "a"), (("input", 2), "b")], id="input-list"),
        pytest.param({"input": [101, 102]}, [], id="input-tokens"),
        pytest.param({"messages": "nope", "prompt": None, "input": {"x": "y"}}, [], id="malformed"),
        pytest.param(_calls({"arguments": "\"just a string\""}),
                     [((*ARGS[:1], 0, *ARGS[2:]), "just a string")], id="args-json-str"),
        pytest.param(_calls({"arguments": "42"}, "x", {}), [], id="args-not-text"),
    ],
)
def test_other_shapes(body: dict[str, Any], expected: list[tuple[tuple[str | int, ...], str]]) -> None:
    assert [(p.path, p.text) for p in places(body)] == expected


def resolve(body: Any, place: Place) -> Any:
    """Follow ``place.path`` from the body's root, decoding the JSON string where the path enters arguments."""
    node = body
    for i, step in enumerate(place.path):
        if place.in_json and isinstance(node, str) and i > 0 and place.path[i - 1] == "arguments":
            node = json.loads(node)
        node = node[step]
    if place.in_json and isinstance(node, str) and place.path[-1] == "arguments":
        node = json.loads(node)
    return node


def test_every_path_leads_back_to_its_text() -> None:
    for place in places(CHAT):
        assert resolve(CHAT, place) == place.text


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=10), json_values), max_size=4))
def test_paths_lead_back_into_any_tool_call_arguments(values: list[Any]) -> None:
    body = {"messages": [{"role": "assistant", "tool_calls": [
        {"function": {"arguments": json.dumps(v) if i % 2 == 0 else (v if isinstance(v, str) else json.dumps(v))}}
        for i, v in enumerate(values)]}]}
    for place in places(body):
        assert resolve(body, place) == place.text and place.text


def test_scan_reports_findings_per_place_with_offsets_into_the_place() -> None:
    body = {"messages": [
        {"role": "user", "content": "mail jane@example.com"},
        {"role": "assistant", "tool_calls": [{"function": {"arguments": json.dumps(
            {"mobile": "4155550134", "order_id": "4155550199", "ssn": "078-05-1120"})}}]},
    ]}
    hits = [(p.path[-1], p.text[f.start:f.end], f.type) for p, f in scan(body)]
    assert hits == [("content", "jane@example.com", "email"), ("mobile", "4155550134", "phone")]


def test_scan_uses_the_given_detector_and_key_of_only_for_json_keys() -> None:
    detector = pii.Detector([pii.CustomDetector("ticket", r"TCK-[0-9]+")])
    assert [f.type for _, f in scan({"prompt": "see TCK-12"}, detector)] == ["ticket"]
    assert key_of(Place((*ARGS, "phone"), "x", in_json=True)) == "phone"
    assert key_of(Place((*ARGS, "list", 0), "x", in_json=True)) == ""
    assert key_of(Place(("messages", 0, "content"), "x", in_json=False)) == ""
