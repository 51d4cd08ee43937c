"""The local stack: one emulator per provider, the example's YAML pointed at them, and the real router process.

The example files are copied, not edited: every ProviderPolicy provider ``endpoint`` is replaced by its emulator's
loopback URL, and nothing else changes, so the router compiles and serves exactly the policy and route the user
wrote. Each emulator checks the provider key from the example's Secret, which proves the router sends the provider's
key (and never the client's). Self-hosted providers get vLLM's ``reasoning`` field name.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from llmroute.api.base import parse_duration
from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import Provider, ProviderPolicy
from llmroute.documents import Bundle, load, yaml_files
from llmroute.emulator import Emulator
from llmroute.errors import InputError


@dataclass
class Stack:
    """Everything running for one local session."""

    route: LLMRoute
    policy: ProviderPolicy
    emulators: dict[str, Emulator]
    router_url: str  # http://127.0.0.1:PORT
    router: asyncio.subprocess.Process

    def provider(self, name: str) -> Provider:
        found = self.policy.spec.provider(name)
        assert found is not None
        return found


def pick_route(bundle: Bundle) -> tuple[LLMRoute, ProviderPolicy]:
    """The example's one LLMRoute and its ProviderPolicy; a clear error when the folder is not such an example."""
    if not bundle.routes:
        raise InputError("no LLMRoute in the example folder")
    route = bundle.route(None)
    policy = bundle.policies.get(route.spec.policy_ref.name)
    if policy is None:
        raise InputError(f'the example has no ProviderPolicy "{route.spec.policy_ref.name}" for its LLMRoute')
    return route, policy


def provider_key(bundle: Bundle, route: LLMRoute, p: Provider) -> str | None:
    """The provider key from the example's Secret documents (None for keyless self-hosted providers)."""
    if p.credentials is None:
        return None
    ref = p.credentials.secret_ref
    namespace = ref.namespace or route.metadata.namespace or "default"
    secret = bundle.secrets.get((namespace, ref.name), {})
    return secret.get(ref.key)


SCALED_CIRCUIT = ("window", "openDuration", "recoveryStepDuration")
"""Circuit-breaker durations that local mode divides by the time scale (incidents last seconds, not hours)."""


def rewrite(example: Path, out: Path, urls: dict[str, str], time_scale: float = 1.0) -> None:
    """Copy the example's YAML into ``out`` with each provider endpoint replaced by ``urls[name]``.

    With ``time_scale`` > 1, the circuit breaker's window/open/recovery durations and the providers' probe
    intervals are divided by it, so a compressed drill also shows recovery. Latency budgets (timeouts,
    timeToFirstToken) are never scaled: the incidents' latencies are replayed as they were.
    """
    for path in yaml_files([example]):
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            spec = doc.get("spec") or {}
            if doc.get("kind") == "ProviderPolicy":
                for provider in spec.get("providers", []):
                    provider["endpoint"] = urls.get(provider.get("name"), provider.get("endpoint"))
                    check = provider.setdefault("healthCheck", {})
                    check["interval"] = scaled(check.get("interval", "15s"), time_scale)
            elif doc.get("kind") == "LLMRoute":
                circuit = spec.setdefault("circuitBreaker", {})
                for key, default in zip(SCALED_CIRCUIT, ("30s", "30s", "15s"), strict=True):
                    circuit[key] = scaled(circuit.get(key, default), time_scale)
        (out / path.name).write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


def scaled(duration: str, time_scale: float) -> str:
    """``duration`` divided by ``time_scale``, as a duration string in milliseconds (at least 100ms)."""
    if time_scale == 1.0:
        return duration
    return f"{max(100, round(parse_duration(duration) * 1000 / time_scale))}ms"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise InputError(f"port {port} on {host} is in use; pick another with --port") from None


@contextlib.asynccontextmanager
async def running(example: Path, *, port: int | None = None, seed: int = 0,
                  time_scale: float = 1.0) -> AsyncIterator[Stack]:
    """Start emulators and the router on ``example``; stop everything on exit (also on Ctrl-C)."""
    bundle = load([example])
    route, policy = pick_route(bundle)
    used = {b.provider for m in route.spec.models for b in m.backends}
    emulators: dict[str, Emulator] = {}
    async with contextlib.AsyncExitStack() as stack:
        for i, p in enumerate(q for q in policy.spec.providers if q.name in used):
            emu = Emulator(p.name, api_key=provider_key(bundle, route, p), seed=seed + i,
                           reasoning_field="reasoning" if p.self_hosted else "reasoning_content")
            emulators[p.name] = await stack.enter_async_context(emu)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmroute-local-")))
        rewrite(example, tmp, {name: emu.url for name, emu in emulators.items()}, time_scale)
        if port is None:
            port = free_port()
        else:
            check_port("127.0.0.1", port)
        router = await _start_router(tmp, port)
        stack.push_async_callback(_stop, router)
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(url, router)
        yield Stack(route=route, policy=policy, emulators=emulators, router_url=url, router=router)


async def _start_router(config: Path, port: int) -> asyncio.subprocess.Process:
    argv = [sys.executable, "-m", "llmroute", "router", "--listen", f"127.0.0.1:{port}", "--config", str(config),
            "--log-level", "warning"]
    return await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, within_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            if proc.returncode is not None:
                err = await proc.stderr.read() if proc.stderr else b""
                last = (err.decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
                raise InputError(f"the router exited with code {proc.returncode}: {last}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise InputError(f"the router did not become ready within {within_s:.0f}s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape_metrics(session: aiohttp.ClientSession, url: str) -> Metrics:
    """The router's /metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out

