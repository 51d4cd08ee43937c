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
a warning and exports it as ``llmroute_upstream_tls_weakened{provider,reason}``, and the operator posts a
``PlaintextEndpoint`` Warning Event on the ProviderPolicy (:func:`plaintext`, :mod:`llmroute.controller.policies`).
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
        why = plaintext(p.endpoint, self_hosted=p.self_hosted or p.pool is not None)
        if why is not None:
            out.append((p.name, Reason.PLAINTEXT, why))
        elif urlsplit(p.endpoint).scheme == "https" and trust:
            out.append(
                (
                    p.name,
                    Reason.CUSTOM_TRUST_STORE,
                    f"certificates are checked against {', '.join(trust)} instead of the system CAs",
                )
            )
    return out


def plaintext(endpoint: str | None, *, self_hosted: bool) -> str | None:
    """Why ``endpoint`` carries keys and prompts unencrypted, or None (HTTPS, self-hosted, loopback, no endpoint)."""
    if endpoint is None or self_hosted:
        return None
    url = urlsplit(endpoint)
    if url.scheme != "http" or _loopback(url.hostname or ""):
        return None
    return (
        f"endpoint http://{url.netloc} is not HTTPS: its key, prompts and answers travel unencrypted (set "
        "selfHosted if it runs in this cluster)"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
