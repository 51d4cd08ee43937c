"""Client authentication and authorization for routes with ``spec.access`` (issue #12): a wrapper of the handlers.

Every request except ``/healthz``, ``/readyz`` and ``/metrics`` (kubelet probes and scrapers, which carry no
credential and learn nothing from a route; their handlers are not wrapped) is checked against the loaded config's
``access`` section with the pure decisions of :mod:`llmroute.core.access`: unauthenticated → 401 with
``WWW-Authenticate: Bearer``, authenticated but not listed → 403, both in OpenAI's error shape, before the body is
read (a refused request with a body closes its connection). A config without ``access`` lets everything through,
as before: such a route relies on NetworkPolicies.

* **Bearer tokens** are read from the files the config names (the route's Secrets, mounted by the operator), at
  most every :data:`TOKEN_RELOAD_S`, and kept only as SHA-256 digests: a rotated Secret is accepted within that
  time plus the kubelet's volume sync, with no rollout. A missing or unreadable file adds no token (fail closed).
  A config compiled from YAML files brings them from its Secret documents instead (``Snapshot.token_digests``).
* **Service account tokens** are verified offline against the issuer keys in the config, parsed once per config.
  A verified token is remembered by its SHA-256 digest until it expires (at most :data:`MAX_VERIFIED` of them,
  forgotten whenever the config's access section changes), so a client reusing its token - the SDK's normal case -
  pays for one signature check, not one per request.
* The verified caller is put on the request (``Request.identity``):
  ``namespace/name`` for a service account, ``token:<secret>/<key>`` for a shared token - never the token - for
  the audit trail. The credential itself is never forwarded: the proxy builds upstream headers from the provider
  key alone.
* Denials are counted in ``llmroute_access_denials_total{reason}`` (a fixed vocabulary; no identity in labels) and
  never logged with the token.

Applied by :class:`llmroute.router.app.RouterApp` through :func:`guarded` to every handler but the exempt ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter

from llmroute.core import access
from llmroute.core.router_config import AccessSettings, RouterConfig, TokenFile
from llmroute.router import audit, metrics
from llmroute.router.http_server import Handler, Request, Response
from llmroute.router.openai_errors import RouterError

log = logging.getLogger("llmroute.router.auth")

TOKEN_RELOAD_S = 5.0
MAX_TOKEN_FILE_BYTES = 4096
MAX_VERIFIED = 4096

DENIALS = Counter(
    "llmroute_access_denials",
    "Requests refused by the route's access rules, by why (401/403).",
    ["reason"],
    registry=metrics.REGISTRY,
)
for _reason in access.Reason:
    DENIALS.labels(_reason.value)



class HasConfig(Protocol):
    @property
    def config(self) -> RouterConfig: ...

    @property
    def hash(self) -> str: ...

    @property
    def token_digests(self) -> Mapping[bytes, str] | None: ...


class Guard:
    """The per-process state behind the access check: token digests (re-read from files) and parsed issuer keys."""

    def __init__(self, clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.clock, self.monotonic = clock, monotonic
        self._files: tuple[TokenFile, ...] = ()
        self._digests: dict[bytes, str] = {}
        self._read_at = float("-inf")
        self._keys_for: object = None
        self._keys: tuple[access.VerificationKey, ...] = ()
        self._verified: dict[bytes, access.Identity] = {}

    def identify(self, settings: AccessSettings, route_namespace: str, authorization: str | None,
                 digests: Mapping[bytes, str] | None = None) -> access.Identity:
        """The allowed caller behind ``authorization``, or :class:`access.Denied`. ``digests``: the bearer tokens when
        the config brought them (its Secret documents); None: read from ``settings``' token files."""
        token = access.bearer_token(authorization)
        if token is None:
            raise access.Denied(
                access.Reason.MISSING,
                "You didn't provide a credential. Send it as "
                "'Authorization: Bearer <token>' (the openai SDK's api_key).",
            )
        identity = self._identity(settings, token, digests)
        if not access.allowed(
            identity,
            route_namespace=route_namespace,
            namespaces=settings.allowed_namespaces,
            service_accounts=settings.allowed_service_accounts,
        ):
            raise access.Denied(
                access.Reason.NOT_ALLOWED,
                f'Service account "{identity.label()}" may not use this '
                "route: it is not in the route's allowedNamespaces or allowedServiceAccounts.",
            )
        return identity

    def _identity(self, settings: AccessSettings, token: str, digests: Mapping[bytes, str] | None) -> access.Identity:
        tokens = self._token_digests(settings.bearer_tokens) if digests is None else digests
        label = access.match_token(token, tokens)
        if label is not None:
            return access.Identity(token=label)
        sa = settings.service_accounts
        if sa is None or not access.looks_like_jwt(token):
            raise access.Denied(access.Reason.UNKNOWN_TOKEN, "The bearer token is not valid for this route.")
        now, keys = self.clock(), self._issuer_keys(settings)
        digest = access.token_digest(token)
        known = self._verified.get(digest)
        if known is not None and access.still_valid(known, now):
            return known
        identity = access.verify_service_account(token, issuer=sa.issuer, audience=sa.audience, keys=keys, now=now)
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.clear()
        self._verified[digest] = identity
        return identity

    def _token_digests(self, files: tuple[TokenFile, ...]) -> dict[bytes, str]:
        now = self.monotonic()
        if files is not self._files or now - self._read_at >= TOKEN_RELOAD_S:
            self._files, self._read_at = files, now
            self._digests = {d: f"{f.secret_name}/{f.secret_key}" for f in files if (d := _digest_of(f)) is not None}
        return self._digests

    def _issuer_keys(self, settings: AccessSettings) -> tuple[access.VerificationKey, ...]:
        sa = settings.service_accounts
        if self._keys_for is not sa:
            self._keys_for, self._keys = sa, access.parse_jwks(sa.keys if sa is not None else ())
            self._verified.clear()  # another issuer, audience or key set: verify again
        return self._keys


def _digest_of(f: TokenFile) -> bytes | None:
    try:
        with Path(f.file).open("rb") as fh:
            raw = fh.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError:
        return None
    token = raw.strip()
    return access.token_digest(token) if token and len(raw) <= MAX_TOKEN_FILE_BYTES else None


def refusal(denied: access.Denied) -> RouterError:
    """The OpenAI-shaped error of a denial: 401 ``invalid_api_key`` (with ``WWW-Authenticate``) or 403."""
    if denied.status == 403:
        return RouterError(403, denied.message, "permission_error", "caller_not_allowed")
    return RouterError(
        401,
        denied.message,
        "invalid_request_error",
        "invalid_api_key",
        headers={"WWW-Authenticate": 'Bearer realm="llmroute"'},
    )


async def _answer(response: Response) -> Response:
    return response


def guarded(current: Callable[[], HasConfig | None], guard: Guard | None = None) -> Callable[[Handler], Handler]:
    """Wraps a handler with the access check; ``current`` returns the loaded snapshot (None before the first
    config). The caller's identity is noted on the request (``Request.identity``) for the audit trail."""
    checks = guard or Guard()

    def wrap(handler: Handler) -> Handler:
        def authenticate(request: Request) -> Awaitable[Response | None]:
            snapshot = current()
            settings = snapshot.config.access if snapshot is not None else None
            if snapshot is None or settings is None:
                return handler(request)  # (its coroutine itself: no frame of ours on each of its wake-ups)
            try:
                identity = checks.identify(
                    settings, snapshot.config.origin.route_namespace, request.headers.get("Authorization"),
                    snapshot.token_digests,
                )
            except access.Denied as denied:
                DENIALS.labels(denied.reason.value).inc()
                error = refusal(denied)
                audit.refused_caller(snapshot.config, snapshot.hash, request.path, error.status, error.code)
                # the unread body must not be taken for the next request
                return _answer(Response.error(error, close=request.body_exists))
            request.identity = identity.label()
            return handler(request)

        return authenticate

    return wrap
