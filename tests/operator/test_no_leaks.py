"""No leaks: one realistic session through the real operator (kopf against kmock) and the real router process it
configures, then a scan of **everything** both emitted for provider keys (plain and base64) and prompt or completion
text.

The session: provider keys and prompts are canaries made at runtime; providers are echo emulators (each answer is the
prompt, so completions carry canaries too) behind a ProviderPolicy the operator probes with the keys (one provider's
key is wrong: 401s, a misconfigured provider in status, Events and logs). The operator compiles the LLMRoute (with
``spec.audit``) into its ConfigMap; the router runs on exactly that config with the keys in ``LLMROUTE_KEY_*``
environment variables, as in a pod, at ``--log-level debug``. Traffic with the openai SDK: plain, streamed,
completions, embeddings, tool calls, a failover through the 401 provider, an escalation, a residency denial (403),
fail closed (503), malformed JSON and an unknown model; canaries also ride in a custom header and in the client's
own key.

Scanned: the router's log (stderr, every level) and stdout (the audit trail), its ``/metrics``, the operator's log
records at DEBUG (kopf's included), its metrics registry, every object in the emulated API server but Secrets
(ConfigMaps, Deployments, Services, statuses, Events...), every error body and every response header. Keys must not
appear anywhere; prompt and completion text nowhere but in the answers the client asked for.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client import generate_latest

from llmroute.controller.metrics import REGISTRY as OPERATOR_REGISTRY
from llmroute.core.compile import credential_env
from llmroute.core.manifests import CONFIG_KEY
from llmroute.emulator import Emulator, FaultPlan
from tests.figures import record
from tests.operator.conftest import Cluster, StartOperator, eventually, settled
from tests.operator.helpers import GV, config_map, key_needles, leaked
from tests.router.conftest import RouterProcess

pytestmark = pytest.mark.operator

NS, ROUTE, POLICY = "apps", "chat", "residency"
RUN = secrets.token_hex(4)
KEYS = {name: f"sk-canary-{name}-{RUN}-{secrets.token_hex(8)}" for name in ("cn", "us", "wrong")}
CLIENT_KEY = f"sk-canary-client-{RUN}"
PROMPTS = {
    w: f"canary {w} {RUN} {secrets.token_hex(6)}"
    for w in ("plain", "stream", "completion", "embedding", "tool", "failover", "denied", "closed", "json", "model")
}
HEADER = f"canary-header-{RUN}"
EMAIL = f"canary.{RUN}@example.org"


@pytest.fixture()
async def providers() -> AsyncIterator[dict[str, Emulator]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(Emulator(name, api_key=KEYS[name], echo=True, seed=3))
            for name in ("cn", "us")
        }


def manifests(providers: dict[str, Emulator]) -> tuple[dict[str, Any], ...]:
    health = {"path": "/models", "interval": "200ms", "timeout": "1s", "failureThreshold": 1, "successThreshold": 1}

    def provider(name: str, url_of: str, jurisdiction: str, training: str) -> dict[str, Any]:
        return {
            "name": name,
            "endpoint": providers[url_of].url,
            "jurisdiction": jurisdiction,
            "healthCheck": health,
            "dataUse": {"training": training, "retention": "Zero"},
            "credentials": {"secretRef": {"name": "provider-keys", "namespace": NS, "key": name}},
        }

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "provider-keys", "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in KEYS.items()},
    }
    policy = {
        "apiVersion": GV,
        "kind": "ProviderPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "defaultDataClass": "public",
            "providers": [
                provider("cn", "cn", "CN", "Unknown"),
                provider("wrong", "us", "US", "NotUsed"),
                provider("us", "us", "US", "NotUsed"),
            ],
            "dataClasses": [
                {"name": "public"},
                {"name": "pii", "allow": {"jurisdictions": ["US"]}, "detect": ["email"]},
                {"name": "cn-only", "allow": {"jurisdictions": ["CN"]}},
            ],
        },
    }
    route = {
        "apiVersion": GV,
        "kind": "LLMRoute",
        "metadata": {"name": ROUTE, "namespace": NS},
        "spec": {
            "policyRef": {"name": POLICY},
            "models": [
                {
                    "name": "chat",
                    "backends": [
                        {"provider": "cn", "model": "deepseek-chat", "priority": 0},
                        {"provider": "wrong", "model": "deepseek-chat", "priority": 1},
                        {"provider": "us", "model": "deepseek-chat", "priority": 2},
                    ],
                },
                {"name": "embed", "backends": [{"provider": "us", "model": "deepseek-chat"}]},
            ],
            "failover": {"maxAttempts": 3, "timeToFirstToken": "2s", "totalTimeout": "10s", "backoff": "10ms"},
            "audit": {},
        },
    }
    return secret, policy, route


async def operator_session(cluster: Cluster, start_operator: StartOperator, providers: dict[str, Emulator]) -> str:
    """Deploy through the operator; the compiled config it wrote."""
    secret, policy, route = manifests(providers)
    await cluster.create(secret, "secrets")
    await cluster.create(policy, "providerpolicies")
    await cluster.create(route, "llmroutes")
    await start_operator(probe_providers=True)
    cm = await eventually(lambda: config_map(cluster, NS, ROUTE), within=10, what="the router ConfigMap")
    await eventually(lambda: _misconfigured_seen(cluster), within=10, what="the wrong key seen by the prober")
    return str(cm["data"][CONFIG_KEY])


async def _misconfigured_seen(cluster: Cluster) -> bool:
    status = ((await cluster.get(GV, "providerpolicies", None, POLICY)) or {}).get("status") or {}
    return any(
        p.get("name") == "wrong" and p.get("state") not in (None, "Unknown", "Healthy")
        for p in status.get("providers", [])
    )


class Seen:
    """What the client saw besides the answers it asked for: error bodies and every response header."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.answers: list[str] = []

    def response(self, raw: Any) -> Any:
        self.headers.append(dict(raw.headers))
        return raw.parse()

    def error(self, exc: openai.APIStatusError) -> None:
        self.headers.append(dict(exc.response.headers))
        self.errors.append(exc.response.text)


async def traffic(router: RouterProcess, providers: dict[str, Emulator]) -> Seen:
    seen = Seen()
    chat = {"model": "chat", "extra_headers": {"x-canary": HEADER}}

    def user(key: str, extra: str = "") -> list[dict[str, Any]]:
        return [{"role": "user", "content": f"{PROMPTS[key]}{extra}"}]

    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20) as c:
        answer = seen.response(await c.chat.completions.with_raw_response.create(messages=user("plain"), **chat))
        seen.answers.append(answer.choices[0].message.content)
        stream = seen.response(
            await c.chat.completions.with_raw_response.create(messages=user("stream"), stream=True, **chat)
        )
        seen.answers.append("".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices]))
        done = seen.response(await c.completions.with_raw_response.create(model="chat", prompt=PROMPTS["completion"]))
        seen.answers.append(done.choices[0].text)
        seen.response(await c.embeddings.with_raw_response.create(model="embed", input=[PROMPTS["embedding"]]))
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ]
        called = seen.response(
            await c.chat.completions.with_raw_response.create(messages=user("tool"), tools=tools, **chat)
        )
        seen.answers.append(json.dumps(called.choices[0].message.model_dump()))
        providers["cn"].set_faults(FaultPlan(status=503))  # cn -> wrong (401) -> us
        failed_over = seen.response(
            await c.chat.completions.with_raw_response.create(messages=user("failover"), **chat)
        )
        seen.answers.append(failed_over.choices[0].message.content)
        providers["cn"].set_faults(FaultPlan())
        escalated = seen.response(
            await c.chat.completions.with_raw_response.create(messages=user("plain", f" write to {EMAIL}"), **chat)
        )
        seen.answers.append(escalated.choices[0].message.content)
        for key, data_class, status in (("denied", "cn-only", 403), ("closed", "pii", 503)):
            if status == 503:
                providers["us"].set_faults(FaultPlan(status=500))
            with pytest.raises(openai.APIStatusError) as info:
                await c.chat.completions.create(
                    messages=user(key, f" {EMAIL}"), model="chat", extra_headers={"x-llmroute-data-class": data_class}
                )
            assert info.value.status_code == status
            seen.error(info.value)
        providers["us"].set_faults(FaultPlan())
        with pytest.raises(openai.NotFoundError) as missing:
            await c.chat.completions.create(messages=user("model"), model="not-published")
        seen.error(missing.value)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            router.url + "/v1/chat/completions",
            data=f'{{"model":"chat","messages":["{PROMPTS["json"]}"',
            headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 400
        seen.headers.append(dict(resp.headers))
        seen.errors.append(await resp.text())
    return seen


async def everything_in_the_cluster(cluster: Cluster) -> dict[str, Any]:
    kinds = [
        ("v1", "configmaps"),
        ("v1", "events"),
        ("v1", "services"),
        ("apps/v1", "deployments"),
        ("policy/v1", "poddisruptionbudgets"),
        ("v1", "serviceaccounts"),
        (GV, "llmroutes"),
        (GV, "providerpolicies"),
    ]
    return {plural: await cluster.list(api, plural) for api, plural in kinds}


async def test_no_key_prompt_or_completion_in_anything_router_or_operator_emit(
    cluster: Cluster,
    start_operator: StartOperator,
    providers: dict[str, Emulator],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = await operator_session(cluster, start_operator, providers)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / CONFIG_KEY).write_text(config)
    env = {credential_env(name): key for name, key in KEYS.items()}
    router = RouterProcess(
        [str(tmp_path / "config" / CONFIG_KEY)],
        tmp_path / "router.log",
        env,
        stdout_path=tmp_path / "audit.jsonl",
        args=("--log-level", "debug"),
    )
    try:
        seen = await traffic(router, providers)
        router_metrics = router.metrics()
    finally:
        router.stop()
    await settled(cluster)

    keys = key_needles([*KEYS.values(), CLIENT_KEY])
    content = [*PROMPTS.values(), EMAIL, HEADER, *(a for a in seen.answers if a and len(a) > 16)]
    assert len(seen.answers) == 6 and all(PROMPTS["plain"] in a for a in seen.answers[:1])  # echo: answers = prompts
    audit = (tmp_path / "audit.jsonl").read_text()
    router_log = router.log()
    assert "DEBUG" in router_log and len(audit.splitlines()) >= 10
    assert providers["us"].stats.total and providers["cn"].stats.total
    emitted = {
        "router log (debug)": router_log,
        "audit trail": audit,
        "router /metrics": router_metrics,
        "operator log (debug)": caplog.text + "\n".join(str(r.__dict__) for r in caplog.records),
        "operator metrics": generate_latest(OPERATOR_REGISTRY).decode(),
        "error bodies": seen.errors,
        "response headers": seen.headers,
        **await everything_in_the_cluster(cluster),
    }
    assert emitted["configmaps"] and emitted["events"] and len(emitted["error bodies"]) == 4
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    found = {where: leaked(text, keys) + leaked(text, content) for where, text in emitted.items()}
    assert {where: hits for where, hits in found.items() if hits} == {}
    record(
        "no-leaks",
        {
            "placesScanned": len(emitted),
            "keysAndContentLookedFor": len(keys) + len(content),
            "found": sum(len(hits) for hits in found.values()),
        },
    )
