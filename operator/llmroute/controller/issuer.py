"""The cluster's service account issuer and its public keys, for routes that accept ServiceAccount tokens.

Routers verify projected ServiceAccount tokens **offline** (:mod:`llmroute.core.access`), so they need no Kubernetes
API access at all (no TokenReview, ``automountServiceAccountToken: false``). What they verify against comes from
here: the issuer URL from ``/.well-known/openid-configuration`` and the keys from ``/openid/v1/jwks``, both served by
the API server to every service account (the default ``system:service-account-issuer-discovery`` binding). Only the
public parts of each key are kept (a JWKS has no private parts; anything else is dropped anyway).

Read only when some route has ``spec.access.serviceAccounts``, then at most once per :data:`TTL_S` (and
:data:`RETRY_S` after a failure); a failed read keeps the last good keys. Without any, such a route's router refuses
every service account token (fail closed) until they can be read. Keys go into the router config but not its hash,
so an issuer key rotation reaches routers by live reload (:mod:`llmroute.core.router_config`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import kopf

from llmroute.controller.kube import Kube
from llmroute.core.compile import Issuer

logger = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
TTL_S = 600.0
RETRY_S = 30.0
PUBLIC_FIELDS = ("kty", "kid", "use", "alg", "n", "e", "crv", "x", "y")


def public_keys(jwks: Any) -> tuple[dict[str, str], ...]:
    """The public fields of each key of a JWKS document (strings only)."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    return tuple(
        {f: k[f] for f in PUBLIC_FIELDS if isinstance(k.get(f), str)}
        for k in (keys if isinstance(keys, list) else [])
        if isinstance(k, dict)
    )


class IssuerKeys:
    """The issuer and its keys, re-read at most every :data:`TTL_S`; shared by all routes (``memo.issuer``)."""

    def __init__(self, kube: Kube, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.clock = kube, clock
        self._value: Issuer | None = None
        self._next = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> Issuer | None:
        if self.clock() < self._next:
            return self._value
        async with self._lock:
            if self.clock() >= self._next:
                await self._refresh()
        return self._value

    async def _refresh(self) -> None:
        try:
            discovery = await self.kube.read_path(DISCOVERY_PATH)
            jwks = await self.kube.read_path(JWKS_PATH)
        except kopf.TemporaryError as exc:
            logger.warning("service account issuer keys unreadable, keeping the last ones: %s", exc)
            self._next = self.clock() + RETRY_S
            return
        url = discovery.get("issuer") if isinstance(discovery, dict) else None
        keys = public_keys(jwks)
        if isinstance(url, str) and url and keys:
            self._value, self._next = Issuer(url=url, keys=keys), self.clock() + TTL_S
        else:
            logger.warning(
                "the API server serves no service account issuer keys (%s, %s); routes with "
                "serviceAccounts refuse every service account token",
                DISCOVERY_PATH,
                JWKS_PATH,
            )
            self._next = self.clock() + RETRY_S
