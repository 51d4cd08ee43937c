"""The election's pure decisions (:mod:`llmroute.controller.leader`), its settings and its Role."""

from __future__ import annotations

import datetime

import pytest

from llmroute.controller.leader import Observer, Record, Timing, may_acquire, new_lease, released, taken
from llmroute.controller.rbac import allows, lease_role
from llmroute.controller.settings import Settings

pytestmark = pytest.mark.unit

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)


def record(holder: str, renew: str = "t1", lease_s: float = 8) -> Record:
    return Record(holder=holder, lease_s=lease_s, transitions=0, renew_time=renew)


def test_a_standby_waits_a_full_lease_duration_from_when_it_saw_the_last_change() -> None:
    seen = Observer()
    seen.see(record("a", "t1"), now=100.0)
    seen.see(record("a", "t1"), now=105.0)  # unchanged: expiry still counts from 100
    assert seen.since == 100.0
    assert not may_acquire(seen.record, "b", seen.since, now=107.9)
    assert may_acquire(seen.record, "b", seen.since, now=108.0)
    seen.see(record("a", "t2"), now=107.0)  # renewed: the clock starts again
    assert not may_acquire(seen.record, "b", seen.since, now=114.9)


@pytest.mark.parametrize(
    ("current", "me", "ok"),
    [(None, "b", True), (record(""), "b", True), (record("b"), "b", True), (record("a"), "b", False)],
)
def test_free_released_or_own_leases_are_taken_at_once(current: Record | None, me: str, ok: bool) -> None:
    assert may_acquire(current, me, observed_since=100.0, now=100.0) is ok


def test_taking_over_counts_a_transition_and_renewing_does_not() -> None:
    timing = Timing()
    lease = new_lease("ns", "op", "a", T0, timing)
    assert lease["spec"] == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 8,
        "acquireTime": "2026-01-02T03:04:05.678901Z",
        "renewTime": "2026-01-02T03:04:05.678901Z",
        "leaseTransitions": 0,
    }
    lease["metadata"]["resourceVersion"] = "7"
    later = T0 + datetime.timedelta(seconds=2)
    renewed = taken(lease, "a", later, timing)
    assert (renewed["spec"]["leaseTransitions"], renewed["spec"]["acquireTime"]) == (0, lease["spec"]["acquireTime"])
    assert renewed["spec"]["renewTime"] == "2026-01-02T03:04:07.678901Z"
    assert renewed["metadata"]["resourceVersion"] == "7"  # the PUT stays conditional
    took = taken(renewed, "b", later, timing)
    assert (took["spec"]["holderIdentity"], took["spec"]["leaseTransitions"]) == ("b", 1)
    assert took["spec"]["acquireTime"] == took["spec"]["renewTime"]
    gone = released(took, later)
    assert (gone["spec"]["holderIdentity"], gone["spec"]["leaseDurationSeconds"]) == ("", 1)
    assert may_acquire(Record.of(gone), "a", observed_since=0.0, now=0.0)


def test_the_holder_gives_up_before_a_standby_may_take_over() -> None:
    t = Timing()
    assert t.renew_every_s < t.renew_deadline_s < t.lease_s
    assert t.lease_s + t.retry_s < 15  # worst-case takeover after a SIGKILL, before the operator starts
    with pytest.raises(ValueError, match="renew_deadline"):
        Timing(lease_s=5, renew_deadline_s=6)


def test_election_settings_from_the_environment() -> None:
    assert Settings.from_env({}).leader_election is False
    on = Settings.from_env(
        {
            "LLMROUTE_LEADER_ELECTION": "true",
            "POD_NAMESPACE": "llmroute-system",
            "POD_NAME": "llmroute-operator-5d9c-x2",
            "LLMROUTE_LEASE_NAME": "llmroute",
        }
    )
    assert (on.leader_election, on.lease_namespace, on.identity, on.lease_name) == (
        True,
        "llmroute-system",
        "llmroute-operator-5d9c-x2",
        "llmroute",
    )
    explicit = Settings.from_env({"LLMROUTE_LEASE_NAMESPACE": "ops", "POD_NAMESPACE": "other"})
    assert (explicit.lease_namespace, explicit.lease_name) == ("ops", "llmroute-operator")
    with pytest.raises(ValueError, match="leader election needs"):
        Settings.from_env({"LLMROUTE_LEADER_ELECTION": "1"})


def test_the_lease_role_grants_the_one_named_lease_only() -> None:
    role = lease_role("llmroute-operator", namespace="llmroute-system")
    group = "coordination.k8s.io"
    assert allows(role, group, "leases", "create")
    assert allows(role, group, "leases", "get", "llmroute-operator")
    assert allows(role, group, "leases", "update", "llmroute-operator")
    assert not allows(role, group, "leases", "update", "kube-scheduler")
    assert not allows(role, group, "leases", "get")  # no list-like reads
    assert not any(allows(role, group, "leases", v, "llmroute-operator") for v in ("patch", "delete", "list", "watch"))
