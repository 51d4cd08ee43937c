"""controller.issuer: public fields only, read at most once per TTL, a failed read keeps the last good keys and
retries sooner, an API server without issuer keys gives None (routers then refuse service account tokens)."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from llmroute.controller import issuer as issuer_mod
from llmroute.controller.issuer import DISCOVERY_PATH, JWKS_PATH, IssuerKeys, public_keys
from tests.tokens import ClusterIssuer

pytestmark = pytest.mark.unit


class FakeKube:
    def __init__(self, docs: dict[str, Any]) -> None:
        self.docs, self.reads, self.fail = docs, 0, False

    async def read_path(self, path: str) -> Any:
        self.reads += 1
        if self.fail:
            raise kopf.TemporaryError("GET: HTTP 500")
        return self.docs.get(path)


def test_public_keys_keep_only_public_string_fields() -> None:
    jwks = {
        "keys": [
            {"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB", "d": "private", "x5c": ["cert"]},
            "junk",
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": 7},
        ]
    }
    assert public_keys(jwks) == (
        {"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
    )
    assert public_keys(None) == () and public_keys({"keys": "x"}) == ()


async def test_cached_for_the_ttl_and_last_good_kept_on_failure() -> None:
    cluster = ClusterIssuer()
    now = [0.0]
    kube = FakeKube({DISCOVERY_PATH: {"issuer": cluster.url}, JWKS_PATH: cluster.jwks()})
    keys = IssuerKeys(kube, clock=lambda: now[0])  # type: ignore[arg-type]
    first = await keys.get()
    assert first is not None and first.url == cluster.url and first.keys == tuple(cluster.jwks()["keys"])
    assert await keys.get() is first and kube.reads == 2
    now[0] = issuer_mod.TTL_S
    kube.fail = True
    assert await keys.get() is first  # unreadable: the last good keys stay
    now[0] += issuer_mod.RETRY_S - 1
    reads = kube.reads
    assert await keys.get() is first and kube.reads == reads  # and the retry waits RETRY_S


async def test_no_issuer_served_is_none() -> None:
    assert await IssuerKeys(FakeKube({})).get() is None  # type: ignore[arg-type]
    assert await IssuerKeys(FakeKube({DISCOVERY_PATH: {"issuer": "https://x"}, JWKS_PATH: {"keys": []}})).get() is None  # type: ignore[arg-type]
