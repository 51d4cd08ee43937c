"""The drills of the loaded config, applied inside the router: attempts and probes a drill fails are never sent.

Owns the process-wide drill state: the current config's drills (replaced on every config load, drills-only changes
included - they do not change the config hash, see :mod:`llmroute.core.router_config`), the per-process RNG that
decides each attempt (:func:`llmroute.core.drills.simulate`), one log line when a drill starts and one when it ends,
and the drill metrics (``llmroute_drill_active``, ``llmroute_drill_injections_total``).

Why it is safe: :meth:`Drills.inject` is asked about a backend the attempt loop already chose from the residency-
allowed, keyed set (``RouteEntry.usable``), and can only answer "fail this one without sending it" - it has no way to
name a destination. The simulated failure then goes through :mod:`llmroute.core.retry`, the circuits and failover
exactly as a real one, which is what the rehearsal is for. ``until`` is wall-clock time (``time.time``), checked at
every attempt, so a drill ends on time even if nobody touches the LLMRoute again.

Used by :mod:`llmroute.router.app` (:meth:`Drills.use` on config loads), :mod:`llmroute.router.failover` (attempts),
and :mod:`llmroute.router.health` (probes, and :meth:`Drills.tick` for timely start/end logs).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from llmroute.core.drills import SimulatedFailure, active_drill, is_active, simulate
from llmroute.core.router_config import Drill
from llmroute.router import metrics

log = logging.getLogger("llmroute.router.drills")

_Key = tuple[str, str]  # (provider, fault)


def _key(d: Drill) -> _Key:
    return d.provider, str(d.fault)


def _describe(d: Drill) -> str:
    until = datetime.fromtimestamp(d.until_epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"provider {d.provider}, fault {d.fault}, until {until}, {d.error_rate:.0%} of attempts and probes fail"


class Drills:
    """The current drills; single event loop, so no locks."""

    def __init__(self, clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self._clock = clock
        self.rng = rng or random.Random()
        self._drills: tuple[Drill, ...] = ()
        self._active: dict[_Key, Drill] = {}

    @property
    def drills(self) -> tuple[Drill, ...]:
        return self._drills

    def use(self, drills: tuple[Drill, ...]) -> None:
        """Adopt the drills of a newly loaded config."""
        now = self._clock()
        kept = {_key(d) for d in drills}
        for d in self._drills:
            if _key(d) not in kept:
                if _key(d) in self._active:
                    del self._active[_key(d)]
                    log.warning("drill ended (removed from the LLMRoute): %s", _describe(d))
                metrics.remove_drill(*_key(d))
        for d in drills:
            if d not in self._drills and not is_active(d, now):
                log.info("drill ignored, its end has passed: %s", _describe(d))
                metrics.set_drill_active(*_key(d), False)
        self._drills = drills
        self.tick()

    def tick(self) -> None:
        """Log drills that started or ended since the last tick, and keep ``llmroute_drill_active`` current."""
        now = self._clock()
        active = {_key(d): d for d in self._drills if is_active(d, now)}
        for key, d in active.items():
            before = self._active.get(key)
            if before is None:
                log.warning("drill started: %s", _describe(d))
                metrics.set_drill_active(*key, True)
            elif before != d:
                log.warning("drill changed: %s", _describe(d))
        for key, d in self._active.items():
            if key not in active:
                log.warning("drill ended (its end passed): %s", _describe(d))
                metrics.set_drill_active(*key, False)
        self._active = active

    def inject(self, provider: str, *, probe: bool = False) -> SimulatedFailure | None:
        """The simulated failure for the next attempt (or probe) to ``provider``, or None: send it for real.

        Attempts failed this way are counted in ``llmroute_drill_injections_total``; probes are not (they are not
        traffic), but a probe failed this way keeps the drilled provider's circuit from closing mid-drill.
        """
        if not self._drills:  # the hot path when no drill is configured: no clock read
            return None
        drill = active_drill(self._drills, provider, self._clock())
        if drill is None:
            return None
        simulated = simulate(drill, self.rng)
        if simulated is not None and not probe:
            metrics.drill_injection(provider, drill.fault)
        return simulated
