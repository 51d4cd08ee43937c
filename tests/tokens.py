"""Test issuer for projected ServiceAccount tokens: key pairs, their JWKS, and signed tokens (RS256 and ES256).

Shared by the unit tests of :mod:`llmroute.core.access`, the router tests (the real router verifies what this
mints) and the operator tests (the emulated API server publishes this JWKS)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://kubernetes.default.svc.cluster.local"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8 or 1, "big"))


@dataclass
class ClusterIssuer:
    """A cluster's service account issuer: an RSA key (``rsa-1``) and an EC P-256 key (``ec-1``)."""

    url: str = ISSUER
    rsa_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    ec_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def jwks(self) -> dict[str, Any]:
        rn = self.rsa_key.public_key().public_numbers()
        en = self.ec_key.public_key().public_numbers()
        return {
            "keys": [
                {"use": "sig", "kty": "RSA", "kid": "rsa-1", "alg": "RS256", "n": _int(rn.n), "e": _int(rn.e)},
                {
                    "use": "sig",
                    "kty": "EC",
                    "kid": "ec-1",
                    "crv": "P-256",
                    "alg": "ES256",
                    "x": b64(en.x.to_bytes(32, "big")),
                    "y": b64(en.y.to_bytes(32, "big")),
                },
            ]
        }

    def claims(
        self, namespace: str, name: str, audience: str | list[str], now: float, lifetime: float = 3600
    ) -> dict[str, Any]:
        return {
            "iss": self.url,
            "aud": [audience] if isinstance(audience, str) else audience,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + lifetime),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": "u-1"},
                "pod": {"name": "p", "uid": "u-2"},
            },
        }

    def sign(self, claims: dict[str, Any], alg: str = "RS256", kid: str | None = "default") -> str:
        header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            header["kid"] = {"RS256": "rsa-1", "ES256": "ec-1"}.get(alg, "rsa-1") if kid == "default" else kid
        signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}".encode()
        if alg == "ES256":
            r, s = decode_dss_signature(self.ec_key.sign(signed, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        elif alg == "RS256":
            sig = self.rsa_key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            sig = b""
        return f"{signed.decode()}.{b64(sig)}"

    def token(
        self,
        namespace: str,
        name: str,
        audience: str | list[str],
        now: float,
        *,
        alg: str = "RS256",
        lifetime: float = 3600,
        **overrides: Any,
    ) -> str:
        claims = {**self.claims(namespace, name, audience, now, lifetime), **overrides}
        return self.sign(claims, alg)
