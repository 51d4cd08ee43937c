"""Per-backend health: the circuits the router plans with, fed by passive outcomes and unbilled probes.

Owns one :class:`llmroute.core.circuit.Circuit` per backend (key ``provider/model``, as
:func:`llmroute.core.selection.backend_key`) and applies the pure transitions of :mod:`llmroute.core.circuit`:

* passive outcomes of real attempts (:meth:`Health.record`), reported by :mod:`llmroute.router.failover`;
* trials: an attempt sent to a RECOVERING backend (:meth:`Health.admit`) holds its circuit's recovery step until
  its first token or its end (:meth:`Health.settle`; the step waits, :func:`llmroute.core.circuit.tick`), so a
  provider whose first tokens come too late is re-opened by its trial's failure before its share climbs;
* forced opening: a misconfigured backend (401/403/404, :meth:`Health.force_open`) or a provider whose balance is
  exhausted (402, :meth:`Health.take_out`: every backend of that provider);
* a background task (:meth:`Health.run`) that ticks every circuit (window pruning, recovery steps, healing) and
  probes providers that have an OPEN or RECOVERING backend with ``GET {endpoint}{health.path}`` and the provider
  key, at the provider's probe interval and timeout - never a paid completion (a ModelPool's on one of its ready
  pods, :mod:`llmroute.router.pools`: its Service may not even resolve in local mode). While a drill is active for a
  provider, its probes are drawn like its attempts (:meth:`llmroute.router.drills.Drills.inject`): a simulated
  failure is a failed probe that was never sent, so the circuit stays open for the drill as in a real outage.

Circuits survive config reloads for backends that stay; gauges (``llmroute_circuit_state``) follow every change.
Transitions are logged in one line (names and reasons only). Used by :mod:`llmroute.router.app` (creation, the
task) and :mod:`llmroute.router.failover`; probes go through :mod:`llmroute.router.upstream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from llmroute.core import circuit
from llmroute.core.circuit import Circuit, State, Transition
from llmroute.core.router_config import BackendTarget, CircuitSettings
from llmroute.core.selection import backend_key
from llmroute.router import metrics
from llmroute.router.config_source import Snapshot
from llmroute.router.drills import Drills
from llmroute.router.upstream import Upstream

log = logging.getLogger("llmroute.router.health")

TICK_S = 0.1
_NEEDS_PROBE = (State.OPEN, State.RECOVERING)

Trial = tuple[str, int]
"""An attempt sent to a RECOVERING backend: (backend key, serial), from :meth:`Health.admit`."""


class Health:
    """All circuits of the current config; single event loop, so no locks."""

    def __init__(self, upstream: Upstream, clock: Callable[[], float], drills: Drills | None = None,
                 pod_url: Callable[[str], str | None] | None = None) -> None:
        self._upstream = upstream
        self._clock = clock
        self._pod_url = pod_url  # a ready pod's base URL for a pool provider (None: it has none)
        self.drills = drills or Drills()
        self.circuits: dict[str, Circuit] = {}
        self._backends: dict[str, BackendTarget] = {}
        self._snapshot: Snapshot | None = None
        self._next_probe: dict[str, float] = {}
        self._probing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._awaiting: dict[str, dict[int, float]] = {}  # per backend key: its trials awaiting a first token, sent at
        self._trials = 0

    @property
    def settings(self) -> CircuitSettings | None:
        return self._snapshot.config.circuit if self._snapshot else None

    def use(self, snapshot: Snapshot) -> None:
        """Adopt a new config: keep circuits of backends that stay, start new ones HEALTHY, drop the rest."""
        backends = {backend_key(b): b for m in snapshot.config.models for cr in m.classes for b in cr.allowed}
        for key in self._backends.keys() - backends.keys():
            gone = self._backends[key]
            metrics.remove_circuit(gone.provider, gone.model)
            self.circuits.pop(key, None)
        for key, b in backends.items():
            c = self.circuits.setdefault(key, Circuit(since=self._clock()))
            metrics.set_circuit_state(b.provider, b.model, c.state)
        self._backends = backends
        self._snapshot = snapshot

    def is_open(self, b: BackendTarget) -> bool:
        c = self.circuits.get(backend_key(b))
        return c is not None and c.state is State.OPEN

    def record(self, b: BackendTarget, ok: bool, *, slow: bool = False) -> None:
        s = self.settings
        key = backend_key(b)
        if s is not None and key in self.circuits:
            self._apply(key, circuit.record(self.circuits[key], ok, self._clock(), s, slow=slow))

    def admit(self, b: BackendTarget) -> Trial | None:
        """An attempt is being sent to ``b``: a trial if its circuit is RECOVERING (None otherwise), which holds the
        circuit's recovery step until :meth:`settle` (its first token in time, or its end with the outcome recorded)."""
        key = backend_key(b)
        c = self.circuits.get(key)
        if c is None or c.state is not State.RECOVERING:
            return None
        self._trials += 1
        self._awaiting.setdefault(key, {})[self._trials] = self._clock()
        return key, self._trials

    def settle(self, trial: Trial) -> None:
        """The trial holds the recovery step no more (settling twice is harmless)."""
        key, serial = trial
        awaiting = self._awaiting.get(key)
        if awaiting is not None:
            awaiting.pop(serial, None)
            if not awaiting:
                del self._awaiting[key]

    def force_open(self, b: BackendTarget, reason: str) -> None:
        key = backend_key(b)
        if key in self.circuits:
            self._apply(key, circuit.open_now(self.circuits[key], self._clock(), reason))

    def take_out(self, provider: str, reason: str) -> None:
        """Open every backend of ``provider`` until a probe succeeds (402 balance exhausted)."""
        now = self._clock()
        for key, b in self._backends.items():
            if b.provider == provider:
                self._apply(key, circuit.open_now(self.circuits[key], now, reason))

    def _apply(self, key: str, t: Transition) -> None:
        old = self.circuits.get(key)
        self.circuits[key] = t.circuit
        if old is not None and (t.changed or t.stepped):
            b = self._backends[key]
            metrics.set_circuit_state(b.provider, b.model, t.circuit.state)
            level = logging.WARNING if t.circuit.state is State.OPEN else logging.INFO
            log.log(level, "circuit %s: %s -> %s (%s)", key, old.state, t.circuit.state, t.reason)

    async def run(self) -> None:
        """Tick circuits and launch due probes, forever (cancel to stop)."""
        try:
            while True:
                await asyncio.sleep(TICK_S)
                try:
                    self.tick()
                except Exception:  # a bug must not stop health tracking for the life of the process
                    log.exception("health tick failed")
        finally:
            for task in list(self._tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def tick(self) -> None:
        s, snapshot = self.settings, self._snapshot
        if s is None or snapshot is None:
            return
        self.drills.tick()
        now = self._clock()
        for key in list(self.circuits):
            c = self.circuits[key]
            awaiting = self._awaiting.get(key) if c.state is State.RECOVERING else None
            self._apply(key, circuit.tick(c, now, s, awaiting_since=min(awaiting.values()) if awaiting else None))
        for provider in self._providers_to_probe():
            if provider in self._probing or now < self._next_probe.get(provider, 0.0):
                continue
            endpoint = snapshot.endpoints.get(provider)
            if endpoint is None:
                continue
            self._next_probe[provider] = now + endpoint.provider.health.interval_s
            self._probing.add(provider)
            task = asyncio.create_task(self._probe(provider, snapshot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _providers_to_probe(self) -> set[str]:
        return {b.provider for key, b in self._backends.items() if self.circuits[key].state in _NEEDS_PROBE}

    async def _probe(self, provider: str, snapshot: Snapshot) -> None:
        try:
            endpoint = snapshot.endpoints[provider]
            simulated = self.drills.inject(provider, probe=True)
            base_url = self._pod_url(provider) if self._pod_url and endpoint.provider.pool else None
            if simulated is not None:
                ok, why = False, simulated.detail
            elif endpoint.provider.pool and base_url is None:
                ok, why = False, "no ready pod"
            else:
                ok, why = await self._upstream.probe(endpoint, endpoint.provider.health.timeout_s, base_url)
            log.debug("probe %s: %s", provider, why)
            self.on_probe(provider, ok)
        finally:
            self._probing.discard(provider)

    def on_probe(self, provider: str, ok: bool) -> None:
        s = self.settings
        if s is None:
            return
        now = self._clock()
        for key, b in self._backends.items():
            if b.provider == provider:
                self._apply(key, circuit.on_probe(self.circuits[key], ok, now, s))

    def states(self) -> Mapping[str, State]:
        return {key: c.state for key, c in self.circuits.items()}
