"""ModelPools in the real operator against the emulated API server, with fake vLLM pods on loopback addresses (each
pod object's ``podIP`` is a 127.0.0.x address where a small server renders vLLM's ``/metrics``; kmock has no
Deployment controller, so the tests create and remove pods themselves):

* the objects the operator writes, valid for Kubernetes 1.30 and 1.35, owned by the pool; an invalid spec applies
  nothing and says which field; deletion removes everything; every request is in the ClusterRole;
* scale up on queue, a pod whose metrics do not answer counts as not ready, step down one replica per delay;
* a router's demand at zero starts a replica at once (the scaler's interval is far longer), idle goes back to zero,
  and the endpoint refuses what is not a report;
* a provider in ``prewarm.whenDown`` going Down in the prober prewarms the pool; back after ``holdAfterRecovery``;
* a restarted operator does not step a pool down before a whole delay has passed since the restart;

with status fields, ``Scaled`` Events and metrics along the way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
from aiohttp import web

from llmroute.controller.metrics import REGISTRY
from llmroute.controller.rbac import allows, cluster_role
from llmroute.core.pool_manifests import selector_labels
from llmroute.emulator import Emulator
from tests.conftest import example_doc
from tests.loopback import free_port
from tests.operator.conftest import Cluster, StartOperator, eventually, secret_doc, secret_values, stop
from tests.operator.helpers import GV, condition, events
from tests.operator.test_rbac import rbac_verb

pytestmark = pytest.mark.operator

NS = "llm-serving"
POOL = "deepseek-v3"
MODEL = "deepseek-ai/DeepSeek-V3"
POLICY = "deepseek-residency"
FAST = {"interval": "100ms", "targetWaitingPerReplica": 2, "scaleDownDelay": "300ms", "idleToZero": "1s"}


def pool_doc(**spec: Any) -> dict[str, Any]:
    """The example pool (8 GPUs, a cache PVC, prewarm when deepseek is Down) with ``spec`` fields replaced
    (None removes one)."""
    doc = example_doc("pool")
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


def exposition(waiting: float, running: float, kv: float) -> str:
    labels = f'engine="0",model_name="{MODEL}"'
    return "".join(f"# TYPE vllm:{name} gauge\nvllm:{name}{{{labels}}} {value}\n" for name, value in (
        ("num_requests_running", running), ("num_requests_waiting", waiting), ("kv_cache_usage_perc", kv)))


class FakePods:
    """The pool's pods: Pod objects in the emulator, and vLLM ``/metrics`` served on each pod's own address."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.port = cluster, free_port()
        self.loads: dict[str, tuple[float, float, float]] = {}
        self.runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        ip = request.transport.get_extra_info("sockname")[0] if request.transport else ""
        return web.Response(text=exposition(*self.loads[ip]), content_type="text/plain")

    async def add(self, index: int, waiting: float = 0, running: float = 0, kv: float = 0.0,
                  serve: bool = True) -> str:
        """A Running, Ready pod at 127.0.0.<index + 10>; ``serve=False``: nothing answers on its address."""
        ip = f"127.0.0.{index + 10}"
        if serve:
            if self.runner is None:
                app = web.Application()
                app.router.add_get("/metrics", self._metrics)
                self.runner = web.AppRunner(app, access_log=None)
                await self.runner.setup()
            self.loads[ip] = (waiting, running, kv)
            await web.TCPSite(self.runner, ip, self.port).start()
        name = f"{POOL}-{index}"
        await self.cluster.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": selector_labels(POOL)},
            "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.19.0"}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
        }, "pods")
        return ip

    def set(self, ip: str, waiting: float = 0, running: float = 0, kv: float = 0.0) -> None:
        self.loads[ip] = (waiting, running, kv)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture()
async def pods(cluster: Cluster) -> AsyncIterator[FakePods]:
    fake = FakePods(cluster)
    yield fake
    await fake.close()


async def start(start_operator: StartOperator, pods: FakePods, **overrides: Any) -> int:
    """Start the operator with its pool metrics pointed at the fake pods and a demand port; returns that port."""
    port = free_port()
    await start_operator(pool_metrics_port=pods.port, demand_port=port, **overrides)
    return port


async def pool(cluster: Cluster) -> dict[str, Any]:
    return (await cluster.get(GV, "modelpools", NS, POOL)) or {}


async def replicas(cluster: Cluster) -> int | None:
    dep = await cluster.get("apps/v1", "deployments", NS, POOL)
    return None if dep is None else int(dep["spec"]["replicas"])


async def at(cluster: Cluster, n: int, within: float = 5.0) -> dict[str, Any]:
    """Wait for the Deployment at ``n`` replicas and the status saying so; returns the status."""
    async def check() -> dict[str, Any] | None:
        status = (await pool(cluster)).get("status") or {}
        decided = status.get("reason") is not None and status.get("desiredReplicas") == n  # the scaler wrote it
        return status if decided and await replicas(cluster) == n else None
    result: dict[str, Any] = await eventually(check, within=within, what=f"the pool at {n} replicas")
    return result


async def scaled_events(cluster: Cluster) -> list[dict[str, Any]]:
    return [e for e in await events(cluster, POOL) if e["reason"] == "Scaled"]


def sample(name: str, **labels: str) -> float | None:
    value: float | None = REGISTRY.get_sample_value(name, labels)
    return value


async def test_objects_shape_invalid_spec_and_cleanup(cluster: Cluster, start_operator: StartOperator,
                                                      pods: FakePods) -> None:
    await start(start_operator, pods)
    await cluster.create(pool_doc(engineArgs=["--port=9000"]), "modelpools")
    accepted = await eventually(lambda: _accepted(cluster, "False"), what="Accepted=False")
    assert accepted["reason"] == "InvalidSpec" and "spec.engineArgs[0]" in accepted["message"]
    warning = await eventually(lambda: _event(cluster, "InvalidSpec"), what="InvalidSpec Event")
    assert warning["type"] == "Warning" and "--port" in warning["message"]
    assert await replicas(cluster) is None  # nothing applied

    await cluster.patch(GV, "modelpools", NS, POOL, {"spec": {"engineArgs": ["--max-model-len=32768"]}})
    await eventually(lambda: _accepted(cluster, "True"), what="Accepted=True")
    status = await at(cluster, 0)  # min 0, nobody asking, deepseek not Down (no prober): nothing runs
    assert (status["reason"], status["replicas"], status["readyReplicas"]) == ("Steady", 0, 0)
    assert condition(status, "Ready")["reason"] == "ScaledToZero"
    uid = (await pool(cluster))["metadata"]["uid"]
    written = [await cluster.get("apps/v1", "deployments", NS, POOL), await cluster.get("v1", "services", NS, POOL),
               await cluster.get("v1", "services", NS, f"{POOL}-pods"),
               await cluster.get("v1", "persistentvolumeclaims", NS, f"{POOL}-model-cache")]
    for obj in written:
        assert obj is not None
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
        assert obj["metadata"]["labels"]["llmroute.io/pool"] == POOL
        for version in ("1.30", "1.35"):
            kubernetes_validate.validate(obj, version, strict=True)
    container = written[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["--model", MODEL] and "--max-model-len=32768" in container["args"]
    assert written[2]["spec"]["clusterIP"] == "None"

    await cluster.delete(GV, "modelpools", NS, POOL)
    await eventually(lambda: _all_gone(cluster), what="the pool and its objects deleted")
    role = cluster_role()
    seen = {(r.resource.group, r.resource.plural + (f"/{r.subresource}" if r.subresource else ""), rbac_verb(r))
            for r in cluster.operator_requests() if r.resource is not None and r.resource.plural is not None}
    assert not [s for s in seen if not allows(role, *s)]
    assert ("", "persistentvolumeclaims", "delete") in seen and ("llmroute.io", "modelpools/status", "patch") in seen


async def _accepted(cluster: Cluster, status: str) -> dict[str, Any] | None:
    cond = condition((await pool(cluster)).get("status") or {}, "Accepted")
    return cond if cond.get("status") == status else None


async def _event(cluster: Cluster, reason: str) -> dict[str, Any] | None:
    return next((e for e in await events(cluster, POOL) if e["reason"] == reason), None)


async def _all_gone(cluster: Cluster) -> bool:
    return all([not await pool(cluster), await replicas(cluster) is None,
                await cluster.get("v1", "services", NS, POOL) is None,
                await cluster.get("v1", "persistentvolumeclaims", NS, f"{POOL}-model-cache") is None])


async def test_scales_up_on_queue_then_steps_down_one_replica_per_delay(
        cluster: Cluster, start_operator: StartOperator, pods: FakePods) -> None:
    await start(start_operator, pods)
    busy = await pods.add(0, waiting=5, running=4, kv=0.3)
    await pods.add(1, serve=False)  # Ready in Kubernetes, but its /metrics does not answer
    await cluster.create(pool_doc(replicas={"min": 1, "max": 3}, scaling=FAST, prewarm=None), "modelpools")
    status = await at(cluster, 3)  # 5 waiting, target 2 per replica
    assert (status["reason"], status["replicas"], status["readyReplicas"]) == ("Load", 2, 1)
    assert status["lastScaleTime"] and "5 waiting" in status["message"]
    ready = condition(status, "Ready")
    assert ready["status"] == "True" and "/metrics of 1 Ready pod" in ready["message"]
    (up,) = await eventually(lambda: scaled_events(cluster), what="a Scaled Event")
    assert up["type"] == "Normal" and up["message"].startswith("scaled from 1 to 3 replicas: load: 5 waiting")
    assert sample("llmroute_pool_desired_replicas", namespace=NS, pool=POOL) == 3
    assert sample("llmroute_pool_scales_total", namespace=NS, pool=POOL, reason="Load") == 1
    assert (sample("llmroute_pool_scrape_failures_total", namespace=NS, pool=POOL) or 0) >= 1

    pods.set(busy)  # the queue drains: one step down per scaleDownDelay, never below min
    started = time.monotonic()
    await at(cluster, 2)
    await at(cluster, 1)
    assert time.monotonic() - started >= 2 * 0.3
    assert [e["message"].split(":")[0] for e in await scaled_events(cluster)] == [
        "scaled from 1 to 3 replicas", "scaled from 3 to 2 replicas", "scaled from 2 to 1 replicas"]
    assert sample("llmroute_pool_scales_total", namespace=NS, pool=POOL, reason="Load") == 3


async def test_demand_at_zero_starts_a_replica_at_once_and_idle_goes_back_to_zero(
        cluster: Cluster, start_operator: StartOperator, pods: FakePods) -> None:
    port = await start(start_operator, pods)
    url = f"http://127.0.0.1:{port}/v1/demand"
    slow = {**FAST, "interval": "30s"}  # only a wake-up can make it in time
    await cluster.create(pool_doc(replicas={"min": 0, "max": 2}, scaling=slow, prewarm=None), "modelpools")
    await at(cluster, 0)
    async with aiohttp.ClientSession() as http:
        async def post(body: Any) -> tuple[int, Any]:
            data = body if isinstance(body, bytes) else None
            async with http.post(url, data=data, json=None if data else body) as resp:
                return resp.status, await resp.json() if resp.status != 204 else None

        status_code, error = await post({"router": "apps/chat/r-1", "pools": {POOL: 1}})
        assert status_code == 400 and "<namespace>/<pool>" in error["error"]["message"]
        assert (await post(b"{" + b" " * 70_000))[0] == 413
        assert (await post({"router": "apps/chat/r-1", "pools": {"other/pool": 3}}))[0] == 204  # ignored

        started = time.monotonic()
        assert (await post({"router": "apps/chat/r-1", "pools": {f"{NS}/{POOL}": 2}}))[0] == 204
        await at(cluster, 1, within=2.0)
        assert time.monotonic() - started < 2.0
        # what the scale-up said (the status may already hold the next decision: the Deployment's change wakes the
        # scaler, which then finds 1 replica starting for the 2 held requests, "Steady at 1")
        (up,) = await eventually(lambda: scaled_events(cluster), what="a Scaled Event")
        assert up["message"] == "scaled from 0 to 1 replicas: demand: 2 requests held at routers while at 0 -> 1"
        assert sample("llmroute_pool_scales_total", namespace=NS, pool=POOL, reason="Demand") == 1
        status = (await pool(cluster))["status"]
        assert status["reason"] in ("Demand", "Steady") and "2 " in status["message"]
        assert "held at routers" in status["message"]
        assert sample("llmroute_pool_demand_requests", namespace=NS, pool=POOL) == 2

        await cluster.patch(GV, "modelpools", NS, POOL, {"spec": {"scaling": FAST}})  # short interval from now on
        await pods.add(0)  # the replica is up, and idle
        await post({"router": "apps/chat/r-1", "pools": {f"{NS}/{POOL}": 0}})  # done
    status = await at(cluster, 0, within=6.0)
    assert status["reason"] == "Idle"
    assert [e["message"].split(":")[0] for e in await scaled_events(cluster)] == [
        "scaled from 0 to 1 replicas", "scaled from 1 to 0 replicas"]
    assert (sample("llmroute_operator_demand_reports_total", result="rejected") or 0) >= 2


async def test_prewarm_when_a_watched_provider_is_down_and_hold_after_recovery(
        cluster: Cluster, start_operator: StartOperator, pods: FakePods) -> None:
    keys = secret_values()
    async with contextlib.AsyncExitStack() as stack:
        hosted = {}
        policy = example_doc("policy")
        for p in policy["spec"]["providers"]:
            if "endpoint" in p:
                hosted[p["name"]] = emulator = await stack.enter_async_context(Emulator(p["name"],
                                                                                      api_key=keys.get(p["name"])))
                p["endpoint"] = emulator.url
                p["healthCheck"] = {"path": "/models", "interval": "100ms", "timeout": "1s", "failureThreshold": 3,
                                    "successThreshold": 2}
        await cluster.create(secret_doc(), "secrets")
        await cluster.create(policy, "providerpolicies")
        await start(start_operator, pods, probe_providers=True)
        prewarm = {"whenDown": [{"policy": POLICY, "provider": "deepseek"}], "replicas": 2,
                   "holdAfterRecovery": "1s"}
        await cluster.create(pool_doc(replicas={"min": 1, "max": 3}, scaling=FAST, prewarm=prewarm), "modelpools")
        await at(cluster, 1)
        cold = await eventually(lambda: _provider(cluster, "vllm", "Cold"), what="the pool provider Cold")
        assert cold["reason"] == f"ModelPool {NS}/{POOL}: no ready replica"
        await pods.add(0)
        vllm = await eventually(lambda: _provider(cluster, "vllm", "Healthy"), what="the pool provider Healthy")
        assert vllm["reason"] == f"ModelPool {NS}/{POOL}: 1 ready"

        await hosted["deepseek"].stop_listening()
        status = await at(cluster, 2)
        assert status["reason"] == "Prewarm" and f"{POLICY}/deepseek is Down" in status["message"]
        (event,) = await scaled_events(cluster)
        assert event["message"] == f"scaled from 1 to 2 replicas: prewarm: {POLICY}/deepseek is Down (>= 2 replicas)"

        await hosted["deepseek"].start_listening()
        await eventually(lambda: _provider(cluster, "deepseek", "Healthy"), what="deepseek Healthy again")
        recovered = time.monotonic()
        status = await eventually(lambda: _reason(cluster, "PrewarmHold"), what="the prewarm hold")
        assert status["desiredReplicas"] == 2 and "healthy for" in status["message"]
        await at(cluster, 1)  # back to replicas.min once the hold and a scale-down delay have passed
        assert time.monotonic() - recovered >= 1.0
        assert sample("llmroute_pool_scales_total", namespace=NS, pool=POOL, reason="Prewarm") == 1


async def _provider(cluster: Cluster, name: str, state: str | None = None) -> dict[str, Any] | None:
    policy = (await cluster.get(GV, "providerpolicies", None, POLICY)) or {}
    found = next((p for p in (policy.get("status") or {}).get("providers", []) if p["name"] == name), None)
    return found if found is not None and (state is None or found["state"] == state) else None


async def _reason(cluster: Cluster, reason: str) -> dict[str, Any] | None:
    status = (await pool(cluster)).get("status") or {}
    return status if status.get("reason") == reason else None


async def test_a_restart_does_not_step_a_pool_down_early(cluster: Cluster, start_operator: StartOperator,
                                                         pods: FakePods) -> None:
    first = await start_operator(pool_metrics_port=pods.port)
    busy = await pods.add(0, waiting=6)
    scaling = {**FAST, "scaleDownDelay": "1s"}
    await cluster.create(pool_doc(replicas={"min": 1, "max": 3}, scaling=scaling, prewarm=None), "modelpools")
    before = await at(cluster, 3)
    await stop(first)
    pods.set(busy)  # the load is gone while no operator runs

    await start_operator(pool_metrics_port=pods.port)
    restarted = time.monotonic()
    await eventually(lambda: _reason(cluster, "Steady"), what="the new operator's first decision")
    assert await replicas(cluster) == 3  # the size came from the Deployment, not from an empty memory
    await at(cluster, 2)
    assert time.monotonic() - restarted >= 1.0  # a whole scaleDownDelay after the restart
    after = (await pool(cluster))["status"]
    assert after["lastScaleTime"] >= before["lastScaleTime"]
    assert len(await scaled_events(cluster)) == 2  # 1 -> 3 before the restart, 3 -> 2 after it
