"""Upstream TLS verification cannot be turned off silently, through the real router process.

Aspects: ``PYTHONHTTPSVERIFY=0`` changes nothing (an upstream whose certificate does not verify gets no request and
no key; the client gets 503); a trust store pointed at garbage fails closed; the allowed ways to weaken transport
security - a custom trust store (``SSL_CERT_FILE``, how a private CA is trusted) and an ``http://`` endpoint of a
provider outside the cluster - work, and each is a WARNING naming the provider and
``llmroute_upstream_tls_weakened{provider,reason} 1``; loopback and self-hosted endpoints are not flagged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import trustme

from llmroute.emulator import Emulator
from tests.router.conftest import CLIENT_KEY, Hub, RouterProcess, config_docs, write_config
from tests.router.test_tls import _docs, tls_providers

pytestmark = pytest.mark.router
__all__ = ["tls_providers"]  # the fixture, shared with test_tls
WEAKENED = "llmroute_upstream_tls_weakened"
CLEAN_ENV = dict.fromkeys(("SSL_CERT_FILE", "SSL_CERT_DIR"), "")


def ask(router: RouterProcess) -> openai.APIStatusError | str:
    client = openai.OpenAI(base_url=router.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=15)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}]
        )
    except openai.APIStatusError as exc:
        return exc
    return raw.headers["x-llmroute-provider"]


def weakened(router: RouterProcess) -> dict[tuple[str, str], float]:
    out = {}
    for line in router.metrics().splitlines():
        if line.startswith(WEAKENED + "{"):
            labels, value = line[len(WEAKENED) + 1 :].rsplit("} ", 1)
            parts = dict(p.split("=", 1) for p in labels.split(","))
            out[(parts["provider"].strip('"'), parts["reason"].strip('"'))] = float(value)
    return out


@pytest.mark.parametrize("garbage", [False, True], ids=["pythonhttpsverify-0", "garbage-trust-store"])
def test_verification_cannot_be_switched_off(
    tls_providers: tuple[Emulator, Emulator, trustme.CA],
    tmp_path: Path,
    fresh_router: Callable[..., RouterProcess],
    garbage: bool,
) -> None:
    good, forged, _ = tls_providers  # neither CA is trusted by the system store
    env = {**CLEAN_ENV, "PYTHONHTTPSVERIFY": "0"}
    if garbage:
        (tmp_path / "garbage.pem").write_bytes(os.urandom(2048))
        env["SSL_CERT_FILE"] = str(tmp_path / "garbage.pem")
    router = fresh_router(write_config(tmp_path / "config", _docs(good, forged)), env=env)
    answer = ask(router)
    assert isinstance(answer, openai.InternalServerError), answer
    assert answer.response.json()["error"]["code"] == "no_healthy_backend"
    assert good.stats.total == 0 and forged.stats.total == 0  # no request, no key, ever reached either
    if garbage:
        assert "upstream transport weakened (custom_trust_store)" in router.log()
        assert weakened(router) == {("forged", "custom_trust_store"): 1.0, ("secure", "custom_trust_store"): 1.0}
    else:
        assert weakened(router) == {} and "weakened" not in router.log()


def test_a_custom_trust_store_works_and_is_loud(
    tls_providers: tuple[Emulator, Emulator, trustme.CA],
    tmp_path: Path,
    fresh_router: Callable[..., RouterProcess],
) -> None:
    good, forged, trusted = tls_providers
    trusted.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    env = {**CLEAN_ENV, "SSL_CERT_FILE": str(tmp_path / "ca.pem")}
    router = fresh_router(write_config(tmp_path / "config", _docs(good, forged)), env=env)
    assert ask(router) == "secure" and forged.stats.total == 0
    log = router.log()
    for name in ("forged", "secure"):
        assert (
            f"WARNING llmroute.router.transport: provider {name}: upstream transport weakened "
            f"(custom_trust_store): certificates are checked against SSL_CERT_FILE={tmp_path / 'ca.pem'}" in log
        )
    assert weakened(router) == {("forged", "custom_trust_store"): 1.0, ("secure", "custom_trust_store"): 1.0}


def plaintext_docs(hub: Hub) -> dict[str, dict[str, Any]]:
    docs = copy.deepcopy(config_docs(hub))
    providers = docs["policy"]["spec"]["providers"]
    remote = {**copy.deepcopy(providers[1]), "name": "remote", "endpoint": "http://llm.example.invalid/v1"}
    inhouse = {
        **copy.deepcopy(providers[1]),
        "name": "inhouse",
        "endpoint": "http://vllm.llm.svc:8000/v1",
        "selfHosted": True,
    }
    providers += [remote, inhouse]
    docs["route"]["spec"]["models"].append(
        {
            "name": "spread",
            "backends": [
                {"provider": "remote", "model": "m", "priority": 0},
                {"provider": "inhouse", "model": "m", "priority": 1},
                {"provider": "together", "model": "m", "priority": 2},
            ],
        }
    )
    return docs


def test_a_plaintext_endpoint_outside_the_cluster_is_loud(
    hub: Hub, tmp_path: Path, fresh_router: Callable[..., RouterProcess]
) -> None:
    router = fresh_router(write_config(tmp_path / "config", plaintext_docs(hub)), env=CLEAN_ENV)
    assert weakened(router) == {("remote", "plaintext"): 1.0}  # loopback emulators and the self-hosted one: not
    assert (
        "provider remote: upstream transport weakened (plaintext): endpoint http://llm.example.invalid is not "
        "HTTPS: its key, prompts and answers travel unencrypted" in router.log()
    )
    assert ask(router) == "together"  # it still serves (the default class, internal, excludes deepseek)
