"""End-to-end smoke of ``llmroute operator`` as a process: it finds the API server the standard way (here a
kubeconfig pointing at the emulator), reconciles, probes, serves ``/metrics`` and ``/healthz`` on the configured
ports, and exits cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from llmroute.emulator import Emulator
from tests.conftest import example_doc
from tests.loopback import free_port
from tests.operator.conftest import Cluster, eventually, secret_doc
from tests.operator.helpers import config_map
from tests.operator.test_prober import emulated_policy, providers  # noqa: F401  (the fixture)

pytestmark = pytest.mark.operator


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
    }))
    return path


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_llmroute_operator_process(cluster: Cluster, providers: dict[str, Emulator],  # noqa: F811
                                         tmp_path: Path) -> None:
    metrics_port, health_port, demand_port = free_port(), free_port(), free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", cluster.url)),
           "LLMROUTE_METRICS_PORT": str(metrics_port), "LLMROUTE_HEALTH_PORT": str(health_port),
           "LLMROUTE_DEMAND_PORT": str(demand_port),
           "LLMROUTE_ROUTER_IMAGE": "registry.example/llmroute:smoke"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "llmroute", "operator", "--log-level", "warning",
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    output = b""
    try:
        await cluster.create(secret_doc(), "secrets")
        await cluster.create(emulated_policy(providers), "providerpolicies")
        await cluster.create(example_doc("route"), "llmroutes")
        cm = await eventually(lambda: _config_map_or_exit(cluster, proc), within=30, what="the route reconciled")
        assert cm["data"]["config.json"]

        async def scraped() -> str | None:
            status, text = await fetch(f"http://127.0.0.1:{metrics_port}/metrics")
            wanted = ('llmroute_operator_reconciles_total{kind="LLMRoute",result="success"}',
                      'llmroute_provider_health{policy="deepseek-residency",provider="together",state="Healthy"} 1.0')
            return text if status == 200 and all(w in text for w in wanted) else None

        await eventually(scraped, within=15, what="reconcile and provider metrics on /metrics")
        assert (await fetch(f"http://127.0.0.1:{health_port}/healthz"))[0] == 200
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{demand_port}/v1/demand", json={"router": "apps/r/h", "pools": {"ns/p": 0}}) as resp:
            assert resp.status == 204  # routers' demand reports (no such pool: ignored)
    except BaseException:
        output = await _stop(proc)
        print(output.decode()[-5000:])  # shown by pytest on failure
        raise
    output = await _stop(proc)
    assert proc.returncode == 0, output.decode()[-3000:]


async def _config_map_or_exit(cluster: Cluster, proc: asyncio.subprocess.Process) -> Any:
    assert proc.returncode is None, "the operator exited"
    return await config_map(cluster)


async def _stop(proc: asyncio.subprocess.Process) -> bytes:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(proc.communicate(), 30)
    return output
