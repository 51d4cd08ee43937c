"""Every error the router answers, as the openai SDK sees it: the status maps to the SDK's exception type and the
body is OpenAI-shaped ``{"error": {"message", "type", "code", "param"}}``.

Aspects: unknown model (404), unknown data class (400), no compliant backend (403, with every denial reason),
no healthy backend (503 with Retry-After), malformed, non-object and too deeply nested JSON (400, no traceback, and
``Server`` carries no version), too large (413), upstream
400/422 returned as they came and never retried, unknown paths (404).
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import openai
import pytest

from .conftest import MESSAGES, Hub, RouterProcess
from .test_api import post

pytestmark = pytest.mark.router


def error_of(exc: openai.APIStatusError) -> dict[str, str | None]:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}
    return dict(body["error"])


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-17", messages=MESSAGES)
    err = error_of(info.value)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert "deepseek-chat" in str(err["message"])


def test_unknown_data_class_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES,
                                       extra_headers={"x-llmroute-data-class": "top-secret"})
    err = error_of(info.value)
    assert err["code"] == "unknown_data_class" and "pii" in str(err["message"])


def test_no_compliant_backend_is_403_with_reasons(client: openai.OpenAI, hub: Hub) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES,
                                       extra_headers={"x-llmroute-data-class": "restricted"})
    err = error_of(info.value)
    assert err["code"] == "no_compliant_backend" and err["type"] == "permission_error"
    for provider in ("deepseek/deepseek-chat", "together/", "fireworks/", "bedrock/"):
        assert provider in str(err["message"])
    assert "DE" in str(err["message"])
    assert sum(hub.requests(p) for p in ("deepseek", "together", "fireworks", "bedrock")) == 0


def test_all_allowed_down_is_503_no_healthy_backend(client: openai.OpenAI, hub: Hub) -> None:
    for name in ("together", "fireworks", "bedrock"):
        hub[name].set_faults(status=503)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    assert info.value.status_code == 503
    assert int(info.value.response.headers["Retry-After"]) >= 1
    err = error_of(info.value)
    assert err["code"] == "no_healthy_backend"
    assert "together/deepseek-ai/DeepSeek-V3: unavailable" in str(err["message"])


def test_malformed_json_and_non_object_are_400(router: RouterProcess) -> None:
    status, _, body = post(router, "/v1/chat/completions", None, raw=b'{"model": "deepseek-chat", ')
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_json"
    status, _, body = post(router, "/v1/chat/completions", ["not", "an", "object"])
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, _, body = post(router, "/v1/chat/completions", {"messages": MESSAGES})
    assert status == 400 and body["error"]["param"] == "model"


@pytest.mark.parametrize("raw", [b"[" * 3_000, b'{"a": ' * 3_000, b'{"model": "x", "n": 12345678901234567890, "m": '
                                 + b"[" * 3_000], ids=["arrays", "objects", "long-number-path"])
def test_json_nested_too_deeply_is_400_and_the_router_lives(router: RouterProcess, raw: bytes) -> None:
    status, headers, body = post(router, "/v1/chat/completions", None, raw=raw)
    assert status == 400 and body["error"]["code"] == "invalid_json"
    assert "nested too deeply" in body["error"]["message"]
    assert headers["server"] == "llmroute"  # no version banner
    status, _, _ = post(router, "/v1/chat/completions", {"model": "deepseek-chat", "messages": MESSAGES})
    assert status == 200


def test_body_over_max_request_bytes_is_413(client: openai.OpenAI, hub: Hub) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "x" * 70000}])
    assert info.value.status_code == 413
    assert error_of(info.value)["code"] == "request_too_large"
    assert hub.requests("together") == 0


@pytest.mark.parametrize("status", [400, 422])
def test_upstream_client_errors_are_returned_as_they_came(client: openai.OpenAI, hub: Hub, status: int) -> None:
    hub["together"].set_faults(status=status)
    expected = openai.BadRequestError if status == 400 else openai.UnprocessableEntityError
    with pytest.raises(expected) as info:
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    assert info.value.response.headers["x-llmroute-provider"] == "together"
    assert info.value.response.json()["error"]["message"] in ("Invalid Format", "Invalid Parameters")
    assert hub.requests("together") == 1 and hub.requests("fireworks") == 0  # never retried, never failed over


def test_upstream_client_error_in_a_stream(client: openai.OpenAI, hub: Hub) -> None:
    hub["together"].set_faults(status=400)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True)
    assert hub.requests("fireworks") == 0


def test_unknown_path_is_openai_shaped_404(router: RouterProcess) -> None:
    status, _, body = post(router, "/v1/responses", {"model": "deepseek-chat"})
    assert status == 404 and body["error"]["code"] == "not_found"


def test_every_kind_of_response_says_server_llmroute_and_no_version(router: RouterProcess) -> None:
    """Answers, streams, listings, probes, metrics and refusals all carry ``Server: llmroute`` (set where responses
    are finished, and on streams when they start): aiohttp's ``Python/3.x aiohttp/3.y`` would tell an attacker
    which versions to look up."""

    def head_of(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=15)
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            return resp.status, resp.getheader("Server", "")
        finally:
            conn.close()

    seen = {
        "answer": head_of("POST", "/v1/chat/completions", {"model": "deepseek-chat", "messages": MESSAGES}),
        "stream": head_of("POST", "/v1/chat/completions",
                          {"model": "deepseek-chat", "messages": MESSAGES, "stream": True}),
        "models": head_of("GET", "/v1/models"),
        "healthz": head_of("GET", "/healthz"),
        "readyz": head_of("GET", "/readyz"),
        "metrics": head_of("GET", "/metrics"),
        "unknown path": head_of("GET", "/v2/nothing"),
        "unknown model": head_of("POST", "/v1/chat/completions", {"model": "gpt-17", "messages": MESSAGES}),
        "wrong method": head_of("PUT", "/v1/chat/completions", {}),
    }
    assert {k: s for k, (_, s) in seen.items()} == dict.fromkeys(seen, "llmroute"), seen
    assert [s for s, _ in seen.values()] == [200, 200, 200, 200, 200, 200, 404, 404, 404]
