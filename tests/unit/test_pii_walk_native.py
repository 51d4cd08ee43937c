"""The compiled body walk (``core/_pii_walk.c``) appends the Places ``request_text._walk`` appends, in the same order
and of the same type: on every body of the benchmark corpus and on generated bodies made of what the walk turns on
(messages that are dicts, dict subclasses, other Mappings or not mappings; string, empty, part-list and other
contents in each text field; tool calls and legacy function calls; ``prompt`` and ``input`` as strings, lists and
token arrays)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.core import request_text
from tests.benchmarks import pii_corpus
from tests.unit import test_pii_clusters as clusters

pytestmark = [pytest.mark.unit, clusters.compiled]

_pii_clusters: Any = clusters._pii_clusters


def python_places(body: dict[str, Any]) -> list[request_text.Place]:
    out: list[request_text.Place] = []
    request_text._walk(out, body)
    return out


def compiled_places(body: dict[str, Any]) -> list[request_text.Place]:
    out: list[request_text.Place] = []
    _pii_clusters.walk(out, body, request_text._WALK_HOOKS)
    return out


def assert_same_places(body: dict[str, Any]) -> None:
    found, expected = compiled_places(body), python_places(body)
    assert found == expected, body
    assert all(type(p) is request_text.Place for p in found)


def test_the_walk_in_use_is_the_compiled_one() -> None:
    assert request_text._compiled_walk is _pii_clusters.walk


def test_same_places_on_every_corpus_body() -> None:
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 1500, pii_corpus.HELD_OUT_UNSEEN)
    records += pii_corpus.generate(pii_corpus.TUNE_SEED, 1500, pii_corpus.HELD_OUT_UNSEEN)
    assert sum(len(request_text.places(r.body)) for r in records) > 3000
    assert any(p.in_json for r in records for p in request_text.places(r.body))  # tool-call arguments are in it
    for r in records:
        assert_same_places(r.body)


class Message(Mapping[str, Any]):
    """A Mapping that is not a dict (the walk hands it to Python)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class SubDict(dict[str, Any]):
    pass


texts = st.sampled_from(["", "hi", "call 415-555-0134", "\u00e9\u4e2d", "x" * 50])
contents = st.one_of(
    texts,
    st.none(),
    st.integers(),
    st.lists(st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["text", "refusal", "image_url", "x"]),
                                              "text": texts, "refusal": texts}), texts, st.none()), max_size=3),
)
arguments = st.one_of(texts, st.just('{"phone": "415-555-0134", "n": [1, "a", {"k": "v"}]}'), st.just("{bad"),
                      st.none(), st.integers())
calls = st.lists(st.one_of(st.fixed_dictionaries({"function": st.fixed_dictionaries({"arguments": arguments})}),
                           st.none(), texts), max_size=2)
message_dicts = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "tool"])},
    optional={"content": contents, "reasoning_content": contents, "reasoning": contents, "tool_calls": calls,
              "function_call": st.one_of(st.fixed_dictionaries({"arguments": arguments}), st.none(), texts)},
)
messages = st.lists(
    st.one_of(message_dicts, message_dicts.map(SubDict), message_dicts.map(Message),
              message_dicts.map(MappingProxyType), texts, st.none(), st.integers()),
    max_size=6,
)
bodies = st.fixed_dictionaries(
    {},
    optional={"messages": st.one_of(messages, texts, st.none()),
              "prompt": st.one_of(texts, st.lists(st.one_of(texts, st.integers())), st.lists(st.integers())),
              "input": st.one_of(texts, st.lists(texts), st.none()), "model": texts},
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_same_places_on_generated_bodies(body: dict[str, Any]) -> None:
    assert_same_places(body)


def test_places_uses_python_for_a_body_that_is_not_a_dict() -> None:
    body = Message({"messages": [{"role": "user", "content": "call 415-555-0134"}]})
    assert request_text.places(body) == [request_text.Place(("messages", 0, "content"), "call 415-555-0134", False)]


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(TypeError, match="hooks"):
        _pii_clusters.walk([], {}, request_text._WALK_HOOKS[1:])
    with pytest.raises(TypeError, match="hooks"):
        _pii_clusters.walk([], {}, (dict, *request_text._WALK_HOOKS[1:]))
    with pytest.raises(TypeError):
        _pii_clusters.walk((), {}, request_text._WALK_HOOKS)
    out: list[Any] = []
    _pii_clusters.walk(out, {"messages": [{"content": "a"}], "prompt": ["b", 1]}, request_text._WALK_HOOKS)
    assert [p.text for p in out] == ["a", "b"]
