"""controller.cache and manifests.comparable (no API): what the watch cache keeps (digests, never values), which watch
events wake a route (someone else's change; not the echo of the operator's own write, not an older event, not
status-only churn), write-through until the echo, and the TTL of source-Secret reads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from llmroute.controller.cache import CacheView, Owned, SourceSecrets
from llmroute.core.manifests import ObjectKey, comparable, needs_update, value_digest

pytestmark = pytest.mark.unit

UID = "route-uid"
KEY = ObjectKey("v1", "ConfigMap", "apps", "r-router-config")
DEP_KEY = ObjectKey("apps/v1", "Deployment", "apps", "r-router")


def meta(name: str, rv: str) -> dict[str, Any]:
    return {"name": name, "namespace": "apps", "resourceVersion": rv, "labels": {"a": "b"},
            "ownerReferences": [{"kind": "LLMRoute", "uid": UID, "controller": True}]}


def config_map(rv: str, config: str = "{}") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(KEY.name, rv), "data": {"config.json": config}}


def deployment(rv: str, available: str | None = None, observed: int = 1) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": observed}
    if available is not None:
        status["conditions"] = [{"type": "Available", "status": available}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(DEP_KEY.name, rv),
            "spec": {"replicas": 2}, "status": status}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_comparable_keeps_digests_not_values_and_is_idempotent() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta("k", "1"),
              "data": {"KEY": "c2VjcmV0LXZhbHVl"}}
    form = comparable(secret)
    assert "c2VjcmV0LXZhbHVl" not in repr(form) and "data" not in form
    assert comparable(form) == form
    assert not needs_update(comparable(secret), form)
    assert needs_update(comparable({**secret, "data": {"KEY": "b3RoZXI="}}), form)
    assert comparable({"apiVersion": "v1", "kind": "Secret", "metadata": {}})["dataDigests"] == {}


def test_only_someone_elses_changes_wake_the_route() -> None:
    owned = Owned(Clock())
    owned.wakeups[UID] = wake = asyncio.Event()
    view = CacheView(owned, {})

    assert not owned.observe(None, config_map("1"))  # initial listing: the route is resumed anyway
    view.wrote(KEY, config_map("2", "new"))  # the operator's patch
    assert view.get(KEY) == comparable(config_map("2", "new"))  # written through, before the watch delivers it
    assert not owned.observe("MODIFIED", config_map("1"))  # older than the write
    assert not owned.observe("MODIFIED", config_map("2", "new"))  # the echo
    assert view.get(KEY) is None  # now the index answers (empty here)
    assert owned.observe("MODIFIED", config_map("3", "edited by hand"))
    assert owned.wake(config_map("3")) and wake.is_set()

    view.wrote(KEY, None)  # the operator deleted it
    assert not owned.observe("DELETED", config_map("3"))
    assert owned.observe("DELETED", config_map("4"))  # someone else did


def test_deployment_wakes_on_readiness_not_on_status_churn() -> None:
    owned = Owned(Clock())
    assert not owned.observe(None, deployment("1"))
    assert not owned.observe("MODIFIED", deployment("2", observed=2))  # status-only churn
    assert owned.observe("MODIFIED", deployment("3", available="True"))
    assert not owned.observe("MODIFIED", deployment("4", available="True", observed=3))


def test_pending_writes_expire_and_an_indexed_echo_is_not_pending() -> None:
    clock = Clock()
    owned = Owned(clock)
    index = {(KEY.namespace, KEY.name): [json.dumps(comparable(config_map("5")))]}
    view = CacheView(owned, {"owned_configmaps": index})
    view.wrote(KEY, config_map("5"))  # the watch was faster than the API's answer
    assert KEY not in owned.pending
    view.wrote(KEY, config_map("6", "x"))
    assert view.get(KEY) == comparable(config_map("6", "x"))
    clock.now = 31.0
    assert view.get(KEY) == comparable(config_map("5"))


class Reads:
    def __init__(self) -> None:
        self.count = 0

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        self.count += 1
        await asyncio.sleep(0)
        return {"k": f"v{self.count}"}


async def test_source_secrets_are_read_once_per_ttl() -> None:
    clock, reads = Clock(), Reads()
    secrets = SourceSecrets(reads, ttl=30.0, clock=clock)  # type: ignore[arg-type]
    got = await asyncio.gather(*(secrets.data("ns", "keys") for _ in range(10)))
    assert reads.count == 1 and all(g == {"k": "v1"} for g in got)
    clock.now = 30.0
    assert await secrets.data("ns", "keys") == {"k": "v2"}
    assert await secrets.data("ns", "other") == {"k": "v3"}
    assert await secrets.digests("ns", "other") == {"k": value_digest("v3")} and reads.count == 3  # same read
