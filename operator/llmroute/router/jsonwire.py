"""JSON on the request path: orjson when it can (several times faster than ``json`` for the bodies and SSE chunks
the router parses and writes per request), the standard library when orjson refuses an input it accepts.

The fallback keeps behaviour identical to ``json``: orjson rejects the ``NaN``/``Infinity`` literals that ``json``
accepts and reads integers beyond 64 bits as floats (silently changing a value the client sent), so input with
such literals or with a run of 19+ digits is parsed by ``json`` instead. That check costs more than the parse, so
it is made where it matters, on what clients send (:func:`loads`); upstream SSE chunks, parsed ten-plus times per
answer only to assemble it, use :func:`loads_chunk` (token counts, timestamps and ids there fit in 64 bits). Used by
:mod:`llmroute.router.proxy` (request bodies), :mod:`llmroute.router.failover` (upstream bodies, assembled answers)
and :mod:`llmroute.router.sse` (chunks).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ``ValueError`` (as ``json.loads`` does) when neither parser accepts it."""
    raw = data.encode() if isinstance(data, str) else data
    if _LONG_NUMBER.search(raw):
        return _std_loads(raw)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _std_loads(data)


def loads_chunk(data: bytes) -> Any:
    """Parse one upstream SSE chunk; raises ``ValueError`` when neither parser accepts it."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _std_loads(data)


def _std_loads(data: bytes | str) -> Any:
    """``json.loads``, with nesting deeper than its recursion allows (``[[[[...``, which orjson refuses too) reported
    as the ``ValueError`` of any other bad JSON rather than escaping as a ``RecursionError`` (a 500)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (non-ASCII kept as is, like ``ensure_ascii=False``)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
