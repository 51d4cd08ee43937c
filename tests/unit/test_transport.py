"""Which upstreams have weakened transport security (:func:`llmroute.core.transport.weaknesses`): plaintext outside
the cluster, a replaced trust store; loopback, self-hosted and pool providers are not flagged."""

from __future__ import annotations

import pytest

from llmroute.core.router_config import HealthProbe, PoolTarget, ProviderTarget
from llmroute.core.transport import Reason, weaknesses

pytestmark = pytest.mark.unit
HEALTH = HealthProbe(path="/models", interval_s=10, timeout_s=2, failure_threshold=3, success_threshold=1)


def target(name: str, endpoint: str, **kw: object) -> ProviderTarget:
    return ProviderTarget(name=name, endpoint=endpoint, api="openai", jurisdiction="US", health=HEALTH, **kw)


PROVIDERS = [
    target("hosted", "https://api.example.com/v1"),
    target("plain", "http://api.example.com/v1"),
    target("plain-ip", "http://10.1.2.3:8000/v1"),
    target("loopback", "http://127.0.0.1:9000/v1"),
    target("loopback6", "http://[::1]:9000/v1"),
    target("localhost", "http://localhost:9000/v1"),
    target("in-cluster", "http://vllm.llm.svc:8000/v1", self_hosted=True),
    target(
        "pool",
        "http://pool.llm.svc:8000/v1",
        pool=PoolTarget(name="p", namespace="llm", pods_host="p.llm.svc", port=8000),
    ),
]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, [("plain", Reason.PLAINTEXT), ("plain-ip", Reason.PLAINTEXT)]),
        ({"SSL_CERT_FILE": ""}, [("plain", Reason.PLAINTEXT), ("plain-ip", Reason.PLAINTEXT)]),
        (
            {"SSL_CERT_DIR": "/etc/private-ca"},
            [("hosted", Reason.CUSTOM_TRUST_STORE), ("plain", Reason.PLAINTEXT), ("plain-ip", Reason.PLAINTEXT)],
        ),
        ({"PYTHONHTTPSVERIFY": "0"}, [("plain", Reason.PLAINTEXT), ("plain-ip", Reason.PLAINTEXT)]),
    ],
    ids=["default", "empty-variable", "ca-dir", "pythonhttpsverify-ignored"],
)
def test_weaknesses(env: dict[str, str], expected: list[tuple[str, Reason]]) -> None:
    assert [(p, r) for p, r, _ in weaknesses(PROVIDERS, env)] == expected


def test_the_reason_names_the_trust_store_and_never_a_path_component_of_the_url() -> None:
    found = weaknesses([target("k", "http://api.example.com/v1?key=secret")], {})
    assert found[0][2].startswith("endpoint http://api.example.com is not HTTPS") and "secret" not in found[0][2]
    (why,) = [w for _, _, w in weaknesses(PROVIDERS[:1], {"SSL_CERT_FILE": "/ca.pem"})]
    assert "SSL_CERT_FILE=/ca.pem" in why
