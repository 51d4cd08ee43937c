"""Operator scale benchmark: 1,000 LLMRoutes over 10 ProviderPolicies on the emulated Kubernetes API. Run on demand:

    python tests/benchmarks/bench_operator.py [--routes 1000] [--policies 10]

The Kubernetes API is kmock's emulator with the realistic subclass of the operator tests
(:class:`tests.operator.conftest.Emulator`), served in this process on loopback; the five providers are provider
emulators (so the shared prober probes something real). The operator is the real ``llmroute operator`` in its own
process, pointed at the emulator by a kubeconfig, exactly as in a cluster but without the network.

Measures:

* **reconcile-all**: from the first create (secret, policies, then the routes, 32 at a time) until every route has
  ``Accepted=True`` and a ``configHash`` in its status (the ConfigMap, Deployment, Service, PDB and key Secret
  are written before that status) - target <= 60 s on 2 cores;
* **operator RSS**: the operator process's peak resident set (``VmHWM`` from ``/proc``) - target <= 200 MB;
* **policy edit -> ConfigMaps**: from a patch of one policy (its ``together`` provider stops stating its training
  terms) until every dependent route's ConfigMap holds the new config;
* CPU seconds of the operator and of this process (the API emulator), requests the operator sent, and the
  operator's own reconcile metrics from ``/metrics``.

Writes ``tests/benchmarks/results/operator.{json,md}``. Takes about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import kmock
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from llmroute.emulator import Emulator as Provider  # noqa: E402
from tests.conftest import example_doc  # noqa: E402
from tests.loopback import free_port  # noqa: E402
from tests.operator.conftest import Cluster, Emulator, secret_doc, secret_values  # noqa: E402

RESULTS = HERE / "results"
GV = "llmroute.io/v1alpha1"
PROVIDERS = ("deepseek", "together", "fireworks", "bedrock", "vllm")
CREATE_CONCURRENCY = 32


@attrs.define(kw_only=True)
class FastEmulator(Emulator):
    """The tests' emulator minus kmock's request history: kmock matches every request against its reactions by
    scanning all past requests (O(n) per request, so O(n^2) over a run: minutes for this benchmark). Only the
    current request is kept; the requests are counted by User-Agent instead."""

    counts: collections.Counter[str] = attrs.field(factory=collections.Counter)
    operator_kinds: collections.Counter[str] = attrs.field(factory=collections.Counter)

    async def _handle(self, request: Any) -> Any:
        agent = request.headers.get("User-Agent", "").split("/")[0]
        self.counts[agent] += 1
        if agent in ("llmroute-operator", "kopf") and request.resource is not None:
            method = str(getattr(request.method, "value", request.method)).upper()
            sub = f"/{request.subresource}" if request.subresource else ""
            self.operator_kinds[f"{agent} {method} {request.resource.plural}{sub}"] += 1
        del self._requests[:-1]
        return await super()._handle(request)

    def operator_requests(self) -> int:
        return self.counts["llmroute-operator"] + self.counts["kopf"]


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM/VmRSS in kB from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def policy_doc(i: int, providers: dict[str, Provider]) -> dict[str, Any]:
    doc = example_doc("policy")
    doc["metadata"]["name"] = f"policy-{i}"
    for p in doc["spec"]["providers"]:
        p["endpoint"] = providers[p["name"]].url
    return doc


def route_doc(j: int, policies: int) -> dict[str, Any]:
    doc = example_doc("route")
    doc["metadata"] = {"name": f"route-{j}", "namespace": f"team-{j % 25}"}
    doc["spec"]["policyRef"]["name"] = f"policy-{j % policies}"
    return doc


def stored(k8s: FastEmulator, plural: str) -> list[dict[str, Any]]:
    """Objects straight from the emulator's memory (a LIST over HTTP would cost the emulator more than the
    operator's own traffic: 1,000 routes are 5 MB of JSON)."""
    out = []
    for key in list(k8s.objects):
        if key[0].plural == plural:
            obj = k8s.objects[key]
            if not obj.deleted:
                out.append(obj.raw)
    return out


def configs(k8s: FastEmulator) -> dict[str, str]:
    return {cm["metadata"]["name"].removesuffix("-router-config"): cm["data"]["config.json"]
            for cm in stored(k8s, "configmaps") if cm["metadata"]["name"].endswith("-router-config")}


def reconciled(route: dict[str, Any]) -> bool:
    status = route.get("status") or {}
    accepted = next((c for c in status.get("conditions", []) if c["type"] == "Accepted"), {})
    return accepted.get("status") == "True" and bool(status.get("configHash"))


async def wait_http(url: str, proc: asyncio.subprocess.Process, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError("the operator exited")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {within}s")


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    wanted = ("llmroute_operator_reconciles_total", "llmroute_operator_reconcile_duration_seconds_sum",
              "llmroute_operator_reconcile_duration_seconds_count")
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(wanted) and not line.endswith(" 0.0")}


async def run(routes: int, policies: int) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        k8s = await stack.enter_async_context(FastEmulator())
        server = await stack.enter_async_context(kmock.Server(k8s))
        k8s.resources.load_bundled()
        session = await stack.enter_async_context(aiohttp.ClientSession())
        cluster = Cluster(k8s, session)
        cluster.url = str(server.url).rstrip("/")
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            await cluster.create(yaml.safe_load(path.read_text()), "customresourcedefinitions")
        keys = secret_values()
        providers = {n: await stack.enter_async_context(Provider(n, api_key=keys.get(n))) for n in PROVIDERS}

        workdir = Path(stack.enter_context(_tempdir()))
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": cluster.url}}],
            "users": [{"name": "bench", "user": {"token": "x"}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}))
        metrics_port, health_port = free_port(), free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "LLMROUTE_METRICS_PORT": str(metrics_port),
               "LLMROUTE_HEALTH_PORT": str(health_port), "PYTHONPATH": str(ROOT / "operator")}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log = (workdir / "operator.log").open("wb")
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "llmroute", "operator", "--log-level",
                                                    "warning", env=env, stdout=log, stderr=log)
        try:
            await wait_http(f"http://127.0.0.1:{health_port}/healthz", proc)
            print("operator up", file=sys.stderr, flush=True)
            return await measure(k8s, cluster, proc, providers, routes, policies, metrics_port)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 60)
            log.close()
            tail = (workdir / "operator.log").read_text(errors="replace").splitlines()[-20:]
            if os.environ.get("BENCH_VERBOSE") or any("ERROR" in line or "Traceback" in line for line in tail):
                print("\n".join(tail), file=sys.stderr)


@contextlib.contextmanager
def _tempdir() -> Any:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-operator-") as d:
        yield d


async def measure(k8s: FastEmulator, cluster: Cluster, proc: asyncio.subprocess.Process,
                  providers: dict[str, Provider], routes: int, policies: int, metrics_port: int) -> dict[str, Any]:
    pid = proc.pid
    rss_idle = proc_status(pid)
    cpu0, me0 = cpu_seconds(pid), resource.getrusage(resource.RUSAGE_SELF)
    requests0 = k8s.operator_requests()

    started = time.monotonic()
    await cluster.create(secret_doc(), "secrets")
    for i in range(policies):
        await cluster.create(policy_doc(i, providers), "providerpolicies")
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(j: int) -> None:
        async with gate:
            await cluster.create(route_doc(j, policies), "llmroutes")

    await asyncio.gather(*(create(j) for j in range(routes)))
    created = time.monotonic() - started
    print(f"created {routes} routes in {created:.1f}s", file=sys.stderr, flush=True)
    progress = []
    while True:
        done = sum(reconciled(r) for r in stored(k8s, "llmroutes"))
        progress.append((round(time.monotonic() - started, 1), done))
        print(f"  {progress[-1][0]:6.1f}s  {done}/{routes} reconciled", file=sys.stderr, flush=True)
        if done == routes or time.monotonic() - started > 600:
            break
        await asyncio.sleep(1.0)
    reconcile_all = time.monotonic() - started
    cpu1, me1 = cpu_seconds(pid), resource.getrusage(resource.RUSAGE_SELF)
    requests1 = k8s.operator_requests()
    by_kind = dict(k8s.operator_kinds.most_common())
    rss_after = proc_status(pid)

    # One policy edit: every dependent route's ConfigMap must change.
    dependents = {f"route-{j}" for j in range(routes) if j % policies == 0}
    before = configs(k8s)
    providers_spec = copy.deepcopy(policy_doc(0, providers)["spec"]["providers"])
    for p in providers_spec:
        if p["name"] == "together":
            p["dataUse"]["training"] = "Unknown"
    edited = time.monotonic()
    await cluster.patch(GV, "providerpolicies", None, "policy-0", {"spec": {"providers": providers_spec}})
    while True:
        now = configs(k8s)
        changed = {n for n in dependents if now.get(n) != before.get(n)}
        if changed == dependents or time.monotonic() - edited > 300:
            break
        await asyncio.sleep(0.25)
    fan_out = time.monotonic() - edited
    untouched = all(now.get(n) == before.get(n) for n in before if n not in dependents)
    rss_end = proc_status(pid)
    metrics = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    return {
        "routes": routes, "policies": policies, "cores": os.cpu_count(), "python": sys.version.split()[0],
        "created_s": round(created, 2),
        "reconcile_all_s": round(reconcile_all, 2), "reconciled": progress[-1][1], "progress": progress,
        "policy_edit_to_configmaps_s": round(fan_out, 2), "dependents": len(dependents),
        "dependents_updated": len(changed), "others_untouched": untouched,
        "operator_rss_idle_mb": round(rss_idle["VmRSS"] / 1024, 1),
        "operator_rss_after_reconcile_mb": round(rss_after["VmRSS"] / 1024, 1),
        "operator_peak_rss_mb": round(rss_end["VmHWM"] / 1024, 1),
        "operator_cpu_s_reconcile_all": round(cpu1 - cpu0, 1),
        "api_emulator_cpu_s_reconcile_all": round((me1.ru_utime + me1.ru_stime) - (me0.ru_utime + me0.ru_stime), 1),
        "operator_requests_reconcile_all": requests1 - requests0,
        "operator_requests_per_route": round((requests1 - requests0) / routes, 2),
        "operator_requests_by_kind": by_kind,
        "operator_metrics": metrics,
    }


def markdown(r: dict[str, Any]) -> str:
    ok = {True: "met", False: "MISSED"}
    return "\n".join([
        f"# Operator benchmark: {r['routes']} LLMRoutes over {r['policies']} ProviderPolicies",
        "",
        f"{r['cores']} cores, Python {r['python']}; API: kmock emulator in the benchmark process (loopback); "
        "operator: `llmroute operator` in its own process; providers: 5 provider emulators, probed.",
        "",
        "| Measure | Result | Target |",
        "|---|---|---|",
        f"| Time until every route is reconciled | {r['reconcile_all_s']} s ({r['reconciled']}/{r['routes']}) | "
        f"<= 60 s ({ok[r['reconcile_all_s'] <= 60]}) |",
        f"| Operator peak RSS (VmHWM) | {r['operator_peak_rss_mb']} MB (idle {r['operator_rss_idle_mb']} MB) | "
        f"<= 200 MB ({ok[r['operator_peak_rss_mb'] <= 200]}) |",
        f"| Policy edit -> every dependent ConfigMap updated | {r['policy_edit_to_configmaps_s']} s "
        f"({r['dependents_updated']}/{r['dependents']} routes; others untouched: {r['others_untouched']}) | - |",
        f"| Operator CPU during reconcile-all | {r['operator_cpu_s_reconcile_all']} s | - |",
        f"| API emulator CPU during reconcile-all | {r['api_emulator_cpu_s_reconcile_all']} s | - |",
        f"| Requests the operator sent during reconcile-all | {r['operator_requests_reconcile_all']} "
        f"({r['operator_requests_per_route']} per route) | - |",
        f"| Creating the objects (the test's own requests) | {r['created_s']} s | - |",
        "",
        f"The API emulator is single-threaded Python (kmock) and used {r['api_emulator_cpu_s_reconcile_all']} s of CPU "
        f"in the {r['reconcile_all_s']} s it took to reconcile everything (about "
        f"{1000 * r['api_emulator_cpu_s_reconcile_all'] / max(1, r['operator_requests_reconcile_all']):.1f} ms per "
        "request), against the operator's "
        f"{r['operator_cpu_s_reconcile_all']} s: above a few hundred routes the run measures the emulator's "
        "throughput. Owned objects are read from the operator's watch cache, so resyncs (60 s after creation, "
        "jittered) send no request.",
        "",
        "Requests by sender, verb and resource, from operator start to the end of reconcile-all:",
        "",
        "| Request | Count |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in r["operator_requests_by_kind"].items()],
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=10)
    args = parser.parse_args()
    result = asyncio.run(run(args.routes, args.policies))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "operator.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "operator.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
