"""The election itself, in-process against the emulator with short timings: a holder cut off from the API server
stops acting before any standby may take over, and then one does; one of racing replicas wins, and a release hands
over at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from llmroute.controller.kube import Kube
from llmroute.controller.leader import API_VERSION, Elector, Timing
from tests.operator.conftest import Cluster, eventually
from tests.operator.test_ha import LEASE, LEASE_NS, LeaseEmulator, holder

pytestmark = pytest.mark.operator

FAST = Timing(lease_s=1.6, renew_every_s=0.2, renew_deadline_s=0.8, retry_s=0.1)


@pytest.fixture()
def kmock_options() -> dict[str, Any]:
    return {"cls": LeaseEmulator}


@pytest.fixture()
def kubes() -> Iterator[list[Kube]]:
    made: list[Kube] = []
    yield made
    for kube in made:
        kube.close()


def elector(cluster: Cluster, identity: str, kubes: list[Kube]) -> Elector:
    kubes.append(Kube.for_url(cluster.url))
    return Elector(kubes[-1], LEASE_NS, LEASE, identity, FAST)


async def test_a_cut_off_holder_stops_before_a_standby_takes_over(cluster: Cluster, kubes: list[Kube]) -> None:
    a, b = elector(cluster, "a", kubes), elector(cluster, "b", kubes)
    await a.acquire()
    standby = asyncio.create_task(b.acquire())
    holding = asyncio.create_task(a.hold())
    await asyncio.sleep(2 * FAST.lease_s)
    assert not standby.done() and await holder(cluster) == "a"  # renewals keep the standby out

    kubes.append(Kube.for_url("http://127.0.0.1:9"))
    a.kube = kubes[-1]  # a partition: a's renewals fail from now on
    cut = time.monotonic()
    await asyncio.wait_for(holding, 2 * FAST.lease_s)
    stopped = time.monotonic()
    await asyncio.wait_for(standby, 3 * FAST.lease_s)
    took = time.monotonic()
    assert not a.leading and b.leading
    # The holder gives up at its deadline (renew_deadline_s after its last renewal, which began before the cut);
    # the bound that matters is the lease: a standby may act lease_s after it last saw a renewal. Scheduling
    # on a loaded machine may add a little to the deadline, never as much as the margin up to lease_s.
    assert stopped - cut < FAST.lease_s
    assert stopped < took  # ...before the standby may act
    assert took - cut >= FAST.lease_s - FAST.renew_every_s  # the standby waited for the lease to expire
    assert await holder(cluster) == "b"
    lease = await cluster.get(API_VERSION, "leases", LEASE_NS, LEASE)
    assert lease["spec"]["leaseTransitions"] == 1


async def test_of_racing_replicas_one_wins_and_a_release_hands_over(cluster: Cluster, kubes: list[Kube]) -> None:
    electors = [elector(cluster, name, kubes) for name in ("a", "b", "c")]
    tasks = [asyncio.create_task(e.acquire()) for e in electors]
    try:
        await eventually(lambda: holder(cluster), what="a holder")
        await asyncio.sleep(FAST.lease_s / 2)  # within the lease: nobody else may take it yet
        assert [e.identity for e in electors if e.leading] == [await holder(cluster)]
        winner = next(e for e in electors if e.leading)
        await winner.release()
        await eventually(lambda: _other_holds(cluster, winner.identity), within=2, what="a handover after release")
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _other_holds(cluster: Cluster, previous: str) -> bool:
    return await holder(cluster) not in ("", previous)
