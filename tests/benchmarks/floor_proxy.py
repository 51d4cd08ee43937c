"""The router's architectural floor, for the router benchmark: the same server (:mod:`llmroute.router.http_server`
on uvloop) and the same upstream client (:mod:`llmroute.router.http1` through
:class:`llmroute.router.upstream.Upstream`) as the router, and nothing else - no parsing, routing, residency,
failover, circuit, metrics or assembly: the request body goes upstream as it came and the answer comes back as it
came (a stream is relayed read by read).

What llmroute adds on top of this is what its own logic costs; what this adds on top of the direct upstream is
what a Python proxy built from these parts costs before any logic at all (the figure an overhead target has to
leave room above). Not a product path and never used by the router.

Run: ``python tests/benchmarks/floor_proxy.py PORT UPSTREAM_PORT``.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from llmroute.core.retry import FailureKind
from llmroute.router.http_server import HttpServer, Request, Response
from llmroute.router.limits import Limits
from llmroute.router.upstream import Upstream

_TIMEOUT_S = 30.0
_MODELS = Response(200, b'{"object":"list","data":[]}')


async def serve(port: int, upstream_port: int) -> None:
    client = Upstream()
    await client.open()
    key = ("http", "127.0.0.1", upstream_port, "")
    prefix = f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{upstream_port}\r\n".encode()
    loop = asyncio.get_running_loop()

    async def handle(request: Request) -> Response | None:
        if request.method == "GET":
            return _MODELS
        body = await request.read()
        deadline = loop.time() + _TIMEOUT_S
        head = prefix + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        ex = await client._exchange(key, head, body, False, _TIMEOUT_S, deadline, FailureKind.TOTAL)
        if ex.content_type.startswith("text/event-stream"):
            first = True
            while chunk := await ex.read(deadline, FailureKind.TOTAL):
                if first:
                    request.start_stream(200, ex.content_type, {}, chunk)
                    first = False
                else:
                    await request.write(chunk)
            ex.finish()
            request.end_stream()
            return None
        parts = []
        while chunk := await ex.read(deadline, FailureKind.TOTAL):
            parts.append(chunk)
        ex.finish()
        return Response(ex.status, b"".join(parts), ex.content_type)

    server = await loop.create_server(HttpServer(handle, Limits(), 4096), "127.0.0.1", port, backlog=2048,
                                      reuse_address=True)
    async with server:
        await asyncio.Event().wait()


def main() -> None:
    port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    uvloop.run(serve(port, upstream_port))


if __name__ == "__main__":
    main()
