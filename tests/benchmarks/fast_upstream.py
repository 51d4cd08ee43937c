"""A deliberately cheap OpenAI-compatible upstream for benchmarks (not a test double for behaviour: see
llmroute.emulator for that). Pre-built bodies, no JSON parsing: ``"stream": true`` is found with a bytes search.

Run: ``python tests/benchmarks/fast_upstream.py PORT [CHUNKS] [KEEPALIVES]``. A streamed answer is CHUNKS content
chunks, optionally preceded by KEEPALIVES ``: keep-alive`` comments (DeepSeek's queueing signal), then a usage chunk
and ``data: [DONE]``.
"""

from __future__ import annotations

import json
import re
import sys

from aiohttp import web

_STREAM = re.compile(rb'"stream"\s*:\s*true')


def _bodies(chunks: int, keepalives: int) -> tuple[bytes, bytes]:
    base = {"id": "bench-1", "created": 1700000000, "model": "bench-model", "system_fingerprint": "fp_bench"}
    usage = {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}
    whole = {**base, "object": "chat.completion", "usage": usage, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "tok " * chunks}, "logprobs": None,
         "finish_reason": "stop"}]}
    events = [b": keep-alive\n\n"] * keepalives
    for i in range(chunks):
        delta = {"role": "assistant", "content": "tok "} if i == 0 else {"content": "tok "}
        finish = "stop" if i == chunks - 1 else None
        chunk = {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    tail = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
    events += [b"data: " + json.dumps(tail).encode() + b"\n\n", b"data: [DONE]\n\n"]
    return json.dumps(whole).encode(), b"".join(events)


def build_app(chunks: int = 8, keepalives: int = 0) -> web.Application:
    whole, stream = _bodies(chunks, keepalives)
    models = json.dumps({"object": "list", "data": [{"id": "bench-model", "object": "model"}]}).encode()

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()
        if _STREAM.search(body):
            return web.Response(body=stream, content_type="text/event-stream")
        return web.Response(body=whole, content_type="application/json")

    async def list_models(_: web.Request) -> web.Response:
        return web.Response(body=models, content_type="application/json")

    app = web.Application()
    for prefix in ("", "/v1"):
        app.router.add_post(prefix + "/chat/completions", chat)
        app.router.add_get(prefix + "/models", list_models)
    return app


def main() -> None:
    port = int(sys.argv[1])
    chunks = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    keepalives = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    web.run_app(build_app(chunks, keepalives), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
