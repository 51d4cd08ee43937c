"""Upstream endpoints come only from the policy: nothing a client sends - ``Host``, ``X-Forwarded-Host``,
``Forwarded``, an absolute-form request target, a ``model`` that is a URL or names a host, ``base_url``-like body
fields - makes the real router connect anywhere else. A canary listener (which would answer like a provider) counts
every connection it gets; the emulators count the requests the policy's providers got."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.figures import record
from tests.router.test_http1 import RawServer

from .conftest import PROVIDERS, Hub, RouterProcess, config_docs, write_config

pytestmark = pytest.mark.router

CHAT = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}


def _answer(_: bytes) -> list[bytes]:
    body = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "model": "canary",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "canary"}, "finish_reason": "stop"}],
        }
    ).encode()
    return [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body]


@pytest.fixture()
def canary(hub: Hub) -> Iterator[RawServer]:
    server = RawServer(_answer)
    hub.call(server.__aenter__())
    try:
        yield server
    finally:
        hub.call(server.__aexit__(None, None, None))


def send(router: RouterProcess, target: str, headers: dict[str, str], body: dict[str, object]) -> tuple[int, bytes]:
    """One request over a raw socket (so the request target and Host are exactly what a client chose)."""
    data = json.dumps(body).encode()
    head = [
        f"POST {target} HTTP/1.1",
        *(f"{k}: {v}" for k, v in headers.items()),
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
        "",
        "",
    ]
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall("\r\n".join(head).encode() + data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, reply.partition(b"\r\n\r\n")[2]


def test_no_client_input_steers_the_upstream(router: RouterProcess, hub: Hub, canary: RawServer) -> None:
    there = f"127.0.0.1:{canary.port}"
    url = f"http://{there}/v1"
    cases: list[tuple[str, dict[str, str], dict[str, object]]] = [
        ("/v1/chat/completions", {"Host": there}, CHAT),
        (
            "/v1/chat/completions",
            {
                "Host": "localhost",
                "X-Forwarded-Host": there,
                "X-Forwarded-Proto": "http",
                "X-Forwarded-Port": str(canary.port),
                "Forwarded": f"host={there};proto=http",
                "X-Original-URL": url,
                "X-Rewrite-URL": url,
                "X-Forwarded-Server": there,
            },
            CHAT,
        ),
        (f"http://{there}/v1/chat/completions", {"Host": there}, CHAT),  # absolute-form request target
        (
            "/v1/chat/completions",
            {"Host": "localhost"},
            {
                **CHAT,
                "base_url": url,
                "api_base": url,
                "endpoint": url,
                "url": url,
                "host": there,
                "extra_body": {"base_url": url},
                "provider": {"endpoint": url},
            },
        ),
        (
            "/v1/chat/completions",
            {
                "Host": "localhost",
                "x-llmroute-endpoint": url,
                "x-llmroute-provider": url,
                "x-llmroute-data-class": "public",
            },
            CHAT,
        ),
    ]
    for target, headers, body in cases:
        status, reply = send(router, target, headers, body)
        assert status == 200, reply
        assert b"canary" not in reply
    hostile_models = [
        url,
        f"{url}/chat/completions",
        f"deepseek-chat@{there}",
        f"{there}/deepseek-chat",
        f"//{there}/deepseek-chat",
    ]
    for model in hostile_models:
        status, reply = send(router, "/v1/chat/completions", {"Host": there}, {**CHAT, "model": model})
        assert status == 404 and b"model_not_found" in reply
    assert canary.connections == 0 and not canary.requests
    assert sum(hub.requests(n) for n in PROVIDERS) == len(cases)  # each served by a provider of the policy
    record("access", {"steeringAttempts": len(cases) + len(hostile_models), "canaryConnections": canary.connections})


def test_control_the_canary_is_reached_when_the_policy_names_it(
    hub: Hub, canary: RawServer, tmp_path: Path, fresh_router: Callable[..., RouterProcess]
) -> None:
    """Without this, a canary that could not be reached at all would pass the test above."""
    docs = config_docs(hub)
    for provider in docs["policy"]["spec"]["providers"]:
        provider["endpoint"] = f"http://127.0.0.1:{canary.port}/v1"
    router = fresh_router(write_config(tmp_path / "canary", docs))
    send(router, "/v1/chat/completions", {"Host": "localhost"}, CHAT)
    assert any(r.split(b"\r\n")[0] == b"POST /v1/chat/completions HTTP/1.1" for r in canary.requests)
