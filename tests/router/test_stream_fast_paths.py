"""The relay's fast paths for reasoning names (llmroute.router.reasoning.StreamRenamer behind StreamRelay).

Aspects: a stream that already uses the promised name goes out byte for byte, whatever the chunking and whatever
its text says (escaped key-like text included); a stream using the other name, or both, comes out with the
promised name only, each event equal to renaming it on its own (unless it has both names), whatever the chunking.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute.router import reasoning
from llmroute.router.sse import StreamRelay

pytestmark = pytest.mark.unit

NAMES = (reasoning.REASONING, reasoning.REASONING_CONTENT)
TEXT = st.lists(st.sampled_from(["a", " ", '"', "\\", ":", "reasoning", "_content", '"reasoning":']), max_size=5).map(
    "".join
)


def event(delta: dict[str, str]) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    deltas = draw(
        st.lists(st.dictionaries(st.sampled_from([*NAMES, "content"]), TEXT, min_size=1), min_size=1, max_size=12)
    )
    return event({"role": "assistant", "content": ""}) + b"".join(map(event, deltas)) + b"data: [DONE]\n\n"


def relay(stream: bytes, promised: str, cuts: list[int]) -> bytes:
    r = StreamRelay(reasoning_field=promised)
    bounds = [0, *cuts, len(stream)]
    return b"".join(r.feed(stream[a:b]) for a, b in itertools.pairwise(bounds) if b > a)


@settings(max_examples=300, deadline=None)
@given(streams(), st.sampled_from(NAMES), st.data())
def test_relay_renames_exactly_what_renaming_each_event_would(
    stream: bytes, promised: str, data: st.DataObject
) -> None:
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=6))))
    out = relay(stream, promised, cuts)
    other = reasoning.REASONING_CONTENT if promised == reasoning.REASONING else reasoning.REASONING
    if f'"{other}"'.encode() not in stream:
        assert out == stream
    got = [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: {")]
    assert all(other not in e["choices"][0]["delta"] for e in got)
    want = [
        json.loads(reasoning.rename_json(line[6:], promised))
        for line in stream.split(b"\n")
        if line.startswith(b"data: {")
    ]
    both = any(
        f'"{name}"'.encode() in line
        for line in stream.split(b"\n")
        for name in NAMES
        if f'"{other if name == promised else promised}"'.encode() in line
    )
    if not both:  # an event with both names whose start went out before them is renamed on the bytes (one name,
        assert got == want  # maybe twice: the reasoning module's documented limit)
