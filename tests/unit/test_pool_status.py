"""controller.pool_status (pure): the size before the scaler decides, the scaler's memory after a restart, status
conditions and the rule that the message alone is not worth a write."""

from __future__ import annotations

from typing import Any

import pytest

from llmroute.api.model_pool import ModelPoolStatus
from llmroute.controller import pool_status as ps
from llmroute.controller import status as st
from llmroute.core.scaling import Decision, Reason, ScalerState, WatchedProvider
from tests.conftest import example_doc

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
T0 = "2027-01-15T08:00:00Z"


def body(**status: Any) -> dict[str, Any]:
    doc = example_doc("pool")
    doc["metadata"]["uid"] = "u-1"
    return {**doc, "status": status} if status else doc


def test_parse_names_the_field_and_keeps_the_status() -> None:
    doc = body(desiredReplicas=2, reason="Load")
    doc["spec"]["engineArgs"] = ["--served-model-name=x"]
    with pytest.raises(ps.Rejected, match=r"spec\.engineArgs\[0\].*--served-model-name") as rejected:
        ps.parse(doc)
    assert rejected.value.permanent and rejected.value.accepted.reason == "InvalidSpec"
    doc["spec"]["replicas"] = {"min": 3, "max": 1}
    with pytest.raises(ps.Rejected, match=r"replicas\.min must not exceed replicas\.max"):
        ps.parse(doc)
    pool = ps.parse(body(desiredReplicas=2, reason="Load"))
    assert pool.status is not None and pool.status.desired_replicas == 2


@pytest.mark.parametrize(("live", "remembered", "status", "size"), [
    pytest.param({"spec": {"replicas": 7}}, 1, {}, 7, id="the-live-deployment-wins-even-beyond-bounds"),
    pytest.param(None, 3, {}, 3, id="deleted-deployment-comes-back-at-the-decided-size"),
    pytest.param(None, None, {"desiredReplicas": 2, "reason": "Prewarm"}, 2, id="after-a-restart-from-status"),
    pytest.param(None, None, {}, 0, id="a-new-pool-starts-at-min"),
    pytest.param(None, 9, {}, 4, id="clamped-to-max"),
])
def test_current_size(live: dict[str, Any] | None, remembered: int | None, status: dict[str, Any],
                      size: int) -> None:
    assert ps.current_size(ps.parse(body(**status)), live, remembered) == size


def test_a_restart_keeps_the_last_change_and_a_prewarm_hold() -> None:
    watched = (WatchedProvider("deepseek-residency/deepseek", down=False),
               WatchedProvider("deepseek-residency/together", down=True))
    status = ModelPoolStatus(reason="Prewarm", last_scale_time=T0)
    state = ps.restored_state(status, watched, NOW)
    assert state.last_scale_time == ps.parse_time(T0)
    assert state.recovered_at == (("deepseek-residency/deepseek", NOW),)  # a full hold from now; Down ones re-arm
    assert ps.restored_state(ModelPoolStatus(reason="Load"), watched, NOW) == ScalerState()
    assert ps.restored_state(None, watched, NOW) == ScalerState()
    future = ModelPoolStatus(reason="Steady", last_scale_time="2099-01-01T00:00:00Z")
    assert ps.restored_state(future, (), NOW).last_scale_time == NOW  # a clock that went backwards


def test_status_conditions_and_message_only_changes() -> None:
    def sizing(replicas: int, ready: int, message: str = "m", unreadable: int = 0) -> ps.Sizing:
        return ps.Sizing(replicas, ready, Decision(replicas, Reason.LOAD, message, ScalerState()), None, unreadable)

    first, changes = ps.pool_status(None, 1, T0, ps.VALID, sizing=sizing(2, 0, unreadable=1))
    assert [(c.type, c.cond.reason) for c in changes] == [("Accepted", "Valid"), ("Ready", "ReplicasStarting")]
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "0/2 replicas ready; /metrics of 1 Ready pod(s) did not answer or parse (counted " \
                               "as not ready)"
    same, _ = ps.pool_status(first, 1, T0, ps.VALID, sizing=sizing(2, 0, "other words", unreadable=1))
    assert not ps.worth_writing(first, same) and same["message"] == "other words"
    up, _ = ps.pool_status(first, 1, T0, ps.VALID, sizing=sizing(2, 2))
    assert ps.worth_writing(first, up) and next(c for c in up["conditions"] if c["type"] == "Ready")["status"] == "True"
    zero, _ = ps.pool_status(up, 1, T0, ps.VALID, sizing=sizing(0, 0))
    assert next(c for c in zero["conditions"] if c["type"] == "Ready")["reason"] == "ScaledToZero"
    invalid = ps.Rejected(st.Cond(st.FALSE, "InvalidSpec", "spec.x: bad"))
    kept, changes = ps.pool_status(zero, 2, T0, invalid.accepted, invalid.ready)
    assert kept["desiredReplicas"] == 0 and kept["reason"] == "Load"  # the size fields are kept
    assert [(c.type, c.cond.reason) for c in changes] == [("Accepted", "InvalidSpec")]
