"""The demand signal reaches the active operator replica at once: the real router process posts each report to every
address of the demand Service's name, and the Lease holder takes it while the standby answers 503.

The two replicas are the operator's real demand endpoint (:func:`llmroute.controller.demand.app`), one answering as
the leader and one as the standby, on the same port of 127.0.0.1 and 127.0.0.2. The router runs in a mount namespace
of its own whose ``/etc/hosts`` gives the chart's headless Service name both addresses (``unshare -m``; skipped where
that is not allowed), so its resolver is the real one, as in a cluster. Aspects: the first report reaches the leader
at once and then every period; after a takeover (the roles swap) the new leader gets the next report; no address took
a report (both on standby, mid-takeover) is logged once, and a standby's 503 alone is not. In-process, with the real
resolver: which URLs a report goes to (each address; an https URL or a name that does not resolve as it is), and an
address that accepts but never answers (a pod gone but still in DNS) delays neither the leader's report nor the next.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
from aiohttp import web

from llmroute.controller import demand
from llmroute.controller.pools import PoolRegistry
from llmroute.emulator.vllm import VllmPod
from llmroute.router.holding import Demand
from llmroute.router.upstream import Upstream

from .conftest import Hub, RouterProcess, make_aclient, write_config
from .test_pools import Endpoints, held, phi_chat, pool_docs, ready_pods, start_pod, until

pytestmark = pytest.mark.router

NAME = "llmroute-operator-demand.llmroute-system.svc"  # the chart's headless Service, as routers are given it
ADDRESSES = ("127.0.0.1", "127.0.0.2")
PERIOD_S = 1.0  # llmroute.router.holding.DEMAND_INTERVAL_S
SLACK_S = 0.5  # a shared 2-core machine


class Replica:
    """One operator replica's demand endpoint: every response it gave, with its arrival time."""

    def __init__(self, host: str, leading: bool) -> None:
        self.host, self.leading = host, leading
        self.answers: list[tuple[float, int]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, port: int) -> None:
        self.port = port
        app = demand.app(PoolRegistry(), active=lambda: self.leading)
        app.on_response_prepare.append(self._record)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, port).start()

    async def _record(self, _: web.Request, response: web.StreamResponse) -> None:
        self.answers.append((time.monotonic(), response.status))

    def taken(self, since: float) -> list[float]:
        return [t for t, status in self.answers if status == 204 and t > since]

    def refused(self, since: float) -> list[float]:
        return [t for t, status in self.answers if status == 503 and t > since]


def _port_free_on_both() -> int:
    while True:
        with socket.socket() as first:
            first.bind((ADDRESSES[0], 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind((ADDRESSES[1], port))
                except OSError:
                    continue
            return int(port)


def _private_hosts(tmp: Path) -> tuple[str, ...]:
    """A command prefix that runs the command with ``/etc/hosts`` giving :data:`NAME` both addresses."""
    hosts = tmp / "hosts"
    hosts.write_text("".join(f"{a} {NAME}\n" for a in ADDRESSES) + "127.0.0.1 localhost\n")
    prefix = ("unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts))
    check = subprocess.run([*prefix, "getent", "ahostsv4", NAME], capture_output=True, text=True, check=False)
    if check.returncode != 0 or not all(a in check.stdout for a in ADDRESSES):
        pytest.skip(f"cannot give the router a private /etc/hosts here: {check.stderr.strip()}")
    return prefix


@pytest.fixture(scope="module")
def replicas(hub: Hub) -> Iterator[tuple[Replica, Replica]]:
    port = _port_free_on_both()
    pair = Replica(ADDRESSES[0], leading=True), Replica(ADDRESSES[1], leading=False)
    for replica in pair:
        hub.call(replica.start(port))
    yield pair
    for replica in pair:
        if replica.runner is not None:
            hub.call(replica.runner.cleanup())


@pytest.fixture(scope="module")
def replicated_router(
    hub: Hub, replicas: tuple[Replica, Replica], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RouterProcess, Endpoints]]:
    folder = tmp_path_factory.mktemp("demand")
    docs = pool_docs(hub)
    docs["route"]["spec"]["coldStart"]["maxWait"] = "20s"
    endpoints = Endpoints(folder / "endpoints.json")
    endpoints.set()
    proc = RouterProcess(
        [str(write_config(folder / "config", docs))],
        folder / "router.log",
        env={
            "LLMROUTE_POOL_ENDPOINTS_FILE": str(endpoints.path),
            "LLMROUTE_DEMAND_URL": f"http://{NAME}:{replicas[0].port}/v1/demand",
        },
        prefix=_private_hosts(folder),
    )
    yield proc, endpoints
    proc.stop()


@pytest.fixture()
async def aclient(replicated_router: tuple[RouterProcess, Endpoints]) -> AsyncIterator[openai.AsyncOpenAI]:
    async with make_aclient(replicated_router[0]) as client:
        yield client


def _gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_the_leader_gets_every_report_and_a_new_leader_the_next_one(
    replicated_router: tuple[RouterProcess, Endpoints], replicas: tuple[Replica, Replica], aclient: openai.AsyncOpenAI
) -> None:
    router, endpoints = replicated_router
    first, second = replicas
    sent = time.monotonic()
    held_request = asyncio.create_task(phi_chat(aclient))
    await until(router, held(1))
    await asyncio.sleep(2.5)
    swapped = time.monotonic()
    first.leading, second.leading = False, True  # a takeover: the Lease changed hands
    await asyncio.sleep(2.5)
    pods: list[VllmPod] = []
    try:
        endpoints.set(await start_pod(pods))
        assert (await held_request)[0] == "gpu"
        await asyncio.sleep(0.3)
    finally:
        for pod in pods:
            await pod.close()
        endpoints.set()
    await until(router, ready_pods(0))
    taken = sorted(first.taken(sent) + second.taken(sent))
    print(
        f"first report taken {taken[0] - sent:.3f} s after the request; "
        f"new leader's first {second.taken(swapped)[0] - swapped:.3f} s after the takeover; gaps "
        + ", ".join(f"{g:.2f}" for g in _gaps(taken))
    )
    assert taken[0] - sent < SLACK_S  # the 0 -> 1 report, at once, by the leader
    assert first.taken(sent) and all(t < swapped for t in first.taken(sent))
    assert second.taken(swapped) and second.taken(swapped)[0] - swapped < PERIOD_S + SLACK_S
    assert all(gap < PERIOD_S + SLACK_S for gap in _gaps(taken))  # no period without a report taken
    assert len(first.refused(sent)) + len(second.refused(sent)) == len(taken)  # each report went to both
    assert "no operator replica took" not in router.log()  # a standby's 503 is expected


async def test_a_report_no_replica_takes_is_logged_once_naming_them(
    replicated_router: tuple[RouterProcess, Endpoints], replicas: tuple[Replica, Replica], aclient: openai.AsyncOpenAI
) -> None:
    router = replicated_router[0]
    for replica in replicas:
        replica.leading = False  # mid-takeover: the Lease expired, nobody holds it yet
    sent = time.monotonic()
    held_request = asyncio.create_task(phi_chat(aclient))
    try:
        await until(router, held(1))
        await asyncio.sleep(2.5)
        assert all(len(r.refused(sent)) >= 3 for r in replicas)
        warnings = [line for line in router.log().splitlines() if "no operator replica took the report" in line]
        assert len(warnings) == 1
        assert all(f"http://{a}:" in warnings[0] for a in ADDRESSES) and "HTTP 503" in warnings[0]
        replicas[0].leading = True
        await asyncio.sleep(PERIOD_S + SLACK_S)
        assert replicas[0].taken(sent)
    finally:
        held_request.cancel()
        await asyncio.gather(held_request, return_exceptions=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8082/v1/demand", {"http://127.0.0.1:8082/v1/demand"}),
        ("http://[::1]:8082/v1/demand?v=1", {"http://[::1]:8082/v1/demand?v=1"}),
        ("http://localhost/v1/demand", {"http://127.0.0.1:80/v1/demand"}),  # may add [::1] where hosts says so
        ("https://operator.example:8443/v1/demand", {"https://operator.example:8443/v1/demand"}),  # cert names host
        ("http://no-such-name.invalid:8082/v1/demand", {"http://no-such-name.invalid:8082/v1/demand"}),
        ("http://operator:port/v1/demand", {"http://operator:port/v1/demand"}),  # fetch says why it is no URL
    ],
    ids=["ipv4", "ipv6-query", "name", "https", "unresolvable", "bad-port"],
)
async def test_a_report_goes_to_each_address_of_the_name(url: str, expected: set[str]) -> None:
    found = await Demand(Upstream(), url, time.monotonic, {}).destinations(url)
    assert expected <= set(found) <= expected | {"http://[::1]:80/v1/demand"}


async def test_an_address_that_never_answers_delays_neither_the_leaders_report_nor_the_next() -> None:
    leader = Replica("127.0.0.1", leading=True)
    await leader.start(_port_free_on_both())
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections (the kernel's backlog), never answers
    origins = frozenset({f"http://127.0.0.1:{leader.port}", f"http://127.0.0.1:{silent.getsockname()[1]}"})

    async def resolve(host: str, port: int) -> frozenset[str]:
        return origins

    upstream = Upstream()
    await upstream.open()
    held = {"llm/gpu": 1}
    sender = Demand(upstream, f"http://{NAME}:{leader.port}/v1/demand", time.monotonic, held, resolver=resolve)
    sender.use("llm/pools/r", has_pools=True)
    started = time.monotonic()
    sender.changed("llm/gpu", 1)
    running = asyncio.create_task(sender.run())
    try:
        await asyncio.sleep(2 * PERIOD_S + SLACK_S)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await upstream.close()
        silent.close()
        if leader.runner is not None:
            await leader.runner.cleanup()
    taken = leader.taken(started)
    assert taken[0] - started < 0.2  # not after the silent address's timeout (DEMAND_TIMEOUT_S)
    assert len(taken) >= 3 and all(gap < PERIOD_S + SLACK_S for gap in _gaps(taken)), _gaps(taken)
