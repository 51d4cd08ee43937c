"""The upstream client (llmroute.router.upstream on llmroute.router.http1, llhttp underneath) against generated raw
responses from a socket server.

Aspects: every response - well-formed or not: malformed status lines, bad chunk sizes, truncated bodies, oversized
heads, interim 1xx responses, missing, wrong or duplicate ``Content-Length``, ``Transfer-Encoding`` with
``Content-Length``, arbitrary bytes, any split into reads - ends as a response or as an :class:`UpstreamFailure`
of kind RESET (which :mod:`llmroute.core.retry` fails over), as soon as it arrives (never a hang or a timeout,
never another exception); a well-formed response, whatever its framing and split, gives its exact status and
body; a connection is reused only after a complete, well-formed response.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.core import retry
from llmroute.core.retry import FailureKind
from llmroute.router.http1 import MAX_HEAD
from llmroute.router.upstream import Upstream, UpstreamFailure
from tests.router.test_http1 import RawServer, body, post

pytestmark = pytest.mark.router

BODY = st.binary(max_size=40)


@dataclass(frozen=True)
class Case:
    raw: bytes
    cuts: tuple[int, ...]
    expected: tuple[int, bytes] | None  # None: not a well-formed response


def chunked(data: bytes, sizes: list[int]) -> bytes:
    out, pos, i = [], 0, 0
    while pos < len(data):
        piece = data[pos : pos + sizes[i % len(sizes)]]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        pos, i = pos + len(piece), i + 1
    return b"".join(out) + b"0\r\n\r\n"


@st.composite
def well_formed(draw: st.DrawFn) -> tuple[bytes, int, bytes]:
    status = draw(st.sampled_from([200, 201, 400, 429, 500, 503]))
    data = draw(BODY)
    interim = b"".join(
        draw(
            st.lists(
                st.sampled_from([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"]),
                max_size=2,
            )
        )
    )
    extra = b"".join(draw(st.lists(st.sampled_from([b"X-A: 1\r\n", b"Set-Cookie: a\r\n", b"Retry-After: 2\r\n"]))))
    if draw(st.booleans()):
        framing = b"Transfer-Encoding: chunked\r\n"
        payload = chunked(data, draw(st.lists(st.integers(1, 16), min_size=1)))
    else:
        framing, payload = b"Content-Length: %d\r\n" % len(data), data
    return interim + b"HTTP/1.1 %d X\r\n" % status + extra + framing + b"\r\n" + payload, status, data


MALFORMED = st.sampled_from(
    [
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/9 what\r\n\r\n",
        b"HTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
        b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhi\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ntoo long",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 10) + b"\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n" + b"X: aaaaaaaaaa\r\n" * (MAX_HEAD // 14 + 1) + b"\r\n",
    ]
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["ok", "ok", "malformed", "truncated", "garbage"]))
    expected: tuple[int, bytes] | None = None
    if kind == "malformed":
        raw = draw(MALFORMED)
    elif kind == "garbage":
        raw = draw(st.binary(min_size=1, max_size=200))
    else:
        raw, status, data = draw(well_formed())
        if kind == "truncated":
            raw = raw[: draw(st.integers(0, len(raw) - 1))]
        else:
            expected = (status, data)
    cuts = tuple(sorted(set(draw(st.lists(st.integers(1, max(len(raw) - 1, 1)), max_size=4)))))
    return Case(raw, cuts, expected)


async def exchange(case: Case) -> tuple[str, object, int]:
    pieces = [case.raw[a:b] for a, b in zip((0, *case.cuts), (*case.cuts, len(case.raw)), strict=True)]
    upstream = Upstream()
    await upstream.open()
    try:
        async with RawServer(lambda _: list(pieces), close_after=True) as server:
            try:
                ex = await post(upstream, server.port, deadline=2.0)
                got = (ex.status, await body(ex))
                ex.finish()
                return "ok", got, server.connections
            except UpstreamFailure as failure:
                return "failure", failure.kind, server.connections
    finally:
        await upstream.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_response_is_an_answer_or_a_classified_failure(case: Case) -> None:
    outcome, value, _ = asyncio.run(asyncio.wait_for(exchange(case), 10))  # never a hang
    if case.expected is not None:
        assert (outcome, value) == ("ok", case.expected)
    elif outcome == "failure":  # seen as soon as it arrives (the server closes after it): a reset, never a timeout
        assert value is FailureKind.RESET
        assert retry.classify_failure(value) == retry.Outcome(retry.Action.FAILOVER, "reset")


async def test_a_connection_is_reused_only_after_a_well_formed_response() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    replies = [[ok + b"HTTP/1.1 200 OK\r\n"], [ok], [ok]]  # an unsolicited second response spoils the connection
    upstream = Upstream()
    await upstream.open()
    try:
        async with RawServer(lambda _: replies.pop(0)) as server:
            with pytest.raises(UpstreamFailure) as failure:
                await post(upstream, server.port)
            assert failure.value.kind is FailureKind.RESET
            for _ in range(2):
                ex = await post(upstream, server.port)
                assert (ex.status, await body(ex)) == (200, b"hi")
                ex.finish()
            assert server.connections == 2  # a new one after the spoiled one, then reused
    finally:
        await upstream.close()
