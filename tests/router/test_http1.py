"""The router's HTTP/1.1 upstream client (llmroute.router.http1 through llmroute.router.upstream) against raw sockets:
body framings split at every byte, interim responses, keep-alive reuse, drained release, errors and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from llmroute.core.retry import FailureKind
from llmroute.router.http1 import ProtocolViolation
from llmroute.router.upstream import Exchange, Upstream, UpstreamFailure, _head
from tests.loopback import LoopbackServer

Responder = Callable[[bytes], list[bytes]]


class RawServer(LoopbackServer):
    """Answers each request (head + Content-Length body) with the byte pieces ``respond`` returns."""

    def __init__(self, respond: Responder, close_after: bool = False) -> None:
        super().__init__()
        self.respond = respond
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                for piece in self.respond(request):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def endpoint(port: int) -> object:
    from llmroute.router.config_source import Endpoint

    class P:
        endpoint = f"http://127.0.0.1:{port}/v1"
        proxy = None

    return Endpoint(P(), {"Authorization": "Bearer k"})  # type: ignore[arg-type]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    u = Upstream()
    await u.open()
    yield u
    await u.close()


async def post(u: Upstream, port: int, deadline: float = 5.0) -> Exchange:
    loop = asyncio.get_running_loop()
    return await u.post(endpoint(port), "/chat/completions", b'{"x":1}', {"Content-Type": "application/json"},  # type: ignore[arg-type]
                        connect_s=1.0, deadline=loop.time() + deadline, on_timeout=FailureKind.TTFT)


async def body(ex: Exchange) -> bytes:
    loop = asyncio.get_running_loop()
    return await ex.read_body(loop.time() + 5, FailureKind.IDLE, 1 << 20)


def split_everywhere(data: bytes) -> list[list[bytes]]:
    return [[data[:i], data[i:]] for i in range(1, len(data))]


CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"6;ext=1\r\ndata: \r\n4\r\nabc\n\r\n0\r\nX-Trailer: t\r\n\r\n")
LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a\r\nset-cookie: b\r\n\r\nhello"


@pytest.mark.parametrize("raw, expected", [(CHUNKED, b"data: abc\n"), (LENGTH, b"hello")])
async def test_framings_split_at_every_byte_and_connection_reused(upstream: Upstream, raw: bytes,
                                                                   expected: bytes) -> None:
    pieces = split_everywhere(raw)
    async with RawServer(lambda _: pieces.pop()) as server:
        while pieces:
            ex = await post(upstream, server.port)
            assert ex.status == 200
            assert await body(ex) == expected
            ex.finish()
        assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"x":1}')


async def test_headers_interim_response_and_close_delimited_body(upstream: Upstream) -> None:
    raw = [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nSet-Cookie: a\r\n"
           b"set-cookie: b\r\nConnection: close\r\n\r\npart1", b"part2"]
    async with RawServer(lambda _: raw, close_after=True) as server:
        ex = await post(upstream, server.port)
        assert (ex.status, ex.header("retry-after"), ex.header("Set-Cookie")) == (429, "3", "a, b")
        assert await body(ex) == b"part1part2"
        ex.finish()
        ex = await post(upstream, server.port)  # the closed connection was not reused
        assert ex.status == 429
        assert server.connections == 2


async def test_released_before_the_final_chunk_returns_to_the_pool_once_it_arrives(upstream: Upstream) -> None:
    raw = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", b"0\r\n\r\n"]
    async with RawServer(lambda _: list(raw)) as server:
        ex = await post(upstream, server.port)
        loop = asyncio.get_running_loop()
        assert await ex.read(loop.time() + 5, FailureKind.IDLE) == b"hello"
        ex.finish()  # as the stream relay does after data: [DONE]
        await asyncio.sleep(0.05)
        ex = await post(upstream, server.port)
        assert await body(ex) == b"hello"
        assert server.connections == 1


@pytest.mark.parametrize("raw", [
    [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],  # closed before the end
    [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],  # malformed chunk size
    [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ntoo long"],  # more than announced
])
async def test_broken_bodies_are_resets(upstream: Upstream, raw: list[bytes]) -> None:
    async with RawServer(lambda _: raw, close_after=True) as server:
        with pytest.raises(UpstreamFailure) as err:  # when the head or the body is read, as the bytes come
            await body(await post(upstream, server.port))
        assert err.value.kind is FailureKind.RESET


async def test_malformed_head_is_a_reset_and_refused_is_connect(upstream: Upstream) -> None:
    async with RawServer(lambda _: [b"HTTP/9 what\r\n\r\n"]) as server:
        with pytest.raises(UpstreamFailure) as err:
            await post(upstream, server.port)
        assert err.value.kind is FailureKind.RESET
        port = server.port
    with pytest.raises(UpstreamFailure) as err:
        await post(upstream, port)
    assert err.value.kind is FailureKind.CONNECT


async def test_deadlines_name_the_phase(upstream: Upstream) -> None:
    async with RawServer(lambda _: []) as server:  # never answers
        with pytest.raises(UpstreamFailure) as err:
            await post(upstream, server.port, deadline=0.05)
        assert err.value.kind is FailureKind.TTFT
    stalled = [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]
    async with RawServer(lambda _: stalled) as server:
        ex = await post(upstream, server.port)
        loop = asyncio.get_running_loop()
        assert await ex.read(loop.time() + 1, FailureKind.IDLE) == b"abc"
        with pytest.raises(UpstreamFailure) as err:
            await ex.read(loop.time() + 0.05, FailureKind.IDLE)
        assert err.value.kind is FailureKind.IDLE
        ex.abandon()


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError):
        _head("POST", "/v1/x", "h", {"Authorization": "Bearer k\r\nX-Evil: 1"}, 0)
    assert _head("GET", "/m", "h:1", {"A": "b"}, None) == b"GET /m HTTP/1.1\r\nHost: h:1\r\nA: b\r\n\r\n"
    assert issubclass(ProtocolViolation, ConnectionError)
