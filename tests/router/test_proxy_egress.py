"""Egress through HTTP proxies (llmroute.router.egress through llmroute.router.upstream), against a CONNECT proxy
written here (counts tunnels and forwarded requests, can demand credentials or refuse) and TLS providers from the
emulator with a test CA (trustme).

Aspects: HTTPS_PROXY sends an https provider through one CONNECT tunnel, reused by later requests, with TLS to the
provider inside it (its certificate verified: a forged one behind the proxy is a connect failure); NO_PROXY goes
direct; HTTP_PROXY sends an http provider to the proxy in absolute form; credentials come from the proxy URL or,
for a provider's own proxy (which wins over the environment), from the environment variable the config names; a
proxy that refuses (407, or 403 and 502 to CONNECT) is a connect failure naming its status, never the
credentials; a non-http proxy
URL is refused at start; the real router process, given a ProviderPolicy whose provider has a proxy (local mode),
serves the openai SDK through that proxy's tunnel with the credentials from the variable its config names.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trustme

from llmroute.core.retry import FailureKind
from llmroute.core.router_config import CredentialRef, HealthProbe, ProviderTarget, ProxyTarget
from llmroute.emulator import Emulator
from llmroute.router import egress
from llmroute.router.config_source import Endpoint
from llmroute.router.upstream import Exchange, Upstream, UpstreamFailure
from tests.loopback import LoopbackServer
from tests.router.conftest import CLIENT_KEY, RouterProcess, write_config

pytestmark = pytest.mark.router

KEY = "sk-egress-key"
CHAT = b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}'


class ConnectProxy(LoopbackServer):
    """A minimal HTTP proxy: CONNECT tunnels and absolute-form forwarding, piped byte for byte."""

    def __init__(self, credentials: str | None = None, refuse: int | None = None) -> None:
        super().__init__()
        self.expected = "Basic " + base64.b64encode(credentials.encode()).decode() if credentials else None
        self.refuse = refuse
        self.tunnels = 0
        self.forwarded = 0
        self.targets: list[str] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
            auth = next(
                (
                    line.split(b":", 1)[1].strip().decode()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"proxy-authorization:")
                ),
                None,
            )
            status = self.refuse or (407 if self.expected and auth != self.expected else None)
            if status:
                writer.write(b"HTTP/1.1 %d No\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n" % status)
                await writer.drain()
                return
            self.targets.append(target)
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                self.tunnels += 1
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # absolute form: the origin accepts it as it is
                host_port = target.split("/")[2]
                host, port = host_port.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                self.forwarded += 1
                up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_provider(ca: trustme.CA) -> AsyncIterator[Emulator]:
    emu = await Emulator("secure", api_key=KEY, ssl_context=_server_context(ca)).start()
    yield emu
    await emu.close()


@pytest.fixture
async def plain_provider() -> AsyncIterator[Emulator]:
    emu = await Emulator("plain", api_key=KEY).start()
    yield emu
    await emu.close()


async def client(ca: trustme.CA) -> Upstream:
    u = Upstream()
    await u.open()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    u.pool._ssl = context  # the system store plus the test CA (the router process gets it from SSL_CERT_FILE)
    return u


def provider(url: str, proxy: ProxyTarget | None = None) -> Endpoint:
    target = ProviderTarget(
        name="p",
        endpoint=url,
        api="openai",
        jurisdiction="US",
        proxy=proxy,
        health=HealthProbe(path="/models", interval_s=1, timeout_s=1, failure_threshold=1, success_threshold=1),
    )
    return Endpoint(target, {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})


async def chat(u: Upstream, endpoint: Endpoint) -> Exchange:
    loop = asyncio.get_running_loop()
    assert endpoint.headers is not None
    ex = await u.post(
        endpoint,
        "/chat/completions",
        CHAT,
        endpoint.headers,
        connect_s=2.0,
        deadline=loop.time() + 5,
        on_timeout=FailureKind.TTFT,
    )
    await ex.read_body(loop.time() + 5, FailureKind.IDLE)
    ex.finish()
    return ex


async def test_https_goes_through_one_reused_tunnel_with_tls_to_the_provider(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA, tls_provider: Emulator
) -> None:
    async with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        u = await client(ca)
        try:
            for _ in range(3):
                assert (await chat(u, provider(tls_provider.url))).status == 200
        finally:
            await u.close()
    port = tls_provider.url.split(":")[2].split("/")[0]
    assert (proxy.tunnels, proxy.targets) == (1, [f"127.0.0.1:{port}"])


async def test_a_forged_certificate_behind_the_proxy_is_a_connect_failure(
    monkeypatch: pytest.MonkeyPatch, tls_provider: Emulator
) -> None:
    async with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        u = await client(trustme.CA())  # trusts another CA
        try:
            with pytest.raises(UpstreamFailure) as failure:
                await chat(u, provider(tls_provider.url))
        finally:
            await u.close()
    assert failure.value.kind is FailureKind.CONNECT
    assert proxy.tunnels == 1  # the tunnel opened; TLS inside it refused the provider


async def test_no_proxy_goes_direct_and_http_proxy_forwards_in_absolute_form(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA, tls_provider: Emulator, plain_provider: Emulator
) -> None:
    async with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost")
        u = await client(ca)
        try:
            assert (await chat(u, provider(tls_provider.url.replace("127.0.0.1", "localhost")))).status == 200
            assert (proxy.tunnels, proxy.forwarded) == (0, 0)
            assert (await chat(u, provider(plain_provider.url))).status == 200
        finally:
            await u.close()
    assert (proxy.tunnels, proxy.forwarded) == (0, 1)
    assert proxy.targets[0].startswith("http://127.0.0.1:") and proxy.targets[0].endswith("/v1/chat/completions")


@pytest.mark.parametrize("how", ["url", "provider"])
async def test_proxy_credentials_from_the_url_or_the_named_variable(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA, tls_provider: Emulator, how: str
) -> None:
    async with ConnectProxy(credentials="corp:s3cr3t@x") as proxy:
        if how == "url":
            monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://corp:s3cr3t%40x@"))
            endpoint = provider(tls_provider.url)
        else:  # the provider's own proxy wins over the environment's (which would go nowhere)
            monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
            monkeypatch.setenv("LLMROUTE_PROXY_P", "corp:s3cr3t@x")
            cred = CredentialRef(secret_name="proxy", secret_key="auth", env="LLMROUTE_PROXY_P")
            endpoint = provider(tls_provider.url, ProxyTarget(url=proxy.url, credential=cred))
        u = await client(ca)
        try:
            assert (await chat(u, endpoint)).status == 200
        finally:
            await u.close()
    assert proxy.tunnels == 1


@pytest.mark.parametrize("refuse", [None, 403, 502])
async def test_a_refusing_proxy_is_a_connect_failure_naming_its_status_only(
    monkeypatch: pytest.MonkeyPatch,
    ca: trustme.CA,
    tls_provider: Emulator,
    plain_provider: Emulator,
    refuse: int | None,
) -> None:
    async with ConnectProxy(credentials="corp:right", refuse=refuse) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://corp:wrong-s3cr3t@"))
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://corp:wrong-s3cr3t@"))
        u = await client(ca)
        try:
            # a forwarding proxy's 403 or 502 reads as the provider's (classified as such); its 407 cannot
            for emu in (tls_provider, plain_provider) if refuse is None else (tls_provider,):
                with pytest.raises(UpstreamFailure) as failure:
                    await chat(u, provider(emu.url))
                assert failure.value.kind is FailureKind.CONNECT
                assert str(refuse or 407) in failure.value.detail
                assert "s3cr3t" not in str(failure.value) and "corp" not in str(failure.value)
        finally:
            await u.close()
    assert (proxy.tunnels, proxy.forwarded) == (0, 0)


def test_only_http_proxies_are_accepted_and_credentials_stay_out_of_repr() -> None:
    with pytest.raises(ValueError, match="HTTPS_PROXY") as err:
        egress.Environment({"HTTPS_PROXY": "socks5://user:pw@proxy:1080"})
    assert "pw" not in str(err.value)
    proxy = egress.parse("http://user:pw@proxy.corp:3128")
    assert (proxy.host, proxy.port) == ("proxy.corp", 3128)
    assert proxy.authorization == "Basic " + base64.b64encode(b"user:pw").decode()
    assert "pw" not in repr(proxy) and "dXNlcjpwdw" not in repr(proxy)
    env = egress.Environment({"https_proxy": "http://proxy:3128", "no_proxy": ".internal,10.0.0.1"})
    assert env.proxy("https", "api.deepseek.com") == egress.Proxy("proxy", 3128)
    assert env.proxy("https", "llm.internal") is None and env.proxy("https", "10.0.0.1") is None
    assert env.proxy("http", "api.deepseek.com") is None


@pytest.fixture
def router_env(tmp_path: Path, ca: trustme.CA) -> Iterator[dict[str, str]]:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    yield {"SSL_CERT_FILE": str(bundle)}


def _docs(url: str, proxy: str) -> dict[str, dict[str, Any]]:
    return {
        "policy": {
            "apiVersion": "llmroute.io/v1alpha1",
            "kind": "ProviderPolicy",
            "metadata": {"name": "egress"},
            "spec": {
                "defaultDataClass": "public",
                "dataClasses": [{"name": "public"}],
                "providers": [
                    {
                        "name": "secure",
                        "endpoint": url,
                        "jurisdiction": "US",
                        "credentials": {"secretRef": {"name": "keys", "key": "secure"}},
                        "proxy": {"url": proxy, "credentials": {"secretRef": {"name": "proxy", "key": "auth"}}},
                    }
                ],
            },
        },
        "route": {
            "apiVersion": "llmroute.io/v1alpha1",
            "kind": "LLMRoute",
            "metadata": {"name": "egress"},
            "spec": {
                "policyRef": {"name": "egress"},
                "models": [{"name": "deepseek-chat", "backends": [{"provider": "secure", "model": "deepseek-chat"}]}],
            },
        },
        "secrets": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "stringData": {"secure": KEY}},
    }


def test_the_router_process_serves_through_the_providers_proxy(
    tmp_path: Path, router_env: dict[str, str], ca: trustme.CA
) -> None:
    async def scenario() -> int:
        emu = await Emulator("secure", api_key=KEY, ssl_context=_server_context(ca)).start()
        try:
            async with ConnectProxy(credentials="corp:pw") as proxy:
                config = write_config(tmp_path / "config", _docs(emu.url, proxy.url))
                # the provider's proxy (the environment's goes nowhere), its credentials where the config says
                env = {**router_env, "HTTPS_PROXY": "http://127.0.0.1:9", "LLMROUTE_PROXY_SECURE": "corp:pw"}
                router = await asyncio.to_thread(RouterProcess, [str(config)], tmp_path / "router.log", env)
                try:
                    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
                    for _ in range(2):
                        answer = await sdk.chat.completions.create(
                            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}]
                        )
                        assert answer.choices[0].message.content
                    log = router.log()
                finally:
                    await asyncio.to_thread(router.stop)
            assert "corp:pw" not in log and "Y29ycDpwdw" not in log
            return proxy.tunnels
        finally:
            await emu.close()

    assert asyncio.run(scenario()) >= 1  # completions and the router's probes, each through a tunnel


async def test_the_operators_probes_take_the_same_proxy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ca: trustme.CA, tls_provider: Emulator
) -> None:
    from llmroute.api.provider_policy import Provider
    from llmroute.controller import prober

    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    async with ConnectProxy(credentials="corp:pw") as proxy:
        spec = Provider.model_validate(
            {
                "name": "secure",
                "endpoint": tls_provider.url,
                "jurisdiction": "US",
                "credentials": {"secretRef": {"name": "keys", "key": "k", "namespace": "llm"}},
                "proxy": {
                    "url": proxy.url,
                    "credentials": {"secretRef": {"name": "p", "key": "auth", "namespace": "llm"}},
                },
            }
        )
        target = prober.Target.of(spec)
        assert (target.proxy, target.proxy_secret) == (proxy.url, ("llm", "p", "auth"))
        async with httpx.AsyncClient() as base:
            through = prober.proxied_client(base, proxy.url, "corp:pw")
            refused = prober.proxied_client(base, proxy.url, "corp:wrong")
            try:
                ok = await prober.probe(through, target, KEY)
                bad = await prober.probe(refused, target, KEY)
            finally:
                await through.aclose()
                await refused.aclose()
    assert (ok.status, ok.error) == (200, "")
    assert bad.status is None and bad.error and "pw" not in bad.error and "wrong" not in bad.error
    assert proxy.tunnels == 1
