"""The router's architectural floor, for the router benchmark: the same server (aiohttp, uvloop) and the same
upstream client (:mod:`llmroute.router.http1` through :class:`llmroute.router.upstream.Upstream`) as the router,
and nothing else - no parsing, routing, residency, failover, circuit, metrics or assembly: the request body goes
upstream as it came and the answer comes back as it came (a stream is relayed read by read).

What llmroute adds on top of this is what its own logic costs; what this adds on top of the direct upstream is
what a Python proxy built from these parts costs before any logic at all (the figure an overhead target has to
leave room above). Not a product path and never used by the router.

Run: ``python tests/benchmarks/floor_proxy.py PORT UPSTREAM_PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import uvloop
from aiohttp import web

from llmroute.core.retry import FailureKind
from llmroute.router.upstream import Upstream

_TIMEOUT_S = 30.0


def build_app(upstream_port: int) -> web.Application:
    client = Upstream()
    key = ("http", "127.0.0.1", upstream_port, "")
    prefix = f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{upstream_port}\r\n".encode()

    async def lifespan(_: web.Application) -> AsyncIterator[None]:
        await client.open()
        yield
        await client.close()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _TIMEOUT_S
        head = prefix + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        ex = await client._exchange(key, head, body, False, _TIMEOUT_S, deadline, FailureKind.TOTAL)
        if ex.content_type.startswith("text/event-stream"):
            response = web.StreamResponse(headers={"Content-Type": ex.content_type})
            await response.prepare(request)
            while chunk := await ex.read(deadline, FailureKind.TOTAL):
                await response.write(chunk)
            ex.finish()
            await response.write_eof()
            return response
        parts = []
        while chunk := await ex.read(deadline, FailureKind.TOTAL):
            parts.append(chunk)
        ex.finish()
        return web.Response(status=ex.status, body=b"".join(parts), headers={"Content-Type": ex.content_type})

    async def models(_: web.Request) -> web.Response:
        return web.Response(body=b'{"object":"list","data":[]}', content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(lifespan)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def main() -> None:
    port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    uvloop.install()
    web.run_app(build_app(upstream_port), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
