"""The live stack for the observability tier, started once per session (``live``):

* a real Prometheus (Debian's 2.42) scraping every second, with ``charts/llmroute/files/alerts.yaml`` loaded;
* provider emulators (deepseek in CN; together, fireworks, bedrock in the US, which answer with the prompt itself),
  each keeping the request bodies it receives, in a background event loop, and in the same loop one emulated vLLM pod
  (:class:`llmroute.emulator.vllm.VllmPod`), the only pod of ModelPool ``apps/gpu-pool`` (provider ``gpus``), and the
  operator's real demand endpoint (:func:`llmroute.controller.demand.serve`) knowing ``gpu-pool`` and ``spare-pool``;
* the real router process (``python -m llmroute router``) on loopback, scraped as job ``router`` with the labels the
  chart's PodMonitor gives router pods in a cluster (``namespace``, ``llmroute_route``, ``pod``); it finds pool pods
  in an endpoints file (``LLMROUTE_POOL_ENDPOINTS_FILE``: the pod for ``gpu-pool``, none for ``spare-pool``, provider
  ``spare``) and reports held requests to the demand endpoint (``LLMROUTE_DEMAND_URL``);
* the operator's metrics endpoint (:func:`llmroute.controller.metrics.start_metrics_server`) in this process, scraped
  as job ``operator`` with ``honor_labels`` (as the chart's ServiceMonitor: the pool series keep the pool's
  ``namespace``), with provider health, probe latencies, reconciles and pool sizes fed while traffic flows (the
  pools' demand is what the routers really reported).

Scenario (:func:`drive`): once Prometheus has scraped both targets, openai-SDK traffic of several data classes,
streaming and not, runs for a baseline; then DeepSeek goes into a full outage (its port refuses connections) while
together fails half of its requests (too few in a row to open its circuit). Failovers happen, DeepSeek's circuit
opens, deepseek-reasoner (DeepSeek only) has no healthy backend, ``restricted`` requests are denied by residency.
Throughout, a drill (``spec.drills``) rehearses an overload of bedrock, the last resort, so the drill series exist.
Self-hosted pools throughout: ``qwen3-8b`` goes to the vLLM pod first (``confidential``, ``selfHostedOnly``, only
there); ``qwen3-coder`` has only ``spare-pool``, which never gets a ready pod (the operator finds its one pod's
metrics unreadable), so one more client's requests are held and time out after ``coldStart.maxWait`` (1 s).
Sensitivity routing throughout: class ``pii`` detects ``email`` and ``us_ssn``, and the route Restores emails and
Blocks SSNs in ``pii`` requests (``spec.redaction``); one more client sends prompts carrying a synthetic email or SSN
(:data:`PII`), most declared ``public``: they are escalated to ``pii`` (never sent to DeepSeek), emails go upstream as
placeholders and come back restored, SSNs are refused with 400.
Then traffic stops, and two more scrapes are awaited before the tests query.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import openai
import pytest
import yaml

from llmroute.api.provider_policy import ProviderState
from llmroute.controller import demand
from llmroute.controller import metrics as operator_metrics
from llmroute.controller.pools import PoolRegistry
from llmroute.core import pools
from llmroute.core.scaling import Reason
from llmroute.emulator import Emulator, FaultPlan
from llmroute.emulator.vllm import VllmConfig, VllmPod
from llmroute.router.holding import DEMAND_URL_ENV
from llmroute.router.pod_discovery import ENDPOINTS_FILE_ENV
from tests.chart.toolchain import ROOT, tool
from tests.loopback import free_port

T = TypeVar("T")
ALERTS = ROOT / "charts" / "llmroute" / "files" / "alerts.yaml"
DASHBOARD = ROOT / "charts" / "llmroute" / "files" / "dashboard.json"
NAMESPACE, ROUTE, POLICY = "apps", "chat", "residency"
PROVIDERS = {"deepseek": "CN", "together": "US", "fireworks": "US", "bedrock": "US"}
KEYS = {name: f"sk-{name}-observability-0123456789" for name in PROVIDERS}
GPU_POOL, SPARE_POOL = "gpu-pool", "spare-pool"
POOL_PROVIDERS = {"gpus": GPU_POOL, "spare": SPARE_POOL}
POOL_MODEL, SPARE_MODEL = "Qwen/Qwen3-8B", "Qwen/Qwen3-Coder-30B-A3B-Instruct"  # what each pool's vLLM serves
MAX_WAIT_S = 1.0
EMAIL, SSN = "jane.roe@example.com", "536-22-8726"
"""Synthetic personal data the scenario's prompts carry (a reserved domain; an SSN in a valid range, nobody's)."""
ECHO = frozenset({"together", "fireworks", "bedrock"})
"""Providers that answer with the prompt itself, so placeholders sent to them come back and are restored."""
BASELINE_S, OUTAGE_S = 1.5, 6.0


class Prometheus:
    """A real Prometheus server on loopback and a small client for its HTTP API."""

    def __init__(self, folder: Path, targets: dict[str, tuple[int, dict[str, str]]],
                 honor_labels: frozenset[str] = frozenset()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": job, "honor_labels": job in honor_labels,
                                "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": labels}]}
                               for job, (port, labels) in targets.items()],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (folder / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, expr: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited"
            with contextlib.suppress(OSError):
                if self.query(expr):
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{expr} returned nothing for {timeout_s}s")

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def stop_process(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """Terminate a child process (kill it after 10 s) and close its log."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


class Emulators:
    """The provider emulators, the vLLM pod of ``gpu-pool`` and the operator's demand endpoint, served by their own
    event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="emulators", daemon=True)
        self.thread.start()
        self.by_name = {name: self.call(Emulator(name, api_key=KEYS[name], seed=11, record_bodies=True,
                                                 echo=name in ECHO).start()) for name in PROVIDERS}
        self.vllm = self.call(VllmPod(VllmConfig(model=POOL_MODEL, seed=11)).start())
        self.pools = PoolRegistry()  # the operator's pools, as its ModelPool handlers would have registered them
        for i, pool in enumerate(POOL_PROVIDERS.values()):
            self.pools.scaler({"metadata": {"name": pool, "namespace": NAMESPACE, "uid": f"pool-{i}"}})
        demand_port = free_port()
        self.demand = self.call(demand.serve(self.pools, demand_port, "127.0.0.1"))
        self.demand_url = f"http://127.0.0.1:{demand_port}{demand.PATH}"
        self.call(self.vllm.wait_ready())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def held(self, pool: str) -> int:
        """The requests routers reported holding for ``pool`` (read in the loop the demand endpoint writes from)."""
        async def read() -> int:
            return self.pools.held(pools.key(pool, NAMESPACE))
        return self.call(read())

    def close(self) -> None:
        for emulator in self.by_name.values():
            self.call(emulator.close())
        self.call(self.vllm.close())
        self.call(self.demand.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def config_docs(emulators: Emulators) -> dict[str, Any]:
    def provider(name: str, training: str, retention: str, certs: list[str]) -> dict[str, Any]:
        return {"name": name, "endpoint": emulators.by_name[name].url, "jurisdiction": PROVIDERS[name],
                "dataUse": {"training": training, "retention": retention}, "certifications": certs,
                "credentials": {"secretRef": {"name": "provider-keys", "namespace": NAMESPACE, "key": name}},
                "healthCheck": {"path": "/models", "interval": "200ms", "timeout": "500ms"}}

    def pool_provider(name: str) -> dict[str, Any]:
        return {"name": name, "pool": {"name": POOL_PROVIDERS[name], "namespace": NAMESPACE}, "jurisdiction": "US",
                "dataUse": {"training": "NotUsed", "retention": "Zero"}}

    policy = {"apiVersion": "llmroute.io/v1alpha1", "kind": "ProviderPolicy", "metadata": {"name": POLICY},
              "spec": {"defaultDataClass": "public",
                       "providers": [provider("deepseek", "Unknown", "Unknown", []),
                                     provider("together", "NotUsed", "Bounded", ["soc2"]),
                                     provider("fireworks", "NotUsed", "Zero", ["soc2"]),
                                     provider("bedrock", "NotUsed", "Zero", ["soc2", "hipaa-baa"]),
                                     pool_provider("gpus"), pool_provider("spare")],
                       "dataClasses": [{"name": "public"},
                                       {"name": "pii", "allow": {"jurisdictions": ["US", "EU"], "training": "NotUsed"},
                                        "detect": ["email", "us_ssn"]},
                                       {"name": "restricted", "allow": {"jurisdictions": ["DE"]}},
                                       {"name": "confidential", "allow": {"selfHostedOnly": True}}]}}
    route = {"apiVersion": "llmroute.io/v1alpha1", "kind": "LLMRoute",
             "metadata": {"name": ROUTE, "namespace": NAMESPACE},
             "spec": {"policyRef": {"name": POLICY},
                      "models": [
                          {"name": "deepseek-chat", "backends": [
                              {"provider": "deepseek", "model": "deepseek-chat", "priority": 0},
                              {"provider": "together", "model": "deepseek-ai/DeepSeek-V3", "priority": 1},
                              {"provider": "fireworks", "model": "accounts/fireworks/models/deepseek-v3",
                               "priority": 2},
                              {"provider": "bedrock", "model": "deepseek.v3-v1:0", "priority": 3}]},
                          {"name": "deepseek-reasoner", "backends": [
                              {"provider": "deepseek", "model": "deepseek-reasoner", "priority": 0}]},
                          {"name": "qwen3-8b", "backends": [
                              {"provider": "gpus", "model": POOL_MODEL, "priority": 0},
                              {"provider": "together", "model": POOL_MODEL, "priority": 1}]},
                          {"name": "qwen3-coder", "backends": [
                              {"provider": "spare", "model": SPARE_MODEL, "priority": 0}]}],
                      "failover": {"maxAttempts": 4, "connectTimeout": "500ms", "timeToFirstToken": "2s",
                                   "idleTimeout": "2s", "totalTimeout": "10s", "backoff": "10ms"},
                      "circuitBreaker": {"consecutiveFailures": 12, "errorRatePercent": 80, "minRequests": 20,
                                         "window": "30s", "openDuration": "60s", "recoverySteps": [50, 100],
                                         "recoveryStepDuration": "5s"},
                      "coldStart": {"maxWait": f"{MAX_WAIT_S:g}s", "maxRequests": 4},
                      "redaction": [{"dataClass": "pii", "mode": "Restore", "types": ["email"]},
                                    {"dataClass": "pii", "mode": "Block", "types": ["us_ssn"]}],
                      "drills": [{"provider": "bedrock", "fault": "Overloaded",
                                  "until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))}]}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "provider-keys", "namespace": NAMESPACE},
              "stringData": KEYS}
    return {"policy": policy, "route": route, "secrets": secret}


class Router:
    """``python -m llmroute router`` on a free loopback port."""

    def __init__(self, config_dir: Path, port: int, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = (config_dir.parent / "router.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "llmroute", "router", "--listen", f"127.0.0.1:{port}",
                                      "--config", str(config_dir)], stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, **env})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "router exited"
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError("router not ready")

    def stop(self) -> None:
        stop_process(self.proc, self.log)


Request = Callable[[openai.OpenAI], None]


def _chat(model: str, data_class: str, stream: bool = False, text: str = "Say hello") -> Request:
    def send(client: openai.OpenAI) -> None:
        # 403 denials, 503 no-healthy-backend and 400 pii_blocked are expected
        with contextlib.suppress(openai.APIStatusError):
            kwargs: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}],
                                      "extra_headers": {"x-llmroute-data-class": data_class}}
            if stream:
                for _ in client.chat.completions.create(stream=True, **kwargs):
                    pass
            else:
                client.chat.completions.create(**kwargs)
    return send


STEADY = [_chat("deepseek-chat", "public"), _chat("deepseek-chat", "public", stream=True),
          _chat("deepseek-chat", "pii"), _chat("deepseek-chat", "pii", stream=True),
          _chat("deepseek-chat", "restricted"), _chat("deepseek-chat", "no-such-class"),
          _chat("qwen3-8b", "public"), _chat("qwen3-8b", "confidential", stream=True)]
OUTAGE_ONLY = [_chat("deepseek-reasoner", "public")]
HELD = [_chat("qwen3-coder", "confidential")]
"""Requests only ``spare-pool`` may serve: held, then 503 after ``coldStart.maxWait`` (one client of their own, so the
others' request mix and rates stay as they were)."""
PII = [_chat("deepseek-chat", "public", text=f"Draft a reply to {EMAIL} about the renewal"),
       _chat("deepseek-chat", "public", stream=True, text=f"Summarise the thread with {EMAIL}, then greet them"),
       _chat("deepseek-chat", "public", text=f"Check the account of the customer with SSN {SSN}"),
       _chat("deepseek-chat", "pii", stream=True, text=f"Write to {EMAIL} that the card has shipped")]
"""Prompts carrying personal data (one client of their own, like :data:`HELD`): ``public`` ones with an email are
escalated to ``pii`` (kept off DeepSeek), their email replaced by a placeholder and restored in the echoed answer;
``public`` ones with an SSN are escalated and refused (``pii`` Blocks ``us_ssn``); a ``pii`` one with an email is
only detected (no class added), and redacted and restored."""


@dataclass
class Operator:
    """Feeds the operator metrics as the operator's reconciles, prober and pool scalers would.

    Pools: ``gpu-pool`` was prewarmed to one replica (DeepSeek is Down) and has it ready; ``spare-pool`` scales to
    one replica when routers first report demand for it, and its pod stays unready: its ``/metrics`` does not answer
    (a scrape failure every pass). The demand each pool shows is what the router really reported (``held``)."""

    stop: threading.Event
    held: Callable[[str], int]

    def run(self) -> None:
        health = {"deepseek": ProviderState.DOWN, "together": ProviderState.DEGRADED,
                  "fireworks": ProviderState.MISCONFIGURED, "bedrock": ProviderState.HEALTHY,
                  "gpus": ProviderState.HEALTHY, "spare": ProviderState.COLD}
        operator_metrics.set_leader(True)  # the scraped replica is the active one
        operator_metrics.pool_scaled(NAMESPACE, GPU_POOL, Reason.PREWARM)
        spare_replicas = 0
        n = 0
        while not self.stop.is_set():
            n += 1
            for provider, state in health.items():
                operator_metrics.set_provider_health(POLICY, provider, state)
                operator_metrics.set_probe_latency(POLICY, provider, 0.01 * (1 + n % 5))
            result = operator_metrics.Result.COMPILE_ERROR if n % 4 == 0 else operator_metrics.Result.SUCCESS
            operator_metrics.reconcile_done("LLMRoute", result, 0.002 * (1 + n % 7))
            operator_metrics.reconcile_done("ProviderPolicy", operator_metrics.Result.SUCCESS, 0.001)
            operator_metrics.set_pool(NAMESPACE, GPU_POOL, 1, 1, self.held(GPU_POOL))
            spare_held = self.held(SPARE_POOL)
            if spare_held and not spare_replicas:
                spare_replicas = 1
                operator_metrics.pool_scaled(NAMESPACE, SPARE_POOL, Reason.DEMAND)
            operator_metrics.set_pool(NAMESPACE, SPARE_POOL, spare_replicas, 0, spare_held)
            operator_metrics.pool_scrape_failures(NAMESPACE, SPARE_POOL, spare_replicas)
            operator_metrics.reconcile_done("ModelPool", operator_metrics.Result.SUCCESS, 0.003)
            self.stop.wait(0.2)


def drive(router: Router, emulators: Emulators) -> None:
    """The traffic scenario: a healthy baseline, then DeepSeek's full outage and together's partial one; requests
    for the cold ``spare-pool`` and prompts carrying personal data throughout."""
    stop = threading.Event()
    phase: dict[str, list[Request]] = {"requests": list(STEADY), "held": HELD, "pii": PII}

    def worker(offset: int, kind: str = "requests") -> None:
        with openai.OpenAI(base_url=router.url + "/v1", api_key="sk-client", max_retries=0, timeout=15) as client:
            i = offset
            while not stop.is_set():
                requests = phase[kind]
                requests[i % len(requests)](client)
                i += 1

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(worker, k) for k in range(4)]
        futures += [pool.submit(worker, 0, kind) for kind in ("held", "pii")]
        time.sleep(BASELINE_S)
        emulators.call(emulators.by_name["deepseek"].stop_listening())
        emulators.by_name["together"].set_faults(FaultPlan(error_rate=0.5, error_status=503))
        phase["requests"] = STEADY + OUTAGE_ONLY
        time.sleep(OUTAGE_S)
        stop.set()
        for f in futures:
            f.result()


@dataclass
class Live:
    prometheus: Prometheus
    router: Router
    emulators: Emulators


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("observability")
    router_port, operator_port = free_port(), free_port()
    # Prometheus is started first: it needs ~5 s before its first scrape, which the rest of the setup overlaps
    prometheus = Prometheus(folder, {
        "router": (router_port, {"namespace": NAMESPACE, "llmroute_route": ROUTE, "pod": f"{ROUTE}-router-0"}),
        "operator": (operator_port, {"namespace": "llmroute-system", "pod": "llmroute-operator-0"}),
    }, honor_labels=frozenset({"operator"}))
    emulators = Emulators()
    operator_metrics.start_metrics_server("127.0.0.1", operator_port)
    feeding = Operator(threading.Event(), emulators.held)
    feeder = threading.Thread(target=feeding.run, name="operator-metrics", daemon=True)
    feeder.start()
    config_dir = folder / "config"
    config_dir.mkdir()
    for name, doc in config_docs(emulators).items():
        (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    endpoints = folder / "pool-endpoints.json"  # spare-pool has no pods
    endpoints.write_text(json.dumps({pools.key(GPU_POOL, NAMESPACE): [emulators.vllm.base_url]}))
    router = Router(config_dir, router_port, {ENDPOINTS_FILE_ENV: str(endpoints), DEMAND_URL_ENV: emulators.demand_url})
    try:
        prometheus.wait_for('up{job="router"} == 1 and on() up{job="operator"} == 1')
        drive(router, emulators)
        feeding.stop.set()  # the operator's values stay as they were; other tests may count reconciles of their own
        time.sleep(2.5)  # two more scrapes and rule evaluations after the last request
        yield Live(prometheus, router, emulators)
    finally:
        feeding.stop.set()
        router.stop()
        prometheus.stop()
        emulators.close()


def dashboard_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc
