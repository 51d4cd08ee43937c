"""Who may use a route, through the real router process and the official openai SDK (``api_key`` is the bearer
token): shared tokens from mounted Secret files (rotated without a restart), projected ServiceAccount tokens
verified offline against the issuer keys in the compiled config, allow lists; 401/403 in OpenAI's shape; the client's
credential never reaches a provider; denials counted by reason only."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core.compile import Issuer, compile_route
from llmroute.router.auth import TOKEN_RELOAD_S
from tests.figures import record
from tests.tokens import ClusterIssuer

from .conftest import KEYS, MESSAGES, PROVIDERS, Hub, RouterProcess, config_docs, policy_doc, route_doc, write_config

pytestmark = pytest.mark.router

TOKEN = "llmr-team-token-4f9d2c7a1b"
ROTATED = "llmr-team-token-rotated-77e1"
ACCESS = {
    "bearerTokens": [{"secretRef": {"name": "chat-token"}}],
    "serviceAccounts": {},
    "allowedNamespaces": ["team-a"],
    "allowedServiceAccounts": ["team-b/ingest"],
}
AUDIENCE = "llmroute.io/llm/chat"  # the default: llmroute.io/<namespace>/<name>


class Secured:
    """A router for a route with ``spec.access``, and what it was configured with."""

    def __init__(self, proc: RouterProcess, issuer: ClusterIssuer, token_file: Path) -> None:
        self.proc, self.issuer, self.token_file = proc, issuer, token_file

    def client(self, api_key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.proc.url + "/v1", api_key=api_key, max_retries=0, timeout=15)

    def sa_token(self, namespace: str, name: str, *, audience: str = AUDIENCE, **kw: Any) -> str:
        return self.issuer.token(namespace, name, audience, time.time() - 5, **kw)

    def chat(self, api_key: str) -> str:
        with self.client(api_key) as c:
            reply = c.chat.completions.create(model="deepseek-chat", messages=MESSAGES)  # type: ignore[arg-type]
        return reply.choices[0].message.content or ""

    def wait_accepted(self, api_key: str, within_s: float, what: str) -> None:
        """Until ``api_key`` is accepted (a rotation reaching the router); fails naming ``what`` after ``within_s``."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                assert self.chat(api_key)
                return
            except openai.AuthenticationError:
                assert time.monotonic() < deadline, f"{what} was not picked up"
                time.sleep(0.1)

    def raw(self, path: str, headers: dict[str, str], body: bytes | None = b"{}") -> tuple[int, dict[str, str], Any]:
        req = urllib.request.Request(
            self.proc.url + path, data=body, headers=headers, method="POST" if body is not None else "GET"
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def write_secured_config(hub: Hub, folder: Path, issuer: ClusterIssuer) -> tuple[Path, Path, Path]:
    """A compiled RouterConfig (as the operator writes it) with the token file and provider keys in ``folder``."""
    route_spec = {**route_doc()["spec"], "access": ACCESS}
    route = LLMRoute.model_validate({**route_doc(), "spec": route_spec})
    config = compile_route(
        route, ProviderPolicy.model_validate(policy_doc(hub)), Issuer(url=issuer.url, keys=tuple(issuer.jwks()["keys"]))
    )
    token_file = folder / "tokens" / "chat-token" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(TOKEN + "\n")
    assert config.access is not None
    files = tuple(t.model_copy(update={"file": str(token_file)}) for t in config.access.bearer_tokens)
    config = config.model_copy(update={"access": config.access.model_copy(update={"bearer_tokens": files})})
    keys = folder / "keys"
    keys.mkdir()
    for name in PROVIDERS:
        (keys / name).write_text(KEYS[name])
    path = folder / "config.json"
    path.write_text(config.to_json())
    return path, keys, token_file


@pytest.fixture(scope="module")
def secured(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("auth")
    issuer = ClusterIssuer()
    path, keys, token_file = write_secured_config(hub, folder, issuer)
    proc = RouterProcess([str(path)], folder / "router.log", env={"LLMROUTE_KEYS_DIR": str(keys)})
    try:
        yield Secured(proc, issuer, token_file)
    finally:
        proc.stop()
    log = proc.log()
    assert TOKEN not in log and ROTATED not in log


def assert_openai_error(body: Any, code: str) -> None:
    assert set(body["error"]) == {"message", "type", "code", "param"} and body["error"]["code"] == code


def test_shared_token_is_accepted_and_never_reaches_the_provider(secured: Secured, hub: Hub) -> None:
    assert secured.chat(TOKEN)
    served = [n for n in PROVIDERS if hub.requests(n)]
    assert served and all(hub[n].stats.auth["ok"] == hub.requests(n) for n in served)  # the provider key, only
    assert all(hub[n].stats.last_bad_token_prefix is None for n in PROVIDERS)


@pytest.mark.parametrize(("namespace", "name"), [("team-a", "web"), ("team-b", "ingest")])
def test_listed_service_accounts_are_accepted(secured: Secured, hub: Hub, namespace: str, name: str) -> None:
    assert secured.chat(secured.sa_token(namespace, name))
    assert secured.chat(secured.sa_token(namespace, name, alg="ES256"))
    assert all(hub[n].stats.last_bad_token_prefix is None for n in PROVIDERS)


def test_missing_credential_is_401_with_www_authenticate(secured: Secured, hub: Hub) -> None:
    status, headers, body = secured.raw("/v1/chat/completions", {"Content-Type": "application/json"})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert_openai_error(body, "invalid_api_key")
    status, _, body = secured.raw("/v1/models", {}, body=None)
    assert status == 401
    assert sum(hub.requests(n) for n in PROVIDERS) == 0


@pytest.mark.parametrize("case", ["wrong", "expired", "audience", "issuer", "foreign-key"])
def test_bad_credentials_are_401(secured: Secured, hub: Hub, case: str) -> None:
    token = {
        "wrong": TOKEN + "x",
        "expired": secured.issuer.token("team-a", "web", AUDIENCE, time.time() - 7200, lifetime=3600),
        "audience": secured.sa_token("team-a", "web", audience="llmroute.io/llm/other"),
        "issuer": secured.sa_token("team-a", "web", iss="https://evil.example"),
        "foreign-key": ClusterIssuer().token("team-a", "web", AUDIENCE, time.time()),
    }[case]
    with pytest.raises(openai.AuthenticationError) as exc:
        secured.chat(token)
    assert exc.value.status_code == 401 and exc.value.code == "invalid_api_key"
    assert exc.value.response.headers["WWW-Authenticate"].startswith("Bearer")
    assert token not in exc.value.response.text
    assert sum(hub.requests(n) for n in PROVIDERS) == 0
    record("access", {f"refused401.{case}": exc.value.status_code})


@pytest.mark.parametrize(("namespace", "name"), [("team-b", "other"), ("llm", "web"), ("kube-system", "admin")])
def test_unlisted_service_accounts_are_403(secured: Secured, hub: Hub, namespace: str, name: str) -> None:
    with pytest.raises(openai.PermissionDeniedError) as exc:
        secured.chat(secured.sa_token(namespace, name))
    assert exc.value.code == "caller_not_allowed" and f"{namespace}/{name}" in exc.value.message
    assert sum(hub.requests(n) for n in PROVIDERS) == 0
    record("access", {f"refused403.{namespace}/{name}": exc.value.status_code})


def test_probes_and_metrics_need_no_credential_and_denials_are_counted_by_reason(secured: Secured) -> None:
    assert secured.proc.get("/healthz")[0] == 200 and secured.proc.get("/readyz")[0] == 200
    with pytest.raises(openai.AuthenticationError):
        secured.chat(secured.issuer.token("team-a", "web", AUDIENCE, time.time() - 7200, lifetime=3600))
    metrics = secured.proc.metrics()
    lines = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("llmroute_access_denials_total")
    }
    assert lines['llmroute_access_denials_total{reason="expired"}'] >= 1
    assert 'reason="not_allowed"' in metrics and "team-a" not in metrics and TOKEN not in metrics


def test_rotated_token_is_accepted_without_restart(secured: Secured) -> None:
    pid = secured.proc.proc.pid
    secured.token_file.write_text(ROTATED)
    try:
        secured.wait_accepted(ROTATED, TOKEN_RELOAD_S + 5, "the rotated token")
        with pytest.raises(openai.AuthenticationError):
            secured.chat(TOKEN)
        assert secured.proc.proc.pid == pid and secured.proc.proc.poll() is None
    finally:
        secured.token_file.write_text(TOKEN)


def test_a_yaml_config_takes_bearer_tokens_from_its_secret_documents(hub: Hub, tmp_path: Path) -> None:
    """``llmroute router --config DIR`` (and ``llmroute local``) on the user's YAML: the tokens ``spec.access`` names
    come from the Secret documents in the folder, are rotated by editing them (a live reload), and a token whose
    Secret is not there accepts nobody; no token reaches the log."""
    route = route_doc()
    route["spec"]["access"] = {"bearerTokens": [{"secretRef": {"name": "chat-token"}},
                                                {"secretRef": {"name": "absent-token"}}]}
    token_doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-token", "namespace": "llm"},
                 "stringData": {"token": TOKEN}}
    folder = write_config(tmp_path / "config", {**config_docs(hub), "route": route, "token": token_doc})
    proc = RouterProcess([str(folder)], tmp_path / "router.log")
    try:
        secured = Secured(proc, ClusterIssuer(), folder)
        assert secured.chat(TOKEN)
        for wrong in ("", "absent", ROTATED):
            with pytest.raises(openai.AuthenticationError), secured.client(wrong or "x") as c:
                c.chat.completions.create(model="deepseek-chat", messages=MESSAGES)  # type: ignore[arg-type]
        write_config(folder, {"token": {**token_doc, "stringData": {"token": ROTATED}}})
        secured.wait_accepted(ROTATED, 15, "the edited Secret document")
        with pytest.raises(openai.AuthenticationError), secured.client(TOKEN) as c:
            c.chat.completions.create(model="deepseek-chat", messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        proc.stop()
    log = proc.log()
    assert 'no Secret "absent-token" with key "token"' in log
    assert TOKEN not in log and ROTATED not in log
