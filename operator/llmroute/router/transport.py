"""Makes every weakening of upstream transport security loud: a warning per provider, and a metric.

On each config load (:mod:`llmroute.router.app`) the weaknesses :func:`llmroute.core.transport.weaknesses` finds in
the config and the process environment are logged once as WARNING lines (``llmroute.router.transport``) and
exported as ``llmroute_upstream_tls_weakened{provider,reason}`` = 1 (series of providers that left the config are
removed), so an alert can fire on ``max(llmroute_upstream_tls_weakened) > 0``. Nothing here changes what the
router does: it still verifies every HTTPS upstream.
"""

from __future__ import annotations

import contextlib
import logging
import os

from prometheus_client import Gauge

from llmroute.core.router_config import RouterConfig
from llmroute.core.transport import weaknesses
from llmroute.router.metrics import REGISTRY

log = logging.getLogger("llmroute.router.transport")

WEAKENED = Gauge(
    "llmroute_upstream_tls_weakened",
    "1 for each provider whose traffic is not protected by verified TLS against the system CAs, by why.",
    ["provider", "reason"],
    registry=REGISTRY,
)
_shown: set[tuple[str, str]] = set()


def report(config: RouterConfig) -> None:
    """Log and export the weaknesses of ``config`` under this process's environment."""
    found = weaknesses(config.providers, os.environ)
    now = {(provider, str(reason)) for provider, reason, _ in found}
    for labels in _shown - now:
        with contextlib.suppress(KeyError):
            WEAKENED.remove(*labels)
    for provider, reason, why in found:
        WEAKENED.labels(provider, reason).set(1)
        log.warning("provider %s: upstream transport weakened (%s): %s", provider, reason, why)
    _shown.clear()
    _shown.update(now)
