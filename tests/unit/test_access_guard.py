"""router.auth.Guard, the router's per-process access state, with clocks passed in: token files re-read (rotation,
missing files refuse), verified service account tokens remembered by digest only until they expire and forgotten
when the issuer keys change, and the allow decision applied on every request, cached or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmroute.core import access
from llmroute.core.access import Denied, Reason
from llmroute.core.router_config import AccessSettings, ServiceAccountVerification, TokenFile
from llmroute.router.auth import TOKEN_RELOAD_S, Guard
from tests.tokens import ClusterIssuer

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
AUD = "llmroute.io/apps/chat"


class Clock:
    def __init__(self) -> None:
        self.wall, self.mono = NOW, 0.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def settings(issuer: ClusterIssuer, token_file: Path | None = None, **kw: object) -> AccessSettings:
    files = (TokenFile(secret_name="chat-token", secret_key="token", file=str(token_file)),) if token_file else ()
    sa = ServiceAccountVerification(audience=AUD, issuer=issuer.url, keys=tuple(issuer.jwks()["keys"]))
    return AccessSettings(bearer_tokens=files, service_accounts=sa, **kw)  # type: ignore[arg-type]


def reason(guard: Guard, s: AccessSettings, token: str | None) -> Reason:
    with pytest.raises(Denied) as exc:
        guard.identify(s, "apps", None if token is None else f"Bearer {token}")
    return exc.value.reason


def test_token_files_are_reread_and_a_missing_file_refuses(tmp_path: Path) -> None:
    clock, issuer = Clock(), ClusterIssuer()
    guard = Guard(clock=lambda: clock.wall, monotonic=lambda: clock.mono)
    token = tmp_path / "token"
    token.write_text("first-token\n")
    s = settings(issuer, token)
    assert guard.identify(s, "apps", "Bearer first-token").label() == "token:chat-token/token"
    token.write_text("second-token")
    assert guard.identify(s, "apps", "Bearer first-token").token is not None  # not re-read yet
    clock.advance(TOKEN_RELOAD_S)
    assert reason(guard, s, "first-token") is Reason.UNKNOWN_TOKEN
    assert guard.identify(s, "apps", "Bearer second-token").token == "chat-token/token"
    token.unlink()
    clock.advance(TOKEN_RELOAD_S)
    assert reason(guard, s, "second-token") is Reason.UNKNOWN_TOKEN
    assert reason(guard, s, None) is Reason.MISSING


def test_verified_tokens_are_remembered_until_expiry_only() -> None:
    clock, issuer = Clock(), ClusterIssuer()
    guard = Guard(clock=lambda: clock.wall, monotonic=lambda: clock.mono)
    s = settings(issuer)
    token = issuer.token("apps", "web", AUD, NOW, lifetime=600)
    assert guard.identify(s, "apps", f"Bearer {token}").label() == "apps/web"
    clock.advance(600 + access.SKEW_S - 1)
    assert guard.identify(s, "apps", f"Bearer {token}").name == "web"
    clock.advance(1)
    assert reason(guard, s, token) is Reason.EXPIRED


def test_new_issuer_keys_forget_what_was_verified() -> None:
    clock, issuer = Clock(), ClusterIssuer()
    guard = Guard(clock=lambda: clock.wall, monotonic=lambda: clock.mono)
    token = issuer.token("apps", "web", AUD, NOW)
    assert guard.identify(settings(issuer), "apps", f"Bearer {token}").name == "web"
    rotated = settings(ClusterIssuer())  # the issuer's keys were rotated: the old signature no longer verifies
    assert reason(guard, rotated, token) is Reason.SIGNATURE


def test_allow_lists_apply_to_remembered_tokens_too() -> None:
    clock, issuer = Clock(), ClusterIssuer()
    guard = Guard(clock=lambda: clock.wall, monotonic=lambda: clock.mono)
    token = issuer.token("team-a", "web", AUD, NOW)
    open_to_a = settings(issuer, allowed_namespaces=("team-a",))
    assert guard.identify(open_to_a, "apps", f"Bearer {token}").namespace == "team-a"
    narrowed = open_to_a.model_copy(update={"allowed_namespaces": ("team-b",)})
    assert reason(guard, narrowed, token) is Reason.NOT_ALLOWED
