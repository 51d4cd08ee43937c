"""Router demand for pools (:mod:`llmroute.core.demand`): the report's shape and limits, the sum over routers of fresh
counts, 0 -> >0 transitions, unknown pools, stale routers; and the router Deployment learning where to report
without its compiled config (hash) changing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core.compile import compile_route
from llmroute.core.demand import MAX_AGE_S, MAX_BODY_BYTES, DemandBook, DemandError, Report, parse_report
from llmroute.core.manifests import (
    CONFIG_HASH_ANNOTATION,
    DEMAND_URL_ENV,
    Desired,
    RouterSettings,
    desired_objects,
)

pytestmark = pytest.mark.unit

POOL = "llm-serving/deepseek-v3"
OTHER = "llm-serving/qwen"


def body(**doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_a_report_parses() -> None:
    report = parse_report(body(router="apps/chat/chat-router-5d9f-x2x", pools={POOL: 3, OTHER: 0}, extra=1))
    assert report == Report("apps/chat/chat-router-5d9f-x2x", {POOL: 3, OTHER: 0})


@pytest.mark.parametrize(("raw", "message"), [
    (b"{", "not JSON"),
    (b"[]", "JSON object"),
    (body(pools={POOL: 1}), "router must be"),
    (body(router="", pools={POOL: 1}), "router must be"),
    (body(router="r" * 513, pools={}), "router must be"),
    (body(router="r", pools=[POOL]), "pools must be an object"),
    (body(router="r", pools={"deepseek-v3": 1}), '"<namespace>/<pool>"'),
    (body(router="r", pools={"LLM/Pool": 1}), '"<namespace>/<pool>"'),
    (body(router="r", pools={POOL: -1}), "integer 0.."),
    (body(router="r", pools={POOL: 1.5}), "integer 0.."),
    (body(router="r", pools={POOL: True}), "integer 0.."),
    (body(router="r", pools={POOL: "2"}), "integer 0.."),
    (body(router="r", pools={f"ns/p{i}": 1 for i in range(1025)}), "more than 1024"),
    (b" " * (MAX_BODY_BYTES + 1), "larger than"),
])
def test_malformed_reports_are_refused_with_a_reason(raw: bytes, message: str) -> None:
    with pytest.raises(DemandError, match=message):
        parse_report(raw)


def test_demand_sums_fresh_counts_over_routers_and_reports_starts() -> None:
    book = DemandBook()
    assert book.record(Report("a", {POOL: 2}), now=0.0) == [POOL]
    assert book.record(Report("b", {POOL: 1, OTHER: 0}), now=0.5) == []  # already > 0; OTHER stays at 0
    assert (book.held(POOL, 1.0), book.held(OTHER, 1.0)) == (3, 0)
    assert book.record(Report("a", {POOL: 5}), now=1.0) == []  # the last count replaces, it does not add
    assert book.held(POOL, 1.0) == 6
    assert book.record(Report("a", {POOL: 0}), now=1.2) == []  # done
    assert book.record(Report("b", {POOL: 0}), now=1.3) == []
    assert book.held(POOL, 1.3) == 0
    assert book.record(Report("b", {POOL: 1}), now=2.0) == [POOL]  # 0 -> 1 again: wake again


def test_stale_reports_stop_counting() -> None:
    book = DemandBook()
    book.record(Report("crashed", {POOL: 4}), now=10.0)
    book.record(Report("alive", {POOL: 1}), now=12.0)
    assert book.held(POOL, 10.0 + MAX_AGE_S) == 5
    assert book.held(POOL, 10.0 + MAX_AGE_S + 0.1) == 1  # the crashed router no longer counts
    assert book.held(POOL, 12.0 + MAX_AGE_S + 0.1) == 0
    assert book.record(Report("alive", {POOL: 1}), now=20.0) == [POOL]  # everything had gone stale: a start
    book.forget(POOL)
    assert book.held(POOL, 20.0) == 0


def test_unknown_pools_are_ignored() -> None:
    book = DemandBook()
    assert book.record(Report("a", {POOL: 1, OTHER: 1}), now=0.0, known=lambda p: p == POOL) == [POOL]
    assert book.held(OTHER, 0.0) == 0


def test_routers_get_the_demand_url_and_the_config_hash_does_not_move(route: LLMRoute,
                                                                       policy: ProviderPolicy) -> None:
    config = compile_route(route, policy)
    url = "http://llmroute-operator.llmroute-system.svc:8082/v1/demand"
    plain = desired_objects(route, config, RouterSettings(image="r:1"))
    told = desired_objects(route, config, RouterSettings(image="r:1", demand_url=url))

    def pod(desired: Desired) -> dict[str, Any]:
        template: dict[str, Any] = next(o for o in desired.objects if o["kind"] == "Deployment")["spec"]["template"]
        return template

    assert {"name": DEMAND_URL_ENV, "value": url} in pod(told)["spec"]["containers"][0]["env"]
    assert DEMAND_URL_ENV not in {e["name"] for e in pod(plain)["spec"]["containers"][0]["env"]}
    assert told.config_hash == plain.config_hash
    assert pod(told)["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == plain.config_hash
