"""The shared provider prober: one kopf daemon per ProviderPolicy, writing ``status.providers[]`` and ``summary``.

Each daemon owns one ``httpx.AsyncClient`` and probes every provider of its policy with the unbilled health check
``GET {endpoint}{healthCheck.path}`` (``Authorization: Bearer <key>`` with the provider's key, read from its Secret
through :mod:`llmroute.controller.kube`), each at its own ``healthCheck.interval`` and with its ``timeout``. What a
probe means and the hysteresis are pure (:mod:`llmroute.core.probing`); this module does the I/O:

* **Status** (``providers``, ``summary`` and the policy's ``Ready`` condition) is patched only when it is worth it
  (:func:`llmroute.core.probing.worth_writing`: a state, reason or capped counter changed, or the timestamps are a
  minute old), never on every probe. Health starts from the persisted status, so an operator restart keeps the
  counters and states and posts no Event for what it already reported.
* **Events** on the policy for transitions: ``ProviderDown`` / ``ProviderMisconfigured`` (Warning) and
  ``ProviderRecovered`` (Normal). Reasons name status codes and error kinds only, never a key or a body.
* **Routes**: the daemon keeps the policy's health in the memo (``memo.health[policy]``), which the routes'
  reconcile prefers to the index copy of the status (it is never behind), and when the set of Down/Misconfigured
  providers changes it bumps ``llmroute.io/provider-health`` on every dependent route (from the ``routes_by_policy``
  index). kopf sees an update, the route's own reconcile recomputes its active backends, ``Degraded`` and
  ``lastFailover``, and - the compiled config not depending on health - sends no write to the ConfigMap or
  Deployment. Health never goes into owned objects.
* **Keys** are cached for :data:`KEY_TTL_S`; a 401/403 with a cached key re-reads the Secret and probes again once
  before the provider is called Misconfigured (a rotated key is not an outage); once Misconfigured, the TTL alone
  picks up a fixed key (no Secret read per probe). A key whose Secret names no
  namespace belongs to each route (every team brings its own): the shared prober then probes without a key and a
  401/403 only proves the endpoint answers.

* **Egress proxies**: probes take the routers' path - a provider's own ``proxy`` (its ``user:password`` read from
  its Secret like keys, when the Secret names a namespace), else ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` of the
  operator's environment (httpx's ``trust_env``, the same rules as :mod:`llmroute.router.egress`); one client per
  proxy, closed with the daemon.

* **ModelPool providers** (``providers[].pool``) are not probed over HTTP: a pool at zero replicas has no pod to
  answer, and that is not an outage (routers hold requests while the operator starts a replica). Their entry comes
  from the pool's scaler (:meth:`llmroute.controller.pools.PoolRegistry.ready`) at each step: ``Healthy`` with ready
  replicas, ``Cold`` with none (routes then show the backend routers actually use: the next one, or the pool when
  nothing else is allowed), ``Unknown`` before the scaler has observed the pool. They are left out of the policy's
  ``summary`` and ``Ready`` condition, which are about the hosted providers.
* **Pool scalers** are told when a provider turns Down or stops being Down (``on_down_change``), so a ModelPool
  that lists it in ``prewarm.whenDown`` decides at once rather than at its next interval
  (:meth:`llmroute.controller.pools.PoolRegistry.provider_changed`).

How routers share this view (decision for v1alpha1): **they do not depend on it.** Each router replica keeps its
own passive circuits (:mod:`llmroute.core.circuit`, fed by real traffic and its own probes of open circuits), which
react within one request and need no API access. The operator's view is for humans, alerts
(``llmroute_provider_health``) and the routes' status (active backend, ``Degraded``, failovers). Pushing it into the
routers (e.g. a watch on the ProviderPolicy status to pre-open circuits of Down providers) would couple the data
plane to the API server's availability; a future version may add it as an advisory input.

Registered by :func:`llmroute.controller.register` when :attr:`Settings.probe_providers` is on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import kopf
from pydantic import ValidationError

from llmroute import __version__
from llmroute.api.base import ConditionStatus, parse_duration
from llmroute.api.provider_policy import (
    HealthCheck,
    Provider,
    ProviderHealth,
    ProviderPolicySpec,
    ProviderPolicyStatus,
    ProviderState,
)
from llmroute.controller import metrics
from llmroute.controller import status as st
from llmroute.controller.indexes import HEALTH_ANNOTATION, POLICIES, RouteRef
from llmroute.controller.kube import Kube, post_event
from llmroute.core import probing
from llmroute.core.compile import provider_endpoint

logger = logging.getLogger(__name__)

KEY_TTL_S = 60.0
IDLE_S = 15.0
"""How long a daemon whose policy is invalid waits before looking at it again."""
CANCELLATION_TIMEOUT_S = 5.0
FAN_OUT_CONCURRENCY = 16


@dataclass(frozen=True)
class Target:
    """One provider as the prober needs it."""

    name: str
    url: str
    check: HealthCheck
    secret: tuple[str, str, str] | None  # (namespace, name, key) of a shared key
    key_checked: bool
    pool: str | None = None  # "<namespace>/<name>" of a ModelPool provider (not probed)
    proxy: str | None = None  # the provider's own egress proxy URL
    proxy_secret: tuple[str, str, str] | None = None  # (namespace, name, key) of its user:password

    @classmethod
    def of(cls, p: Provider) -> Target:
        ref = p.credentials.secret_ref if p.credentials is not None else None
        shared = ref is not None and ref.namespace is not None
        secret = (ref.namespace or "", ref.name, ref.key) if ref is not None and shared else None
        pool = f"{p.pool.namespace}/{p.pool.name}" if p.pool is not None else None
        proxy_ref = p.proxy.credentials.secret_ref if p.proxy is not None and p.proxy.credentials else None
        proxy_secret = (proxy_ref.namespace, proxy_ref.name, proxy_ref.key) if proxy_ref and proxy_ref.namespace \
            else None
        return cls(p.name, provider_endpoint(p) + p.health_check.path, p.health_check, secret,
                   key_checked=ref is None or shared, pool=pool, proxy=p.proxy.url if p.proxy else None,
                   proxy_secret=proxy_secret)

    def pool_health(self, ready: int | None) -> ProviderHealth:
        """What status says about a pool provider with ``ready`` replicas (None: not observed yet)."""
        if ready is None:
            state, why = ProviderState.UNKNOWN, "not observed yet"
        elif ready == 0:
            state, why = ProviderState.COLD, "no ready replica"
        else:
            state, why = ProviderState.HEALTHY, f"{ready} ready"
        return ProviderHealth(name=self.name, state=state, reason=f"ModelPool {self.pool}: {why}")


class KeyCache:
    """Provider keys read from Secrets (decoded only here, held in memory, never logged)."""

    def __init__(self, kube: Kube, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube, self._clock = kube, clock
        self._secrets: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    async def key(self, namespace: str, name: str, key: str) -> tuple[str | None, str]:
        """The key's value, or None and why not (names only)."""
        cached = self._secrets.get((namespace, name))
        if cached is None or self._clock() - cached[0] > KEY_TTL_S:
            cached = (self._clock(), await self._kube.read_secret_data(namespace, name))
            self._secrets[(namespace, name)] = cached
        raw = cached[1].get(key)
        if raw is None:
            return None, f'the key Secret {namespace}/{name} has no key "{key}" (or does not exist)'
        try:
            return base64.b64decode(raw, validate=True).decode().strip(), ""
        except (binascii.Error, UnicodeDecodeError):
            return None, f'the key "{key}" in Secret {namespace}/{name} is not valid base64 text'

    def forget(self, namespace: str, name: str) -> bool:
        """Drop a cached Secret; True if there was one (then a re-read may find a rotated key)."""
        return self._secrets.pop((namespace, name), None) is not None


async def probe(client: httpx.AsyncClient, target: Target, key: str | None) -> probing.ProbeResult:
    """One ``GET`` of the health check; transport errors become a few words (never a URL with a key, never a body)."""
    timeout_s = parse_duration(target.check.timeout)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            resp = await client.get(target.url, headers=headers, timeout=timeout_s)
            status = resp.status_code
    except (TimeoutError, httpx.TimeoutException):
        return _failed(started, f"timed out after {timeout_s:g}s", target)
    except httpx.ConnectError as exc:
        return _failed(started, _connect_error(exc), target)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        return _failed(started, "connection reset or closed", target)
    except (httpx.HTTPError, ValueError) as exc:  # ValueError: a key that is not a valid header value
        return _failed(started, f"probe failed ({type(exc).__name__})", target)
    return probing.ProbeResult(status=status, latency_s=time.perf_counter() - started, key_checked=target.key_checked)


def proxied_client(base: httpx.AsyncClient, url: str, credentials: str | None) -> httpx.AsyncClient:
    """A client like ``base`` that goes through the proxy at ``url`` (``credentials``: its ``user:password``)."""
    user, _, password = credentials.partition(":") if credentials else ("", "", "")
    proxy = httpx.Proxy(url, auth=(user, password)) if credentials else httpx.Proxy(url)
    return httpx.AsyncClient(headers=base.headers, follow_redirects=False, proxy=proxy)


def _connect_error(exc: BaseException) -> str:
    """A few words for why a connection failed, from the exception chain (its texts may hold host names)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "DNS lookup failed"
        if isinstance(seen, ssl.SSLError):
            return "TLS handshake failed"
        seen = seen.__cause__ or seen.__context__
    return "connect failed"


def _failed(started: float, error: str, target: Target) -> probing.ProbeResult:
    return probing.ProbeResult(latency_s=time.perf_counter() - started, error=error, key_checked=target.key_checked)


class PolicyProber:
    """The state of one policy's daemon: current health, what status says, when each provider is due."""

    def __init__(self, policy: str, kube: Kube, client: httpx.AsyncClient, status: Mapping[str, Any] | None,
                 clock: Callable[[], float] = time.monotonic, identity: str | None = None) -> None:
        self.policy, self.kube, self.client, self.clock = policy, kube, client, clock
        self.identity = identity  # this replica (the leader): written as status.activeOperator
        persisted = ProviderPolicyStatus.model_validate(dict(status or {}))
        self.health: dict[str, ProviderHealth] = {p.name: p for p in persisted.providers}
        self.written = dict(self.health)
        self.fanned_out = probing.unhealthy_key(list(self.health.values()))
        self.due: dict[str, float] = {}
        self.keys = KeyCache(kube, clock)
        self.proxied: dict[tuple[str, str | None], httpx.AsyncClient] = {}  # per (proxy URL, credentials)
        self.pools: set[str] = set()
        self.on_down_change: Callable[[str], None] | None = None
        self.pool_ready: Callable[[str], int | None] = lambda _: None

    async def step(self, body: kopf.Body, routes: kopf.Index[str, RouteRef]) -> float:
        """Probe the due providers, then write status, post Events and fan out as needed; seconds to sleep."""
        try:
            spec = ProviderPolicySpec.model_validate(dict(body["spec"]))
        except (ValidationError, KeyError):
            return IDLE_S  # the policy handler reports why; nothing sensible to probe
        targets = [Target.of(p) for p in spec.providers]
        self._forget_removed({t.name for t in targets})
        self._note_pools([t for t in targets if t.pool is not None])
        now = self.clock()
        due = [t for t in targets if t.pool is None and self.due.get(t.name, 0.0) <= now]
        results = await asyncio.gather(*(self._probe(t) for t in due))
        wall = datetime.datetime.now(datetime.UTC)
        for target, result in zip(due, results, strict=True):
            if result is not None:
                self._record(body, target, result, wall)
            self.due[target.name] = self.clock() + parse_duration(target.check.interval)
        current = [self.health.get(t.name) or ProviderHealth(name=t.name) for t in targets]
        await self._write(body, current, wall)
        await self._fan_out(routes, current)
        return max(0.0, min(self.due.values(), default=now + IDLE_S) - self.clock())

    async def _client(self, target: Target) -> httpx.AsyncClient | str:
        """The client for ``target`` (through its own proxy, if any), or why there is none."""
        if target.proxy is None:
            return self.client
        credentials = None
        if target.proxy_secret is not None:
            credentials, why = await self.keys.key(*target.proxy_secret)
            if credentials is None:
                return why
        key = (target.proxy, credentials)
        if key not in self.proxied:
            self.proxied[key] = proxied_client(self.client, target.proxy, credentials)
        return self.proxied[key]

    async def aclose(self) -> None:
        for client in self.proxied.values():
            await client.aclose()
        self.proxied.clear()

    async def _probe(self, target: Target) -> probing.ProbeResult | None:
        """Probe one provider; None when its key could not be read (an API problem says nothing about it)."""
        try:
            client = await self._client(target)
        except kopf.TemporaryError as exc:
            logger.warning("proxy credentials of %s/%s not read, probe skipped: %s", self.policy, target.name, exc)
            return None
        if isinstance(client, str):
            return probing.ProbeResult(not_sent=client)
        if target.secret is None:
            return await probe(client, target, None)
        try:
            key, why = await self.keys.key(*target.secret)
            if key is None:
                return probing.ProbeResult(not_sent=why)
            result = await probe(client, target, key)
            known = self.health.get(target.name)
            was_rejected = known is not None and known.state is ProviderState.MISCONFIGURED
            if result.status in (401, 403) and not was_rejected and self.keys.forget(*target.secret[:2]):
                key, why = await self.keys.key(*target.secret)  # maybe rotated: read it again, probe once more
                result = await probe(client, target, key) if key else probing.ProbeResult(not_sent=why)
        except kopf.TemporaryError as exc:
            logger.warning("key of %s/%s not read, probe skipped: %s", self.policy, target.name, exc)
            return None
        return result

    def _record(self, body: kopf.Body, target: Target, result: probing.ProbeResult, now: datetime.datetime) -> None:
        prev = self.health.get(target.name) or ProviderHealth(name=target.name)
        new = probing.next_health(prev, result, now, target.check)
        self._set(target.name, prev, new)
        if not result.not_sent:
            metrics.set_probe_latency(self.policy, target.name, result.latency_s)
        event = probing.transition_event(prev, new)
        if new.state != prev.state:
            logger.info("provider %s/%s: %s -> %s (%s)", self.policy, target.name, prev.state, new.state,
                        new.reason or "ok")
        if event is not None:
            post_event(body, warning=event.warning, reason=event.reason, message=event.message)

    def _set(self, name: str, prev: ProviderHealth, new: ProviderHealth) -> None:
        self.health[name] = new
        metrics.set_provider_health(self.policy, name, new.state)
        if (prev.state is ProviderState.DOWN) != (new.state is ProviderState.DOWN) and self.on_down_change:
            self.on_down_change(name)

    def _note_pools(self, targets: list[Target]) -> None:
        self.pools = {t.name for t in targets}
        for target in targets:
            prev = self.health.get(target.name) or ProviderHealth(name=target.name)
            new = target.pool_health(self.pool_ready(target.pool or ""))
            self.due.pop(target.name, None)  # it may have been probed before it named a pool
            if prev != new:
                self._set(target.name, prev, new)

    def _forget_removed(self, names: set[str]) -> None:
        for gone in set(self.health) - names:
            was_down = self.health.pop(gone).state is ProviderState.DOWN
            self.due.pop(gone, None)
            metrics.forget_provider(self.policy, gone)
            if was_down and self.on_down_change:
                self.on_down_change(gone)

    async def _write(self, body: kopf.Body, current: list[ProviderHealth], now: datetime.datetime) -> None:
        live = ProviderPolicyStatus.model_validate(dict(body.get("status") or {}))
        probed = [p for p in current if p.name not in self.pools]  # summary and Ready: the hosted providers
        ready = probing.readiness(probed)
        cond = st.Cond(ConditionStatus(ready.status), ready.reason, ready.message)
        old_ready = next((c for c in live.conditions if c.type == "Ready"), None)
        ready_changed = old_ready is None or (old_ready.status, old_ready.reason, old_ready.message) != (
            cond.status, cond.reason, cond.message)
        providers_changed = [p.name for p in current] != list(self.written) or any(
            self._worth_writing(p, now) for p in current)
        summary = probing.summary(probed)
        operator_changed = self.identity is not None and live.active_operator != self.identity  # a takeover
        if not (providers_changed or ready_changed or operator_changed or live.summary != summary):
            return
        stamp = probing.timestamp(now)
        generation = body["metadata"].get("generation")
        conditions = [c for c in live.conditions if c.type != "Ready"] + st.merge_conditions(
            live.conditions, {"Ready": cond}, generation, stamp)
        patch = {"providers": [p.wire() for p in current], "summary": summary,
                 "conditions": [c.wire() for c in conditions]}
        if self.identity is not None:
            patch["activeOperator"] = self.identity
        try:
            await self.kube.patch_status("ProviderPolicy", "", self.policy, patch)
        except kopf.TemporaryError as exc:
            logger.warning("provider health of %s not written (retried next probe): %s", self.policy, exc)
            return
        self.written = {p.name: p for p in current}

    def _worth_writing(self, health: ProviderHealth, now: datetime.datetime) -> bool:
        written = self.written.get(health.name)
        if health.name in self.pools:  # no probes, no timestamps: only a change is worth a write
            return written != health
        return probing.worth_writing(written, health, now)

    async def _fan_out(self, routes: kopf.Index[str, RouteRef], current: list[ProviderHealth]) -> None:
        key = probing.unhealthy_key(current)
        if key == self.fanned_out:
            return
        stale = [r for r in routes.get(self.policy, []) if r.health_key != key]
        gate = asyncio.Semaphore(FAN_OUT_CONCURRENCY)

        async def bump(ref: RouteRef) -> None:
            async with gate:
                await self.kube.annotate("LLMRoute", ref.namespace, ref.name, {HEALTH_ANNOTATION: key})

        try:
            await asyncio.gather(*(bump(r) for r in stale))
        except kopf.TemporaryError as exc:
            logger.warning("routes of %s not told about provider health (retried next probe): %s", self.policy, exc)
            return
        self.fanned_out = key


async def probe_policy(stopped: kopf.DaemonStopped, name: str, body: kopf.Body, memo: kopf.Memo,
                       **kwargs: Any) -> None:
    """The daemon: probe until the policy is deleted or the operator stops (it never exits on its own)."""
    headers = {"User-Agent": f"llmroute-operator/{__version__} (health check)"}
    async with httpx.AsyncClient(headers=headers, follow_redirects=False) as client:
        settings = memo.get("settings")
        prober = PolicyProber(name, memo.kube, client, body.get("status"),
                              identity=getattr(settings, "identity", None))
        pools = memo.get("pools")  # the ModelPool scalers (controller.pools.PoolRegistry)
        if pools is not None:
            prober.on_down_change = lambda provider: pools.provider_changed(name, provider)
            prober.pool_ready = pools.ready
        health: dict[str, dict[str, ProviderHealth]] = memo.health
        health[name] = prober.health
        try:
            while not stopped:
                try:
                    delay = await prober.step(body, kwargs["routes_by_policy"])
                except Exception:  # a bug must not end probing for good (kopf does not restart exited daemons)
                    logger.exception("probing %s failed; trying again in %gs", name, IDLE_S)
                    delay = IDLE_S
                await stopped.wait(delay)
        finally:
            await prober.aclose()
            health.pop(name, None)
            metrics.forget_policy(name)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.daemon(*POLICIES, registry=registry, id="prober",
                cancellation_timeout=CANCELLATION_TIMEOUT_S)(probe_policy)
