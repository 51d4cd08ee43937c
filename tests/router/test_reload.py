"""Config reload under load drops 0 requests: the real router on an operator-style mount, swapped over and over.

The mount is what the operator writes and the kubelet mounts (a compiled RouterConfig ``config.json`` in a ConfigMap
folder, swapped through its ``..data`` symlink; keys from env vars). While concurrent openai SDK clients - half of
them streaming - keep the router busy, the config flips between two routings (together first, then together removed
so fireworks serves: requests in flight on a backend that the new config drops still finish) every
:data:`SWAP_EVERY_S`, with one invalid config in between (kept out, the last good one keeps serving). Every request
must succeed with its full answer; the router must have applied the swaps (``llmroute_config_reloads_total``).
Figures go to ``config-reload`` (:mod:`tests.figures`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core.compile import compile_route, credential_env
from tests.figures import record

from .conftest import KEYS, Hub, RouterProcess, make_aclient, policy_doc, route_doc
from .test_config import ConfigMapDir
from .test_lifecycle import PROMPT
from .test_streaming import counter

pytestmark = pytest.mark.router
StartRouter = Callable[..., RouterProcess]
SWAP_EVERY_S = 0.8  # the watcher polls about once a second: most swaps are seen, some are coalesced
SWAPS = 14
WORKERS = 16
TOKENS = 5


def compiled(hub: Hub, route: dict[str, Any]) -> str:
    """The ConfigMap's ``config.json`` for ``route``, as the operator writes it."""
    config = compile_route(LLMRoute.model_validate(route), ProviderPolicy.model_validate(policy_doc(hub)))
    return config.to_json()


def variants(hub: Hub) -> tuple[str, str]:
    """Two routings of deepseek-chat for internal data: together first; together gone (fireworks first)."""
    first = route_doc()
    second = route_doc()
    backends = second["spec"]["models"][0]["backends"]
    second["spec"]["models"][0]["backends"] = [b for b in backends if b["provider"] != "together"]
    second["spec"]["failover"]["maxAttempts"] = 3
    return compiled(hub, first), compiled(hub, second)


async def one(client: openai.AsyncOpenAI, stream: bool) -> tuple[str, int]:
    """One request to its end: (serving provider, content words received)."""
    raw = await client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=PROMPT, max_tokens=TOKENS, stream=stream
    )
    parsed = raw.parse()
    if isinstance(parsed, openai.AsyncStream):
        text = "".join([c.choices[0].delta.content or "" async for c in parsed if c.choices])
    else:
        text = parsed.choices[0].message.content or ""
    return raw.headers["x-llmroute-provider"], len(text.split())


async def test_swapping_the_config_repeatedly_under_load_drops_no_request(
    fresh_router: StartRouter, hub: Hub, tmp_path: Path
) -> None:
    together_first, fireworks_first = variants(hub)
    mount = ConfigMapDir(tmp_path / "mount")
    mount.publish({"config.json": together_first})
    env = {credential_env(p): KEYS[p] for p in ("deepseek", "together", "fireworks", "bedrock")}
    router = fresh_router(mount.root, env=env)
    for name in ("together", "fireworks"):
        hub[name].set_faults(token_interval=0.02)  # each answer spans ~0.1 s: swaps land mid-request
    served: dict[str, int] = {}
    failures: list[str] = []
    short: list[int] = []
    done = asyncio.Event()

    async def editor() -> None:
        for i in range(SWAPS):
            await asyncio.sleep(SWAP_EVERY_S)
            if i == SWAPS // 2:
                mount.publish({"config.json": '{"version": 1, "kind": "RouterConfig", "models": [oops'})
                await asyncio.sleep(1.5)  # longer than a poll: the router must see it (and keep it out)
            mount.publish({"config.json": fireworks_first if i % 2 == 0 else together_first})
        await asyncio.sleep(1.5)  # the last swap is seen under load too
        done.set()

    async def worker(client: openai.AsyncOpenAI, index: int) -> None:
        count = 0
        while not done.is_set():
            count += 1
            try:
                provider, words = await one(client, stream=(index + count) % 2 == 0)
            except Exception as exc:  # every failure is the finding
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            served[provider] = served.get(provider, 0) + 1
            if words != TOKENS:
                short.append(words)

    started = time.monotonic()
    async with make_aclient(router) as client:
        await asyncio.gather(editor(), *(worker(client, i) for i in range(WORKERS)))
    elapsed = time.monotonic() - started
    reloads = counter(router, 'llmroute_config_reloads_total{result="ok"}')
    rejected = counter(router, 'llmroute_config_reloads_total{result="invalid"}')
    requests = sum(served.values()) + len(failures)
    assert failures == []
    assert short == []
    assert requests >= 300
    assert served.get("together", 0) > 0 and served.get("fireworks", 0) > 0  # both routings served
    assert reloads >= SWAPS // 3  # the router applied the swaps (at most one per poll; some coalesce)
    assert rejected >= 1  # the invalid one was seen and kept out
    record(
        "config-reload",
        {
            "requests": requests,
            "streamingShare": 0.5,
            "concurrentClients": WORKERS,
            "swapsPublished": SWAPS,
            "reloadsApplied": int(reloads),
            "invalidRejected": int(rejected),
            "errors": len(failures),
            "truncated": len(short),
            "seconds": elapsed,
        },
    )
