"""Residency is a hard invariant, and credentials stay where they belong.

Aspects: a ``pii`` request never reaches the CN provider, not on failover, not when every allowed backend is down
(the client gets 503 ``no_healthy_backend``); ``phi`` only reaches the provider with a BAA; the class comes from the
``x-llmroute-data-class`` header, else the route's default; the client's Authorization never reaches a provider
and every provider gets its own key.
"""

from __future__ import annotations

import openai
import pytest

from .conftest import CLIENT_KEY, MESSAGES, PROVIDERS, Hub

pytestmark = pytest.mark.router
US = ("together", "fireworks", "bedrock")


def chat(client: openai.OpenAI, data_class: str, stream: bool = False) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=MESSAGES, stream=stream, extra_headers={"x-llmroute-data-class": data_class})
    raw.parse()
    assert raw.headers["x-llmroute-data-class"] == data_class
    return raw.headers["x-llmroute-provider"]


@pytest.mark.parametrize("down", ["status", "refuse", "stopped"])
def test_pii_never_goes_to_cn_even_when_every_allowed_backend_is_down(client: openai.OpenAI, hub: Hub,
                                                                      down: str) -> None:
    for name in US:
        if down == "stopped":
            hub.call(hub[name].stop_listening())
        else:
            hub[name].set_faults(**({"status": 503} if down == "status" else {"refuse": True}))
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=stream,
                                           extra_headers={"x-llmroute-data-class": "pii"})
        assert info.value.response.json()["error"]["code"] == "no_healthy_backend"
    assert hub.requests("deepseek") == 0
    assert chat(client, "public") == "deepseek"  # the CN provider itself is fine: only residency kept it out


def test_classes_route_only_to_their_allowed_providers(client: openai.OpenAI, hub: Hub) -> None:
    assert chat(client, "public") == "deepseek"
    assert chat(client, "internal") == "together"
    assert chat(client, "pii", stream=True) == "together"
    assert chat(client, "phi") == "bedrock"
    hub["together"].set_faults(status=503)
    assert chat(client, "pii") == "fireworks"
    hub["bedrock"].set_faults(status=503)
    with pytest.raises(openai.InternalServerError):
        chat(client, "phi")  # fireworks has no BAA: phi waits for bedrock rather than going there
    assert hub["fireworks"].stats.requests["/chat/completions"] == 1


def test_default_class_applies_without_header(client: openai.OpenAI, hub: Hub) -> None:
    raw = client.chat.completions.with_raw_response.create(model="deepseek-chat", messages=MESSAGES)
    assert raw.headers["x-llmroute-data-class"] == "internal"
    assert hub.requests("deepseek") == 0


def test_client_authorization_never_reaches_a_provider(client: openai.OpenAI, hub: Hub) -> None:
    for data_class in ("public", "internal", "phi"):
        chat(client, data_class)
        chat(client, data_class, stream=True)
    client.embeddings.create(model="embedder", input="x",
                             extra_headers={"Cookie": "session=abc", "x-api-key": CLIENT_KEY})
    for name in PROVIDERS:
        auth = hub[name].stats.auth
        assert set(auth) <= {"ok"}, (name, auth)  # each got its own key; never the client's, never none
        assert hub[name].stats.last_bad_token_prefix is None
    assert sum(hub[name].stats.auth["ok"] for name in PROVIDERS) == 7
