"""llmroute.core.access: bearer parsing, token digests, offline service account token verification, the allow
decision and the NetworkPolicy namespaces; compile of ``spec.access`` (files, not tokens; keys out of the hash)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core import access
from llmroute.core.access import Denied, Identity, Reason
from llmroute.core.compile import Issuer, compile_route
from llmroute.core.router_config import TOKENS_DIR
from tests.tokens import ClusterIssuer, b64

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
AUD = "llmroute.io/apps/chat"


@pytest.fixture(scope="module")
def issuer() -> ClusterIssuer:
    return ClusterIssuer()


@pytest.fixture(scope="module")
def keys(issuer: ClusterIssuer) -> tuple[access.VerificationKey, ...]:
    return access.parse_jwks(issuer.jwks()["keys"])


def verify(
    token: str,
    keys: tuple[access.VerificationKey, ...],
    *,
    now: float = NOW,
    issuer: str | None = None,
    audience: str = AUD,
) -> Identity:
    return access.verify_service_account(
        token, issuer=issuer or ClusterIssuer.url, audience=audience, keys=keys, now=now
    )


def denied(token: str, keys: tuple[access.VerificationKey, ...], **kw: Any) -> Reason:
    with pytest.raises(Denied) as exc:
        verify(token, keys, **kw)
    assert token not in exc.value.message
    return exc.value.reason


# --- credentials and digests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic YTpi", None),
        ("abc", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert access.bearer_token(header) == token


def test_token_digest_is_sha256_and_match_finds_only_equal_tokens() -> None:
    digests = {access.token_digest("s3cret-one"): "a/token", access.token_digest(b"s3cret-two"): "b/token"}
    assert access.token_digest("x") == bytes.fromhex("2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")
    assert access.match_token("s3cret-one", digests) == "a/token"
    assert access.match_token("s3cret-two", digests) == "b/token"
    assert access.match_token("s3cret-on", digests) is None
    assert access.match_token("", digests) is None
    assert access.match_token("s3cret-one", {}) is None


# --- service account tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_valid_token_gives_the_service_account(issuer: ClusterIssuer, keys: Any, alg: str) -> None:
    token = issuer.token("team-a", "ingest", AUD, NOW - 60, alg=alg)
    assert verify(token, keys) == Identity(namespace="team-a", name="ingest")
    assert verify(token, keys).label() == "team-a/ingest"


def test_audience_may_be_one_of_several(issuer: ClusterIssuer, keys: Any) -> None:
    token = issuer.token("team-a", "ingest", ["https://kubernetes.default.svc", AUD], NOW)
    assert verify(token, keys).name == "ingest"
    assert denied(issuer.token("team-a", "ingest", "llmroute.io/apps/other", NOW), keys) is Reason.AUDIENCE
    assert verify(issuer.token("team-a", "ingest", AUD, NOW, aud=AUD), keys).name == "ingest"  # a plain string
    assert denied(issuer.token("team-a", "ingest", AUD, NOW, aud=None), keys) is Reason.AUDIENCE
    assert denied(issuer.token("team-a", "ingest", AUD, NOW, aud={"x": AUD}), keys) is Reason.AUDIENCE


def test_times_with_skew(issuer: ClusterIssuer, keys: Any) -> None:
    token = issuer.token("a", "b", AUD, NOW - 3600, lifetime=3600)  # exp == NOW
    assert verify(token, keys, now=NOW + access.SKEW_S - 1).namespace == "a"
    assert denied(token, keys, now=NOW + access.SKEW_S) is Reason.EXPIRED
    future = issuer.token("a", "b", AUD, NOW + 120)
    assert denied(future, keys) is Reason.NOT_YET_VALID
    assert verify(future, keys, now=NOW + 120 - access.SKEW_S + 1).name == "b"
    no_exp = issuer.sign({k: v for k, v in issuer.claims("a", "b", AUD, NOW).items() if k != "exp"})
    assert denied(no_exp, keys) is Reason.CLAIMS
    assert denied(issuer.token("a", "b", AUD, NOW, exp="tomorrow"), keys) is Reason.MALFORMED


def test_issuer_must_match(issuer: ClusterIssuer, keys: Any) -> None:
    token = issuer.token("a", "b", AUD, NOW, iss="https://evil.example")
    assert denied(token, keys) is Reason.ISSUER
    assert denied(issuer.token("a", "b", AUD, NOW), keys, issuer="https://other.example") is Reason.ISSUER


def test_signature_must_verify_with_a_published_key(issuer: ClusterIssuer, keys: Any) -> None:
    other = ClusterIssuer()
    assert denied(other.token("a", "b", AUD, NOW), keys) is Reason.SIGNATURE  # same kid, other key
    assert denied(other.token("a", "b", AUD, NOW, alg="ES256"), keys) is Reason.SIGNATURE
    header, _claims, sig = issuer.token("a", "b", AUD, NOW).split(".")
    forged = b64(
        json.dumps(
            {
                **issuer.claims("a", "b", AUD, NOW),
                "kubernetes.io": {"namespace": "kube-system", "serviceaccount": {"name": "admin"}},
            }
        ).encode()
    )
    assert denied(f"{header}.{forged}.{sig}", keys) is Reason.SIGNATURE  # claims changed after signing
    assert denied(issuer.sign(issuer.claims("a", "b", AUD, NOW), alg="none"), keys) is Reason.SIGNATURE
    assert denied(issuer.sign(issuer.claims("a", "b", AUD, NOW), alg="HS256"), keys) is Reason.SIGNATURE
    assert denied(issuer.sign(issuer.claims("a", "b", AUD, NOW), kid="unknown"), keys) is Reason.SIGNATURE
    assert verify(issuer.sign(issuer.claims("a", "b", AUD, NOW), kid=None), keys).name == "b"  # no kid: try all


def test_rs256_header_cannot_use_the_ec_key_and_vice_versa(issuer: ClusterIssuer, keys: Any) -> None:
    es = issuer.token("a", "b", AUD, NOW, alg="ES256")
    header = b64(json.dumps({"alg": "RS256", "kid": "ec-1"}).encode())
    assert denied(header + es[es.index(".") :], keys) is Reason.SIGNATURE


def test_no_issuer_keys_fails_closed(issuer: ClusterIssuer) -> None:
    token = issuer.token("a", "b", AUD, NOW)
    assert denied(token, ()) is Reason.SIGNATURE
    with pytest.raises(Denied) as exc:
        access.verify_service_account(
            token, issuer=None, audience=AUD, keys=access.parse_jwks(issuer.jwks()["keys"]), now=NOW
        )
    assert exc.value.reason is Reason.SIGNATURE


def test_kubernetes_claims_are_required_and_must_match_sub(issuer: ClusterIssuer, keys: Any) -> None:
    assert (
        denied(issuer.token("a", "b", AUD, NOW, sub="system:serviceaccount:kube-system:admin"), keys) is Reason.CLAIMS
    )
    assert denied(issuer.token("a", "b", AUD, NOW, **{"kubernetes.io": {"namespace": "a"}}), keys) is Reason.CLAIMS
    assert denied(issuer.token("a", "b", AUD, NOW, **{"kubernetes.io": "a"}), keys) is Reason.CLAIMS


@pytest.mark.parametrize(
    "token", ["a.b.c", "eyJ.eyJ.x", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "x" * 20000, "eyJbXQ.eyJbXQ.c2ln"]
)
def test_garbage_is_malformed_never_an_exception(keys: Any, token: str) -> None:
    assert denied(token, keys) is Reason.MALFORMED


def test_jwks_parsing_skips_unusable_keys(issuer: ClusterIssuer) -> None:
    jwks = [
        *issuer.jwks()["keys"],
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "broken"},
        {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
    ]
    assert [(k.kid, k.algorithm) for k in access.parse_jwks(jwks)] == [("rsa-1", "RS256"), ("ec-1", "ES256")]


# --- the allow decision and NetworkPolicy namespaces ------------------------------------------------------------


SA = Identity(namespace="team-a", name="ingest")


@pytest.mark.parametrize(
    ("identity", "namespaces", "accounts", "ok"),
    [
        (Identity(token="chat-token/token"), [], [], True),  # a shared token is its own permission
        (Identity(token="chat-token/token"), ["elsewhere"], [], True),
        (SA, [], [], False),  # no lists: the route's own namespace only
        (Identity(namespace="apps", name="web"), [], [], True),
        (SA, ["team-a"], [], True),
        (SA, ["team-b"], [], False),
        (SA, [], ["team-a/ingest"], True),
        (SA, [], ["team-a/*"], True),
        (SA, [], ["team-a/other", "team-b/*"], False),
        (Identity(namespace="apps", name="web"), ["team-a"], [], False),  # lists replace the own-namespace default
    ],
)
def test_allowed(identity: Identity, namespaces: list[str], accounts: list[str], ok: bool) -> None:
    assert access.allowed(identity, route_namespace="apps", namespaces=namespaces, service_accounts=accounts) is ok


def test_ingress_namespaces() -> None:
    assert access.ingress_namespaces("apps", service_accounts=False, namespaces=[], allowed_service_accounts=[]) is None
    assert access.ingress_namespaces("apps", service_accounts=True, namespaces=[], allowed_service_accounts=[]) == (
        "apps",
    )
    assert access.ingress_namespaces(
        "apps", service_accounts=True, namespaces=["b", "a"], allowed_service_accounts=["c/x", "a/*"]
    ) == ("a", "b", "c")


# --- compile ----------------------------------------------------------------------------------------------------


def with_access(route_doc: dict[str, Any], spec: dict[str, Any]) -> LLMRoute:
    return LLMRoute.model_validate({**route_doc, "spec": {**route_doc["spec"], "access": spec}})


def test_compile_carries_files_and_issuer_keys_never_tokens(
    route_doc: dict[str, Any], policy: ProviderPolicy, issuer: ClusterIssuer
) -> None:
    route = with_access(
        route_doc,
        {
            "bearerTokens": [{"secretRef": {"name": "chat-token"}}, {"secretRef": {"name": "batch", "key": "nightly"}}],
            "serviceAccounts": {},
            "allowedServiceAccounts": ["team-a/*"],
        },
    )
    keys = tuple(issuer.jwks()["keys"])
    config = compile_route(route, policy, Issuer(url=issuer.url, keys=keys))
    assert config.access is not None
    ns, name = route.metadata.namespace, route.metadata.name
    assert [t.file for t in config.access.bearer_tokens] == [
        f"{TOKENS_DIR}/chat-token/token",
        f"{TOKENS_DIR}/batch/nightly",
    ]
    sa = config.access.service_accounts
    assert sa is not None and sa.audience == f"llmroute.io/{ns}/{name}" and sa.issuer == issuer.url
    assert sa.keys == keys
    assert config.access.allowed_service_accounts == ("team-a/*",)
    # issuer key rotation must not roll the router; everything else about access does
    rotated = compile_route(route, policy, Issuer(url=issuer.url, keys=tuple(ClusterIssuer().jwks()["keys"])))
    assert rotated.content_hash() == config.content_hash() and rotated.to_json() != config.to_json()
    assert compile_route(route, policy).content_hash() != config.content_hash()  # issuer unknown -> fail closed
    assert compile_route(route, policy).access.service_accounts.keys == ()  # type: ignore[union-attr]


def test_route_without_access_compiles_as_before(route: LLMRoute, policy: ProviderPolicy) -> None:
    config = compile_route(route, policy)
    assert config.access is None and "access" not in config.wire()
