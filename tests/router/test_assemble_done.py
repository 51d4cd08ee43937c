"""Where ``data: [DONE]`` sits in the upstream's bytes does not change a non-streaming answer, through the real router.

The assembler looks for ``[DONE]`` only near the end of each read (a long answer is not searched per read); a
``[DONE]`` line followed in the same write by more than that window (here a 2 KB comment) is found when the response
body ends. Either way the client gets the whole answer, and a stream that never sends ``[DONE]`` still fails the
attempt (the client sees an error, not a truncated answer)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.router.test_http1 import RawServer

from .conftest import Hub, RouterProcess, config_docs, make_client, write_config

pytestmark = pytest.mark.router

TOKENS = [f"t{i} " for i in range(300)]


def _event(delta: dict[str, str], finish: str | None = None) -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m",
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _sse(tail: bytes) -> Callable[[bytes], list[bytes]]:
    """An upstream answering a 300-token stream in one write, ``tail`` after the last event, then the body's end."""
    events = [_event({"role": "assistant", "content": ""})] + [_event({"content": t}) for t in TOKENS]
    body = b"".join(events) + _event({}, "stop") + tail

    def respond(_: bytes) -> list[bytes]:
        return [b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(body) + body]

    return respond


@pytest.fixture()
def upstream_with(hub: Hub, tmp_path: Path,
                  fresh_router: Callable[..., RouterProcess]) -> Iterator[Callable[[bytes], RouterProcess]]:
    servers: list[RawServer] = []

    def start(tail: bytes) -> RouterProcess:
        server = RawServer(_sse(tail))
        hub.call(server.__aenter__())
        servers.append(server)
        docs = config_docs(hub)
        for provider in docs["policy"]["spec"]["providers"]:
            provider["endpoint"] = f"http://127.0.0.1:{server.port}/v1"
        return fresh_router(write_config(tmp_path / f"up{len(servers)}", docs))

    yield start
    for server in servers:
        hub.call(server.__aexit__(None, None, None))


@pytest.mark.parametrize("tail", [b"data: [DONE]\n\n", b"data: [DONE]\n\n: " + b"x" * 2000 + b"\n\n"],
                         ids=["done-last", "done-then-2KB-comment"])
def test_the_whole_answer_whatever_follows_done(upstream_with: Callable[[bytes], RouterProcess], tail: bytes) -> None:
    router = upstream_with(tail)
    with make_client(router) as client:
        answer = client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "".join(TOKENS)
    assert answer.choices[0].finish_reason == "stop"


def test_a_stream_without_done_is_not_an_answer(upstream_with: Callable[[bytes], RouterProcess]) -> None:
    router = upstream_with(b": no done here\n\n")
    with make_client(router) as client, pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code >= 500
