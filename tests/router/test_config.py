"""Where the router's config comes from, how it changes under load, and how the process stops.

Aspects: live reload through a ConfigMap-style symlink swap while requests run (0 failed requests); an invalid
edit is rejected with a log line and the old config keeps serving; cluster mode (a compiled RouterConfig, keys
from env vars and ``$LLMROUTE_KEYS_DIR``; a backend without a key is skipped); a RouterConfig of an unknown
version is refused; no config -> not ready; SIGTERM drains an in-flight stream and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core.compile import compile_route, credential_env

from .conftest import KEYS, MESSAGES, Hub, RouterProcess, make_aclient, make_client, policy_doc, route_doc, secret_doc
from .test_streaming import counter

pytestmark = pytest.mark.router
StartRouter = Callable[..., RouterProcess]


class ConfigMapDir:
    """A folder laid out as the kubelet mounts a ConfigMap: files are symlinks into ``..data``, which an update
    swaps atomically to a new timestamped folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir(parents=True)

    def publish(self, files: dict[str, str]) -> None:
        self.generation += 1
        target = self.root / f"..2026_{self.generation}"
        target.mkdir()
        for name, text in files.items():
            (target / name).write_text(text, encoding="utf-8")
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(target.name)
        tmp.replace(self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)


def yaml_files(hub: Hub, route: dict[str, Any] | None = None) -> dict[str, str]:
    import yaml

    return {"policy.yaml": yaml.safe_dump(policy_doc(hub)), "route.yaml": yaml.safe_dump(route or route_doc()),
            "secrets.yaml": yaml.safe_dump(secret_doc())}


def ready_hash(router: RouterProcess) -> str:
    return str(json.loads(router.get("/readyz")[1])["configHash"])


def wait_for(check: Callable[[], bool], timeout_s: float = 6.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


async def test_reload_under_load_drops_nothing(fresh_router: StartRouter, hub: Hub, tmp_path: Path) -> None:
    # budgets well above a stall of the in-process emulators under 20 clients on a loaded CI machine (500 ms idle
    # timeouts cut 4 streams in one run): this test is about reloads dropping nothing, not about slow upstreams
    relaxed = {"timeToFirstToken": "5s", "idleTimeout": "5s", "totalTimeout": "20s"}
    mount = ConfigMapDir(tmp_path / "mount")
    mount.publish(yaml_files(hub, route_doc(failover=relaxed)))
    router = fresh_router(mount.root)
    for name in ("together", "fireworks"):
        hub[name].set_faults(token_interval=0.01)
    swapped = route_doc(failover=relaxed)
    swapped["spec"]["models"][0]["backends"][1]["priority"] = 5  # together after fireworks and bedrock
    failures: list[BaseException] = []
    served: dict[str, int] = {}
    done = asyncio.Event()

    async def editor() -> None:
        first = ready_hash(router)
        await asyncio.sleep(0.3)
        mount.publish(yaml_files(hub, swapped))
        await asyncio.to_thread(wait_for, lambda: ready_hash(router) != first)
        second = ready_hash(router)
        mount.publish({**yaml_files(hub, swapped), "route.yaml": "spec: [this is: not valid"})
        invalid = 'llmroute_config_reloads_total{result="invalid"}'
        await asyncio.to_thread(wait_for, lambda: counter(router, invalid) == 1)
        assert ready_hash(router) == second
        await asyncio.sleep(0.3)
        done.set()

    async def worker(client: openai.AsyncOpenAI, index: int) -> None:
        count = 0
        while count < 10 or not done.is_set():
            count += 1
            try:
                if count % 2:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="deepseek-chat", messages=MESSAGES, max_tokens=5)
                    raw.parse()
                else:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="deepseek-chat", messages=MESSAGES, max_tokens=5, stream=True)
                    [c async for c in raw.parse()]
                provider = raw.headers["x-llmroute-provider"]
                served[provider] = served.get(provider, 0) + 1
            except Exception as exc:  # every failure is the finding
                failures.append(exc)

    async with make_aclient(router) as client:
        await asyncio.gather(editor(), *(worker(client, i) for i in range(20)))
    assert failures == []
    assert sum(served.values()) >= 200
    assert served.get("together", 0) > 0 and served.get("fireworks", 0) > 0  # served before and after the swap
    assert "config rejected (keeping config" in router.log()
    assert 'llmroute_config_reloads_total{result="ok"} 2.0' in router.metrics()


def test_cluster_mode_router_config_with_env_and_file_keys(fresh_router: StartRouter, hub: Hub,
                                                           tmp_path: Path) -> None:
    config = compile_route(LLMRoute.model_validate(route_doc()), ProviderPolicy.model_validate(policy_doc(hub)))
    mount = ConfigMapDir(tmp_path / "mount")
    mount.publish({"config.json": config.to_json()})
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    (keys_dir / "fireworks").write_text(KEYS["fireworks"] + "\n")
    env = {credential_env(p): KEYS[p] for p in ("deepseek", "bedrock")}  # together: no key anywhere
    router = fresh_router(mount.root, env={**env, "LLMROUTE_KEYS_DIR": str(keys_dir)})
    with make_client(router) as client:
        raw = client.chat.completions.with_raw_response.create(model="deepseek-chat", messages=MESSAGES)
        assert raw.headers["x-llmroute-provider"] == "fireworks"
        assert hub.requests("together") == 0
        first = ready_hash(router)
        assert first == config.content_hash()
        mount.publish({"config.json": json.dumps({**config.wire(), "version": 99})})
        wait_for(lambda: counter(router, 'llmroute_config_reloads_total{result="unsupported_version"}') == 1)
        assert ready_hash(router) == first
        assert client.chat.completions.create(model="deepseek-chat", messages=MESSAGES).choices
    assert "version 99 is not supported" in router.log()


def test_invalid_config_at_start_is_not_ready_until_fixed(fresh_router: StartRouter, hub: Hub,
                                                          tmp_path: Path) -> None:
    mount = ConfigMapDir(tmp_path / "mount")
    mount.publish({"route.yaml": "kind: [broken"})
    router = fresh_router(mount.root, wait=False)
    status, body = router.get("/readyz")
    assert status == 503 and json.loads(body)["error"]["code"] == "not_ready"
    with make_client(router) as client, pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    mount.publish(yaml_files(hub))
    router.wait_ready(timeout_s=5)
    assert "config rejected (no config loaded yet)" in router.log()


def test_sigterm_drains_in_flight_stream_and_exits_0(fresh_router: StartRouter, hub: Hub, tmp_path: Path) -> None:
    mount = ConfigMapDir(tmp_path / "mount")
    mount.publish(yaml_files(hub))
    router = fresh_router(mount.root)
    hub["together"].set_faults(token_interval=0.1)
    with make_client(router) as client:
        stream = client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, max_tokens=8, stream=True)
        chunks = iter(stream)
        text = next(chunks).choices[0].delta.content or ""
        router.proc.send_signal(signal.SIGTERM)
        text += "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 8
    assert router.proc.wait(timeout=10) == 0
    assert "draining" in router.log()
