"""Two real ``llmroute operator`` processes electing one active replica through a Lease on the API emulator.

* Takeover: the active replica is SIGKILLed in the middle of a batch of route changes; the standby takes the Lease
  over within 15 s, every route ends reconciled, nothing is created twice, each router Deployment's pod template
  changes once (no extra rollout) and the takeover is announced by one Event. The takeover time is printed.
* Both replicas up for a while: only one probes and writes; no object is written twice; the standby answers the
  demand endpoint with 503 (routers retry on a new connection) and ``/healthz`` with its role; a replica whose Lease is
  taken away exits at once.

The emulator (:class:`LeaseEmulator`) adds what leader election needs from an API server and kmock 0.8 lacks: ``PUT``
on a named object, conditional on ``metadata.resourceVersion`` (409 Conflict when stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import pytest
from kmock._internal import enums

from llmroute.controller.leader import API_VERSION, EVENT_REASON, Timing
from llmroute.controller.rbac import allows, lease_role
from llmroute.controller.run import EXIT_LOST_LEASE
from llmroute.emulator import Emulator as ProviderEmulator
from tests.conftest import example_doc
from tests.operator.conftest import Cluster, Emulator, eventually, secret_doc, verb
from tests.operator.helpers import GV, NS, deployment, pod_hash
from tests.operator.test_pools import FAST as FAST_SCALING
from tests.operator.test_pools import NS as POOL_NS
from tests.operator.test_pools import POOL, at, pool_doc
from tests.operator.test_prober import emulated_policy, policy_status, providers  # noqa: F401  (the fixture)
from tests.operator.test_run import free_port, kubeconfig

pytestmark = pytest.mark.operator

LEASE_NS = "llmroute-system"
LEASE = "llmroute-operator"
ROUTES = [f"r{i}" for i in range(6)]
TAKEOVER_BUDGET_S = 15.0


@attrs.define(kw_only=True)
class LeaseEmulator(Emulator):
    """The suite's emulator plus conditional ``PUT`` (replace) of a named object, as leader election uses it."""

    _put_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    async def _handle(self, request: Any) -> Any:
        if verb(request) != "PUT" or request.resource is None or not request.name or not isinstance(request.data, dict):
            return await super()._handle(request)
        async with self._put_lock:  # compare and write as one step
            key = (request.resource, request.namespace, request.name)
            stored = self._objects[key] if key in self._objects else None  # noqa: SIM401 (no .get)
            if stored is None or stored.deleted:
                return _status(404, "NotFound")
            sent = (request.data.get("metadata") or {}).get("resourceVersion")
            if sent and sent != (stored.raw.get("metadata") or {}).get("resourceVersion"):
                return _status(409, "Conflict")
            object.__setattr__(request, "action", enums.action.UPDATE)  # kmock maps only PATCH to UPDATE
            return await super()._handle(request)


def _status(code: int, reason: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response(
        {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason}, status=code
    )


@pytest.fixture()
def kmock_options() -> dict[str, Any]:
    return {"cls": LeaseEmulator}


@dataclass
class Replica:
    name: str
    proc: asyncio.subprocess.Process
    log: Path
    health: int
    demand: int
    metrics: int

    async def healthz(self) -> dict[str, Any] | None:
        with contextlib.suppress(aiohttp.ClientError):
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.health}/healthz") as resp:
                return dict(await resp.json()) if resp.status == 200 else None
        return None

    async def leader_gauge(self) -> str | None:
        """The ``llmroute_operator_leader`` sample this replica exports."""
        with contextlib.suppress(aiohttp.ClientError):
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.metrics}/metrics") as resp:
                return next(
                    (ln for ln in (await resp.text()).splitlines() if ln.startswith("llmroute_operator_leader ")), None
                )
        return None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture()
async def replicas(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Replica] = []

    async def start(name: str, probe: bool = False) -> Replica:
        health, demand, metrics = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", cluster.url)),
            "LLMROUTE_LEADER_ELECTION": "true",
            "POD_NAME": name,
            "POD_NAMESPACE": LEASE_NS,
            "LLMROUTE_LEASE_NAME": LEASE,
            "LLMROUTE_HEALTH_PORT": str(health),
            "LLMROUTE_DEMAND_PORT": str(demand),
            "LLMROUTE_METRICS_PORT": str(metrics),
            "LLMROUTE_PROBE_PROVIDERS": str(probe).lower(),
            "LLMROUTE_ROUTER_IMAGE": "registry.example/llmroute:ha",
        }
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "llmroute",
                "operator",
                "--log-level",
                "info",
                env=env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        replica = Replica(name, proc, log, health, demand, metrics)
        started.append(replica)
        await eventually(replica.healthz, within=30, what=f"{name} serving /healthz")
        return replica

    try:
        yield start
    finally:
        for r in started:  # (a killed one may not be reaped yet: ProcessLookupError)
            with contextlib.suppress(ProcessLookupError):
                r.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(r.proc.wait(), 20)
            with contextlib.suppress(ProcessLookupError):
                r.proc.kill()
            await r.proc.wait()


async def _status_names(cluster: Cluster, replica: str) -> bool:
    """Whether the ProviderPolicy's status says ``replica`` is the active operator."""
    return (await policy_status(cluster)).get("activeOperator") == replica


async def holder(cluster: Cluster) -> str:
    lease = await cluster.get(API_VERSION, "leases", LEASE_NS, LEASE)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def route_doc(name: str) -> dict[str, Any]:
    doc = example_doc("route")
    doc["metadata"]["name"] = name
    return doc


def probed_policy(emulators: dict[str, ProviderEmulator]) -> dict[str, Any]:
    """The example policy on the provider emulators, probed every second with a timeout long enough that a probe on
    this busy machine does not fail (a Down provider would post Events the tests count)."""
    doc = emulated_policy(emulators, interval="1s")
    for provider in doc["spec"]["providers"]:
        if "healthCheck" in provider:
            provider["healthCheck"]["timeout"] = "5s"
    return doc


async def deploy(cluster: Cluster, policy: dict[str, Any] | None = None) -> None:
    await cluster.create(secret_doc(), "secrets")
    await cluster.create(policy or example_doc("policy"), "providerpolicies")
    for name in ROUTES:
        await cluster.create(route_doc(name), "llmroutes")


async def all_reconciled(cluster: Cluster, hashes: dict[str, str] | None = None) -> dict[str, str] | None:
    """Each route's router pod-template hash once every route is reconciled (and, given ``hashes``, changed).
    Two LISTs per look, to keep the polling light on the emulator the operators share."""
    routes = {r["metadata"]["name"]: r for r in await cluster.list(GV, "llmroutes")}
    found = {
        d["metadata"]["name"].removesuffix("-router"): pod_hash(d) for d in await cluster.list("apps/v1", "deployments")
    }
    for name in ROUTES:
        status = routes.get(name, {}).get("status") or {}
        if not found.get(name) or status.get("observedGeneration") != routes[name]["metadata"].get("generation"):
            return None
        if hashes is not None and found[name] == hashes[name]:
            return None
    return {name: str(found[name]) for name in ROUTES}


def operator_writes(cluster: Cluster, since: int = 0) -> list[Any]:
    return [
        r
        for r in list(cluster.emulator)[since:]
        if r.headers.get("User-Agent") != "llmroute-tests"
        and verb(r) in ("POST", "PUT", "PATCH", "DELETE")
        and r.resource is not None
    ]


def per_object(requests: list[Any]) -> Counter[tuple[str, str, str, str]]:
    return Counter(
        (verb(r), r.resource.plural, r.namespace or "", r.name or (r.data or {}).get("metadata", {}).get("name", ""))
        for r in requests
    )


def assert_lease_rbac(cluster: Cluster) -> None:
    role = lease_role(LEASE)
    seen = {
        (verb(r), r.name)
        for r in cluster.emulator
        if r.resource is not None and r.resource.plural == "leases" and r.headers.get("User-Agent") != "llmroute-tests"
    }
    rbac = {"GET": "get", "PUT": "update", "POST": "create"}
    assert seen and all(allows(role, "coordination.k8s.io", "leases", rbac.get(m, m), name) for m, name in seen), seen


async def test_standby_takes_over_within_15s_of_sigkill_mid_batch(
    cluster: Cluster,
    replicas: Any,
    providers: dict[str, ProviderEmulator],  # noqa: F811
) -> None:
    await deploy(cluster, probed_policy(providers))
    # a pool at zero whose scaler only a wake-up (a router's demand) can move in time
    slow = {**FAST_SCALING, "interval": "30s"}
    await cluster.create(pool_doc(replicas={"min": 0, "max": 2}, scaling=slow, prewarm=None), "modelpools")
    a, b = await elected(cluster, replicas, probe=True)
    before = await eventually(lambda: all_reconciled(cluster), within=30, what="every route reconciled")
    await at(cluster, 0, within=10)
    assert (await b.healthz() or {}).get("leader") is False
    await eventually(lambda: _status_names(cluster, a.name), within=10, what="the policy status naming the leader")
    mark = len(list(cluster.emulator))

    half = len(ROUTES) // 2
    for name in ROUTES[:half]:
        await cluster.patch(GV, "llmroutes", NS, name, {"spec": {"failover": {"maxAttempts": 2}}})
    # mid-way: op-a has rolled the first changed route, not necessarily the others
    await eventually(lambda: _rolled(cluster, ROUTES[0], before), within=15, what="the leader reconciling the batch")
    a.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    for name in ROUTES[half:]:
        await cluster.patch(GV, "llmroutes", NS, name, {"spec": {"failover": {"maxAttempts": 2}}})

    await eventually(lambda: _is(cluster, b.name), within=TAKEOVER_BUDGET_S + 5, what="the standby holding the lease")
    takeover = time.monotonic() - killed
    probes = _probes(providers)
    after = await eventually(lambda: all_reconciled(cluster, before), within=30, what="every route reconciled")
    resumed = time.monotonic() - killed
    print(
        f"\ntakeover after SIGKILL: lease held by the standby after {takeover:.1f}s, "
        f"every route of the batch reconciled after {resumed:.1f}s"
    )
    assert takeover <= TAKEOVER_BUDGET_S, b.tail()
    assert (await b.healthz() or {}).get("leader") is True, b.tail()
    await asyncio.sleep(2)  # let anything late arrive

    writes = operator_writes(cluster, mark)
    owned = [r for r in writes if r.resource.plural not in ("events", "leases")]
    assert not [r for r in owned if verb(r) == "POST"], "an object was created again"
    for name in ROUTES:  # every router's pod template went from its old hash to the final one, nothing between
        written = {
            pod_hash(r.data)
            for r in owned
            if r.resource.plural == "deployments" and r.name == f"{name}-router" and pod_hash(r.data)
        }
        assert written == {after[name]} != {before[name]}, (name, written)
    final = await cluster.list("apps/v1", "deployments")
    assert sorted(d["metadata"]["name"] for d in final if d["metadata"]["namespace"] == NS) == sorted(
        f"{n}-router" for n in ROUTES
    )
    events = [r.data for r in writes if r.resource.plural == "events"]
    took = [e for e in events if e.get("reason") == EVENT_REASON]
    assert [e["message"] for e in took] == [f"{b.name} is the active operator replica, taking over from {a.name}"]
    changed = Counter(e["involvedObject"]["name"] for e in events if e.get("reason") == "ConfigChanged")
    # at most one ConfigChanged per route (one queued by the killed replica may be lost with it: Events are best-effort)
    assert set(changed) <= set(ROUTES) and max(changed.values()) == 1, changed
    on_routes = [e for e in events if e["involvedObject"]["name"] in ROUTES]
    assert len(on_routes) <= 2 * len(ROUTES), Counter(e.get("reason") for e in on_routes)
    # probing resumed where the status left it: every provider probed again, no health Event re-posted
    assert all(n > probes[p] for p, n in _probes(providers).items()), (probes, _probes(providers))
    assert not [e for e in events if e.get("reason", "").startswith("Provider")]
    await eventually(lambda: _status_names(cluster, b.name), within=10, what="the policy status naming the new leader")
    # pool scaling resumed: a router's demand reaching the new leader starts a replica at once, once
    async with aiohttp.ClientSession() as s:
        report = {"router": "apps/r0/h", "pools": {f"{POOL_NS}/{POOL}": 1}}
        async with s.post(f"http://127.0.0.1:{b.demand}/v1/demand", json=report) as resp:
            assert resp.status == 204
    assert (await at(cluster, 1, within=5))["reason"] == "Demand"
    scaled = [
        r.data
        for r in operator_writes(cluster, mark)
        if r.resource.plural == "events" and r.data.get("reason") == "Scaled"
    ]
    assert [e["message"].split(":")[0] for e in scaled] == ["scaled from 0 to 1 replicas"]

    # the Lease taken away (as a partitioned holder would find it): the holder stops acting at once
    await eventually(lambda: _steal(cluster), what="the lease replaced (409 while the holder renews)")
    assert await asyncio.wait_for(b.proc.wait(), 10) == EXIT_LOST_LEASE, b.tail()
    assert_lease_rbac(cluster)


async def test_two_replicas_write_once_and_the_standby_stays_out(
    cluster: Cluster,
    replicas: Any,
    providers: dict[str, ProviderEmulator],  # noqa: F811
) -> None:
    await deploy(cluster, probed_policy(providers))
    a, b = await elected(cluster, replicas, probe=True)
    await eventually(lambda: all_reconciled(cluster), within=30, what="every route reconciled")
    await asyncio.sleep(2)
    mark, probes = len(list(cluster.emulator)), _probes(providers)
    window = 16.0
    await asyncio.sleep(window)

    assert await holder(cluster) == a.name and a.proc.returncode is None and b.proc.returncode is None
    # the standby sent nothing but reads of the Lease (its API client names it in the User-Agent) and, started at
    # the same moment as the leader, at most one create of the Lease that the API server refused (409: the other
    # replica created it first; it holds it); once elected, only reads
    def sent_by_b(requests: list[Any]) -> Counter[tuple[str, str]]:
        return Counter(
            (verb(r), r.resource.plural if r.resource else r.path)
            for r in requests
            if f"({b.name})" in r.headers.get("User-Agent", "")
        )

    ever = sent_by_b(list(cluster.emulator))
    assert set(ever) <= {("GET", "leases"), ("POST", "leases")} and ever[("POST", "leases")] <= 1, ever
    assert set(sent_by_b(list(cluster.emulator)[mark:])) == {("GET", "leases")}
    writes = operator_writes(cluster, mark)
    lease_writes = [r for r in writes if r.resource.plural == "leases"]
    assert {r.data["spec"]["holderIdentity"] for r in lease_writes} == {a.name}
    assert len(lease_writes) <= window / Timing().renew_every_s + 2
    owned = per_object(
        [r for r in writes if r.resource.plural not in ("leases", "events") and r.subresource != "status"]
    )
    assert not owned, f"writes while nothing changed: {owned}"  # (status may follow a provider's health)
    everything = per_object([r for r in operator_writes(cluster) if r.resource.plural not in ("leases", "events")])
    twice = {k: n for k, n in everything.items() if k[0] == "POST" and n > 1}
    assert not twice, f"created more than once: {twice}"
    probed = {n: c - probes[n] for n, c in _probes(providers).items()}
    assert all(window / 4 <= c <= window * 1.25 + 3 for c in probed.values()), probed  # one prober at 1/s

    async with aiohttp.ClientSession() as s:
        report = {"router": "apps/r0/h", "pools": {"ns/p": 1}}
        async with s.post(f"http://127.0.0.1:{b.demand}/v1/demand", json=report) as resp:
            assert (resp.status, resp.headers.get("Connection"), resp.headers.get("Retry-After")) == (503, "close", "1")
        async with s.post(f"http://127.0.0.1:{a.demand}/v1/demand", json=report) as resp:
            assert resp.status == 204
    assert await b.healthz() == {**(await b.healthz() or {}), "identity": b.name, "leader": False, "holder": a.name}
    assert (await a.leader_gauge(), await b.leader_gauge()) == (
        "llmroute_operator_leader 1.0",
        "llmroute_operator_leader 0.0",
    )

    # a rollout or drain stops the leader (SIGTERM): it stops kopf, releases the Lease, the standby takes it at once
    a.proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    await eventually(lambda: _is(cluster, b.name), within=10, what="the standby holding the released lease")
    handover = time.monotonic() - stopped
    print(f"\nhandover after SIGTERM: {handover:.1f}s")
    assert await asyncio.wait_for(a.proc.wait(), 10) == 0, a.tail()
    released = [
        r
        for r in cluster.emulator
        if verb(r) == "PUT"
        and r.resource is not None
        and r.resource.plural == "leases"
        and r.data["spec"]["holderIdentity"] == ""
    ]
    assert len(released) == 1 and f"({a.name})" in released[0].headers["User-Agent"]  # released, not expired
    assert handover < Timing().lease_s
    assert await b.leader_gauge() == "llmroute_operator_leader 1.0"
    assert_lease_rbac(cluster)


async def elected(cluster: Cluster, replicas: Any, probe: bool = False) -> tuple[Replica, Replica]:
    """Two replicas started at once: (the one holding the Lease, the standby)."""
    both = {r.name: r for r in await asyncio.gather(replicas("op-a", probe), replicas("op-b", probe))}
    lead = await eventually(lambda: holder(cluster), within=15, what="a replica holding the lease")
    (standby,) = set(both) - {lead}
    return both[lead], both[standby]


async def _is(cluster: Cluster, name: str) -> bool:
    return await holder(cluster) == name


async def _steal(cluster: Cluster) -> bool:
    lease = await cluster.get(API_VERSION, "leases", LEASE_NS, LEASE)
    lease["spec"]["holderIdentity"] = "someone-else"
    await cluster.call("PUT", Cluster.path(API_VERSION, "leases", LEASE_NS, LEASE), lease)
    return True


async def _rolled(cluster: Cluster, route: str, before: dict[str, str]) -> bool:
    h = pod_hash(await deployment(cluster, route=route))
    return bool(h) and h != before[route]


def _probes(emulators: dict[str, ProviderEmulator]) -> dict[str, int]:
    return {n: e.stats.requests["/models"] for n, e in emulators.items()}
