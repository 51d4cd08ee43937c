"""Upstream transport security: the ways a router's protection of keys and prompts in transit can be weakened.

The router verifies every HTTPS upstream (:mod:`llmroute.router.http1` uses ``ssl.create_default_context()``:
certificate chain and host name required) and nothing in a config or the environment turns that off -
``PYTHONHTTPSVERIFY=0`` changes only urllib's default context, which the router never uses. Two ways to weaken it
remain, both legitimate for someone, neither allowed to be silent:

* ``plaintext``: a provider endpoint with ``http://`` that is not self-hosted (declared ``selfHosted`` or a
  ModelPool) and not on loopback: its key and every prompt and answer cross the network unencrypted.
* ``custom_trust_store``: ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` replaces the system CAs (today's way to trust a
  private CA): every certificate those CAs sign is accepted for every HTTPS provider.

:func:`weaknesses` lists them for a config and an environment (pure); :mod:`llmroute.router.transport` logs each as
a warning and exports it as ``llmroute_upstream_tls_weakened{provider,reason}``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from enum import StrEnum
from urllib.parse import urlsplit

from llmroute.core.router_config import ProviderTarget

TRUST_STORE_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


class Reason(StrEnum):
    PLAINTEXT = "plaintext"
    CUSTOM_TRUST_STORE = "custom_trust_store"


def weaknesses(providers: Iterable[ProviderTarget], env: Mapping[str, str]) -> list[tuple[str, Reason, str]]:
    """(provider, reason, why) for every weakened upstream, in config order."""
    trust = [f"{name}={env[name]}" for name in TRUST_STORE_VARIABLES if env.get(name)]
    out: list[tuple[str, Reason, str]] = []
    for p in providers:
        url = urlsplit(p.endpoint)
        if url.scheme == "http" and not p.self_hosted and p.pool is None and not _loopback(url.hostname or ""):
            out.append(
                (
                    p.name,
                    Reason.PLAINTEXT,
                    f"endpoint {url.scheme}://{url.netloc} is not HTTPS: its key, "
                    "prompts and answers travel unencrypted (set selfHosted if it runs in this cluster)",
                )
            )
        elif url.scheme == "https" and trust:
            out.append(
                (
                    p.name,
                    Reason.CUSTOM_TRUST_STORE,
                    f"certificates are checked against {', '.join(trust)} instead of the system CAs",
                )
            )
    return out


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
