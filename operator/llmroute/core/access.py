"""Who may use a route: the pure decisions behind LLMRoute ``spec.access`` (issue #12).

The router answers three questions per request, all here as plain functions (no I/O, ``now`` passed in), so each is
unit-tested on its own and :mod:`llmroute.router.auth` only wires them to HTTP:

1. **Which credential?** :func:`bearer_token` reads ``Authorization: Bearer <token>`` (what the openai SDK sends for
   ``api_key``).
2. **Who is it?** A shared token is matched against the SHA-256 digests of the tokens in the route's Secrets
   (:func:`match_token`: every digest is compared, each in constant time, so timing tells nothing about which
   or how much matched); the router never keeps a token itself. Otherwise a projected ServiceAccount token is
   verified **offline** (:func:`verify_service_account`): RS256/ES256 signature against the cluster issuer's public
   keys (JWKS, which the operator fetches and writes into the router config), issuer, audience (the route's),
   expiry and not-before with :data:`SKEW_S` of clock skew, and the ``kubernetes.io`` claims (namespace and service
   account name, which must agree with ``sub``). No TokenReview: the router needs no Kubernetes API permission.
3. **May it call?** :func:`allowed`: a shared token is its own permission (the route owner handed it out); a
   service account must be listed in ``allowedServiceAccounts`` (``ns/name`` or ``ns/*``) or its namespace in
   ``allowedNamespaces``; with neither list, only the route's own namespace (least privilege: any workload in the
   cluster can mint a token for any audience).

Failures are :class:`Denied` with a :class:`Reason` from a fixed vocabulary (a metrics label) and a message that
never contains the token. :func:`ingress_namespaces` is the NetworkPolicy's view of the same lists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

SKEW_S = 30.0
"""Clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""
MAX_TOKEN_CHARS = 16 * 1024
"""Longer credentials are refused unparsed (a projected token is ~1 KiB)."""
ALGORITHMS = ("RS256", "ES256")
SA_CLAIMS = "kubernetes.io"


class Reason(StrEnum):
    """Why a request was refused (``llmroute_access_denials_total{reason}``); 401 for all but ``not_allowed``."""

    MISSING = "missing"  # no Authorization: Bearer
    UNKNOWN_TOKEN = "unknown_token"  # neither a configured token nor a service account token
    MALFORMED = "malformed"  # looked like a JWT but was not one
    SIGNATURE = "signature"  # bad signature, unknown key, disallowed algorithm, no issuer keys
    ISSUER = "issuer"
    AUDIENCE = "audience"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    CLAIMS = "claims"  # kubernetes.io claims missing or inconsistent with sub
    NOT_ALLOWED = "not_allowed"  # authenticated, but not listed (403)


class Denied(Exception):
    """The request is refused; ``message`` is safe to send to the client (no token, no key material)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message

    @property
    def status(self) -> int:
        return 403 if self.reason is Reason.NOT_ALLOWED else 401


@dataclass(frozen=True)
class Identity:
    """A verified caller: a service account (``namespace``/``name``) or a shared token (``token`` = its Secret and
    key, never the value). :meth:`label` is what audit lines and ``request["llmroute.identity"]`` carry."""

    namespace: str | None = None
    name: str | None = None
    token: str | None = None
    expires_at: float | None = field(default=None, compare=False)
    """A service account token's ``exp``: until when a verified token may be taken again without re-verifying."""

    def label(self) -> str:
        return f"token:{self.token}" if self.token is not None else f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class VerificationKey:
    """One issuer public key, parsed once per config."""

    kid: str | None
    algorithm: str  # RS256 or ES256: the only one this key may verify (no algorithm confusion)
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def default_audience(namespace: str, name: str) -> str:
    """The audience a route's service account tokens must carry unless ``serviceAccounts.audience`` says otherwise."""
    return f"llmroute.io/{namespace}/{name}"


def token_digest(token: str | bytes) -> bytes:
    """SHA-256 of a token: all the router keeps of it."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def match_token(token: str, digests: Mapping[bytes, str]) -> str | None:
    """The label of the configured token equal to ``token``, comparing its digest with **every** configured digest
    in constant time (no early exit); None when none matches."""
    presented = token_digest(token)
    found: str | None = None
    for digest, label in digests.items():
        if hmac.compare_digest(presented, digest):
            found = label
    return found


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def parse_jwks(jwks: Iterable[Mapping[str, Any]]) -> tuple[VerificationKey, ...]:
    """Public keys usable for RS256 (``kty: RSA``) or ES256 (``kty: EC``, ``crv: P-256``); others are skipped, so
    an issuer that adds a new key type breaks nothing."""
    keys = []
    for jwk in jwks:
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            if jwk.get("kty") == "RSA" and jwk.get("alg", "RS256") == "RS256":
                pub: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = rsa.RSAPublicNumbers(
                    _b64int(jwk["e"]), _b64int(jwk["n"])
                ).public_key()
                keys.append(VerificationKey(jwk.get("kid"), "RS256", pub))
            elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256" and jwk.get("alg", "ES256") == "ES256":
                pub = ec.EllipticCurvePublicNumbers(_b64int(jwk["x"]), _b64int(jwk["y"]), ec.SECP256R1()).public_key()
                keys.append(VerificationKey(jwk.get("kid"), "ES256", pub))
        except (KeyError, ValueError, TypeError):
            continue
    return tuple(keys)


def verify_service_account(
    token: str,
    *,
    issuer: str | None,
    audience: str,
    keys: Sequence[VerificationKey],
    now: float,
    skew_s: float = SKEW_S,
) -> Identity:
    """The service account a projected token proves, or :class:`Denied` saying why not."""
    if len(token) > MAX_TOKEN_CHARS:
        raise Denied(Reason.MALFORMED, "The bearer token is too long.")
    header, claims, signed, signature = _decode(token)
    _check_signature(header, signed, signature, keys, issuer)
    if claims.get("iss") != issuer:
        raise Denied(Reason.ISSUER, "The service account token was not issued by this cluster's issuer.")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise Denied(
            Reason.AUDIENCE, f'The service account token is not for this route (audience must be "{audience}").'
        )
    _check_times(claims, now, skew_s)
    return _service_account(claims)


def still_valid(identity: Identity, now: float, skew_s: float = SKEW_S) -> bool:
    """Whether a token verified earlier (``identity`` from :func:`verify_service_account`) has not expired since:
    its signature, issuer, audience and not-before cannot change, so a verifier may remember it by digest until
    then (an RS256 check costs ~0.1 ms, ES256 ~0.4 ms)."""
    return identity.expires_at is not None and now < identity.expires_at + skew_s


def allowed(
    identity: Identity, *, route_namespace: str, namespaces: Sequence[str], service_accounts: Sequence[str]
) -> bool:
    """Whether ``identity`` may call. Shared tokens always may; a service account by its namespace or its
    ``ns/name`` / ``ns/*`` entry; with both lists empty, only service accounts of ``route_namespace``."""
    if identity.token is not None:
        return True
    if not namespaces and not service_accounts:
        return identity.namespace == route_namespace
    if identity.namespace in namespaces:
        return True
    return f"{identity.namespace}/{identity.name}" in service_accounts or f"{identity.namespace}/*" in service_accounts


def ingress_namespaces(
    route_namespace: str, *, service_accounts: bool, namespaces: Sequence[str], allowed_service_accounts: Sequence[str]
) -> tuple[str, ...] | None:
    """Namespaces a router's NetworkPolicy admits clients from; None means every namespace (a route without
    ``access``, or with shared tokens only and no ``allowedNamespaces``)."""
    listed = [*namespaces, *(sa.partition("/")[0] for sa in allowed_service_accounts)]
    if listed:
        return tuple(sorted(set(listed)))
    return (route_namespace,) if service_accounts else None


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64int(text: Any) -> int:
    if not isinstance(text, str):
        raise TypeError("not a string")
    return int.from_bytes(_b64(text), "big")


def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    parts = token.split(".")
    if len(parts) != 3:
        raise Denied(Reason.MALFORMED, "The bearer token is not a JSON Web Token.")
    try:
        header, claims = json.loads(_b64(parts[0])), json.loads(_b64(parts[1]))
        signature = _b64(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Denied(Reason.MALFORMED, "The bearer token is not a valid JSON Web Token.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Denied(Reason.MALFORMED, "The bearer token is not a valid JSON Web Token.")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii", "replace"), signature


def _check_signature(
    header: Mapping[str, Any], signed: bytes, signature: bytes, keys: Sequence[VerificationKey], issuer: str | None
) -> None:
    if issuer is None or not keys:
        raise Denied(
            Reason.SIGNATURE,
            "Service account tokens cannot be verified: the router has no issuer keys "
            "(the operator could not read the cluster's service account issuer).",
        )
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise Denied(Reason.SIGNATURE, f"Token signing algorithm not accepted (accepted: {', '.join(ALGORITHMS)}).")
    kid = header.get("kid")
    candidates = [k for k in keys if k.algorithm == alg and (kid is None or k.kid == kid)]
    if not candidates:
        raise Denied(Reason.SIGNATURE, "The token is signed by a key this cluster's issuer does not publish.")
    if any(_signed_by(k, signed, signature) for k in candidates):
        return
    raise Denied(Reason.SIGNATURE, "The token signature is not valid.")


def _signed_by(key: VerificationKey, signed: bytes, signature: bytes) -> bool:
    try:
        if isinstance(key.key, rsa.RSAPublicKey):
            key.key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            if len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Denied(Reason.MALFORMED, f"The token's {name} claim is not a number.")
    return float(value)


def _check_times(claims: Mapping[str, Any], now: float, skew_s: float) -> None:
    exp, nbf, iat = _number(claims, "exp"), _number(claims, "nbf"), _number(claims, "iat")
    if exp is None:
        raise Denied(Reason.CLAIMS, "The token has no expiry (exp); use a projected service account token.")
    if now >= exp + skew_s:
        raise Denied(Reason.EXPIRED, "The service account token has expired.")
    if (nbf is not None and now < nbf - skew_s) or (iat is not None and now < iat - skew_s):
        raise Denied(Reason.NOT_YET_VALID, "The service account token is not valid yet.")


def _service_account(claims: Mapping[str, Any]) -> Identity:
    k8s = claims.get(SA_CLAIMS)
    sa = k8s.get("serviceaccount") if isinstance(k8s, dict) else None
    namespace = k8s.get("namespace") if isinstance(k8s, dict) else None
    name = sa.get("name") if isinstance(sa, dict) else None
    if not isinstance(namespace, str) or not isinstance(name, str) or not namespace or not name:
        raise Denied(Reason.CLAIMS, "The token carries no service account (kubernetes.io claims).")
    if claims.get("sub") != f"system:serviceaccount:{namespace}:{name}":
        raise Denied(Reason.CLAIMS, "The token's subject does not match its service account.")
    return Identity(namespace=namespace, name=name, expires_at=_number(claims, "exp"))
