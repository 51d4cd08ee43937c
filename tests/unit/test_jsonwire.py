"""The router's JSON helpers accept exactly what ``json`` accepts, and write compact UTF-8."""

from __future__ import annotations

import json
import math

import pytest

from llmroute.router import jsonwire

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"model":"m","messages":[{"role":"user","content":"héllo ✓"}]}', id="utf8"),
        pytest.param('{"seed": 123456789012345678901234567890}', id="int-beyond-64-bits"),
        pytest.param('{"x": NaN, "y": Infinity}', id="nan-literals"),
    ],
)
def test_loads_matches_json(text: str) -> None:
    got, want = jsonwire.loads(text.encode()), json.loads(text)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True) or math.isnan(got["x"])


def test_loads_rejects_what_json_rejects() -> None:
    with pytest.raises(ValueError):
        jsonwire.loads(b'{"model": ')


@pytest.mark.parametrize("obj", [{"content": "héllo ✓", "n": 1}, {"seed": 2**70}])
def test_dumps_is_compact_utf8(obj: dict[str, object]) -> None:
    assert jsonwire.dumps(obj) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def test_chunks_parse_like_json() -> None:
    chunk = b'{"id":"x","choices":[{"index":0,"delta":{"content":"h\\u00e9"}}],"usage":null}'
    assert jsonwire.loads_chunk(chunk) == json.loads(chunk)
    assert jsonwire.loads_chunk(b'{"x": NaN}')["x"] != 0
    with pytest.raises(ValueError):
        jsonwire.loads_chunk(b"{")
