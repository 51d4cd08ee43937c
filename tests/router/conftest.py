"""Fixtures for the router tier: provider emulators, a config pointing at them, the real router process, clients.

* ``hub`` (session): four emulated providers on loopback, served by their own event loop in a background thread, so
  sync and async tests alike can drive the router while the emulators answer. ``deepseek`` is the CN provider;
  ``together``, ``fireworks`` and ``bedrock`` are US hosts of the same weights. Each requires its own API key, so
  emulator stats show which key (if any) arrived. Faults and stats are reset around every test.
* ``config_dir``: a folder with a ProviderPolicy, an LLMRoute and a Secret (local mode), with short timeouts.
  Backends have distinct priorities so the serving provider is deterministic:
  deepseek (0) -> together (1) -> fireworks (2) -> bedrock (3).
* ``router`` (module): the real ``python -m llmroute router`` process on a free loopback port, circuits that never
  open from passive failures (so tests in a module do not leak health into each other); ``fresh_router``: a
  factory for a private router process with its own config (circuit, reload and take-out tests).
* ``client`` / ``aclient``: the official openai SDK, sync and async, with ``max_retries=0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
import yaml

from llmroute.emulator import Emulator, FaultPlan
from tests.loopback import free_port

pytestmark = pytest.mark.router

T = TypeVar("T")
PROVIDERS = ("deepseek", "together", "fireworks", "bedrock")
KEYS = {name: f"sk-{name}-test-key-0123456789" for name in PROVIDERS}
CLIENT_KEY = "sk-client-should-never-travel-upstream"
ROOT = Path(__file__).resolve().parents[2]


class Hub:
    """The emulators and the event loop (in a daemon thread) that serves them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="emulators", daemon=True)
        self.thread.start()
        self.emulators: dict[str, Emulator] = {}
        for name in PROVIDERS:
            emulator = Emulator(name, api_key=KEYS[name], seed=7)
            self.call(emulator.start())
            self.emulators[name] = emulator

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def __getitem__(self, name: str) -> Emulator:
        return self.emulators[name]

    def reset(self) -> None:
        for emulator in self.emulators.values():
            if not emulator.listening:
                self.call(emulator.start_listening())
            emulator.set_faults(FaultPlan())
            emulator.reset()

    def requests(self, name: str) -> int:
        return self.emulators[name].stats.total

    def close(self) -> None:
        for emulator in self.emulators.values():
            self.call(emulator.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture(scope="session")
def hub() -> Iterator[Hub]:
    h = Hub()
    yield h
    h.close()


@pytest.fixture(autouse=True)
def _clean_emulators(hub: Hub) -> Iterator[None]:
    hub.reset()
    yield
    hub.reset()


def policy_doc(hub: Hub, *, probe_interval: str = "100ms") -> dict[str, Any]:
    def provider(name: str, jurisdiction: str, training: str, retention: str, certs: list[str],
                 key: str | None = None, url_of: str | None = None) -> dict[str, Any]:
        return {
            "name": name, "endpoint": hub[url_of or name].url, "jurisdiction": jurisdiction,
            "dataUse": {"training": training, "retention": retention}, "certifications": certs,
            "credentials": {"secretRef": {"name": "provider-keys", "namespace": "llm", "key": key or name}},
            "healthCheck": {"path": "/models", "interval": probe_interval, "timeout": "500ms"},
        }

    return {
        "apiVersion": "llmroute.io/v1alpha1", "kind": "ProviderPolicy", "metadata": {"name": "residency"},
        "spec": {
            "defaultDataClass": "internal",
            "providers": [
                provider("deepseek", "CN", "Unknown", "Unknown", []),
                provider("together", "US", "NotUsed", "Bounded", ["soc2"]),
                provider("fireworks", "US", "NotUsed", "Zero", ["soc2"]),
                provider("bedrock", "US", "NotUsed", "Zero", ["soc2", "hipaa-baa"]),
                provider("nokey", "US", "NotUsed", "Zero", [], key="nokey", url_of="fireworks"),
            ],
            "dataClasses": [
                {"name": "public"},
                {"name": "internal", "allow": {"training": "NotUsed"}},
                {"name": "pii", "allow": {"jurisdictions": ["US", "EU"], "training": "NotUsed"}},
                {"name": "phi", "allow": {"jurisdictions": ["US"], "training": "NotUsed", "retention": "Zero",
                                          "requireCertifications": ["hipaa-baa"]}},
                {"name": "restricted", "allow": {"jurisdictions": ["DE"]}},
            ],
        },
    }


def route_doc(*, circuit: dict[str, Any] | None = None, failover: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "llmroute.io/v1alpha1", "kind": "LLMRoute", "metadata": {"name": "chat", "namespace": "llm"},
        "spec": {
            "policyRef": {"name": "residency"},
            "models": [
                {"name": "deepseek-chat", "backends": [
                    {"provider": "deepseek", "model": "deepseek-chat", "priority": 0},
                    {"provider": "together", "model": "deepseek-ai/DeepSeek-V3", "priority": 1},
                    {"provider": "fireworks", "model": "accounts/fireworks/models/deepseek-v3", "priority": 2},
                    {"provider": "bedrock", "model": "deepseek.v3-v1:0", "priority": 3},
                ]},
                {"name": "deepseek-reasoner", "backends": [
                    {"provider": "deepseek", "model": "deepseek-reasoner", "priority": 0},
                    {"provider": "together", "model": "deepseek-ai/deepseek-reasoner", "priority": 1},
                ]},
                {"name": "embedder", "backends": [
                    {"provider": "together", "model": "BAAI/bge-base-en", "priority": 0},
                    {"provider": "fireworks", "model": "nomic-ai/nomic-embed-text", "priority": 1},
                ]},
                {"name": "keyless", "backends": [
                    {"provider": "nokey", "model": "some-model", "priority": 0},
                    {"provider": "together", "model": "deepseek-ai/DeepSeek-V3", "priority": 1},
                ]},
            ],
            "failover": {"maxAttempts": 4, "connectTimeout": "1s", "timeToFirstToken": "500ms",
                         "idleTimeout": "500ms", "totalTimeout": "10s", "backoff": "10ms", **(failover or {})},
            # Never opened by passive failures: tests sharing a router must not leak health into each other.
            "circuitBreaker": {"consecutiveFailures": 1000, "errorRatePercent": 100, "minRequests": 100000,
                               "window": "30s", "openDuration": "200ms", "recoverySteps": [50, 100],
                               "recoveryStepDuration": "200ms", **(circuit or {})},
            "router": {"maxRequestBytes": 65536},
        },
    }


def secret_doc() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "provider-keys", "namespace": "llm"},
            "stringData": dict(KEYS)}


def write_config(folder: Path, docs: dict[str, dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in docs.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return folder


def config_docs(hub: Hub, **route_kw: Any) -> dict[str, dict[str, Any]]:
    return {"policy": policy_doc(hub), "route": route_doc(**route_kw), "secrets": secret_doc()}


class RouterProcess:
    """``python -m llmroute router`` on a free loopback port; its log is kept in a file."""

    def __init__(self, config: list[str], log_path: Path, env: dict[str, str] | None = None,
                 wait: bool = True, stdout_path: Path | None = None, args: tuple[str, ...] = (),
                 prefix: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.stdout_path = stdout_path  # stdout apart from the log (stderr): the audit trail
        stdout = stdout_path.open("wb") if stdout_path is not None else self._log
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "llmroute", "router", "--listen", f"127.0.0.1:{self.port}",
             "--config", *config, *args],
            stdout=stdout, stderr=self._log if stdout_path is not None else subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, **(env or {})})
        if stdout is not self._log:
            stdout.close()  # the child holds its own copy
        self.wait_ready("/readyz" if wait else "/healthz")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, path: str = "/readyz", timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get(path)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"router not ready after {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        return self.get("/metrics")[1]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture()
def config_dir(hub: Hub, tmp_path: Path) -> Path:
    return write_config(tmp_path / "config", config_docs(hub))


@contextlib.contextmanager
def serving(hub: Hub, emulators: dict[str, Emulator]) -> Iterator[dict[str, Emulator]]:
    """A module's own emulators, started on the hub's loop and closed on exit."""
    for emu in emulators.values():
        hub.call(emu.start())
    try:
        yield emulators
    finally:
        for emu in emulators.values():
            hub.call(emu.close())


@contextlib.contextmanager
def router_on(tmp_path_factory: pytest.TempPathFactory, name: str,
              docs: dict[str, dict[str, Any]]) -> Iterator[RouterProcess]:
    """A router process on ``docs`` (written to a fresh folder named after ``name``), stopped on exit."""
    folder = write_config(tmp_path_factory.mktemp(name) / "config", docs)
    proc = RouterProcess([str(folder)], folder.parent / "router.log")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def router(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with router_on(tmp_path_factory, "shared", config_docs(hub)) as proc:
        yield proc


@pytest.fixture()
def fresh_router(tmp_path: Path) -> Iterator[Callable[..., RouterProcess]]:
    started: list[RouterProcess] = []

    def start(config: Path | list[str], env: dict[str, str] | None = None, wait: bool = True) -> RouterProcess:
        paths = [str(config)] if isinstance(config, Path) else config
        proc = RouterProcess(paths, tmp_path / f"router-{len(started)}.log", env, wait)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def make_client(router: RouterProcess, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=15, **kw)


def make_aclient(router: RouterProcess, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=15, **kw)


@pytest.fixture()
def client(router: RouterProcess) -> Iterator[openai.OpenAI]:
    with make_client(router) as c:
        yield c


@pytest.fixture()
async def aclient(router: RouterProcess) -> Any:
    async with make_aclient(router) as c:
        yield c


MESSAGES = [{"role": "user", "content": "Say hello"}]
