"""HTTPS to providers (every real provider is HTTPS): the router verifies certificates with the system trust store
(here a test CA given through ``SSL_CERT_FILE``), serves completions over TLS, and treats a provider whose
certificate it cannot verify as unreachable: it fails over, and nothing is sent to that provider."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import trustme

from llmroute.emulator import Emulator
from tests.router.conftest import CLIENT_KEY, Hub, RouterProcess, write_config

pytestmark = pytest.mark.router


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture()
def tls_providers(hub: Hub) -> Iterator[tuple[Emulator, Emulator, trustme.CA]]:
    trusted, untrusted = trustme.CA(), trustme.CA()
    good = hub.call(Emulator("secure", api_key="sk-secure-key", ssl_context=_server_context(trusted)).start())
    forged = hub.call(Emulator("forged", api_key="sk-forged-key", ssl_context=_server_context(untrusted)).start())
    yield good, forged, trusted
    hub.call(good.close())
    hub.call(forged.close())


def _docs(good: Emulator, forged: Emulator) -> dict[str, dict[str, Any]]:
    def provider(name: str, url: str) -> dict[str, Any]:
        return {"name": name, "endpoint": url, "jurisdiction": "US",
                "dataUse": {"training": "NotUsed", "retention": "Zero"},
                "credentials": {"secretRef": {"name": "keys", "key": name}}}

    return {
        "policy": {"apiVersion": "llmroute.io/v1alpha1", "kind": "ProviderPolicy", "metadata": {"name": "tls"},
                   "spec": {"defaultDataClass": "pii",
                            "dataClasses": [{"name": "pii", "allow": {"training": "NotUsed"}}],
                            "providers": [provider("forged", forged.url), provider("secure", good.url)]}},
        "route": {"apiVersion": "llmroute.io/v1alpha1", "kind": "LLMRoute", "metadata": {"name": "tls"},
                  "spec": {"policyRef": {"name": "tls"},
                           "failover": {"timeToFirstToken": "2s", "connectTimeout": "1s"},
                           "models": [{"name": "deepseek-chat", "backends": [
                               {"provider": "forged", "model": "deepseek-chat", "priority": 0},
                               {"provider": "secure", "model": "deepseek-chat", "priority": 1}]}]}},
        "secrets": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"},
                    "stringData": {"forged": "sk-forged-key", "secure": "sk-secure-key"}},
    }


def test_https_provider_is_verified_and_an_unverifiable_one_is_failed_over(
    tls_providers: tuple[Emulator, Emulator, trustme.CA], tmp_path: Path,
    fresh_router: Callable[..., RouterProcess],
) -> None:
    good, forged, trusted = tls_providers
    ca_file = tmp_path / "ca.pem"
    trusted.cert_pem.write_to_path(str(ca_file))
    router = fresh_router(write_config(tmp_path / "config", _docs(good, forged)), env={"SSL_CERT_FILE": str(ca_file)})
    client = openai.OpenAI(base_url=router.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=15)

    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-llmroute-provider"] == "secure"
    assert raw.headers["x-llmroute-attempts"] == "2"
    chunks = list(client.chat.completions.create(model="deepseek-chat", stream=True,
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert any(c.choices and c.choices[0].delta.content for c in chunks)

    assert good.stats.requests["/chat/completions"] == 2
    assert good.stats.auth["ok"] >= 2
    assert forged.stats.total == 0  # the handshake failed: no request (and no key) ever reached it
