"""core.scaling (pure): a vLLM pool's size from queue, KV cache, router demand, prewarm and its hold, with bounds,
one-step scale-down, idle to zero and no flapping; and the /metrics parser. Single decisions are table-driven with
exact times; scenarios feed each decision's state (and size, as the Deployment would) into the next call."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import replace

import pytest

from llmroute.api.provider_policy import ProviderState
from llmroute.core.scaling import (
    Decision,
    Observation,
    PodLoad,
    Reason,
    ScalerState,
    ScalingPolicy,
    WatchedProvider,
    decide,
    parse_vllm_metrics,
)

pytestmark = pytest.mark.unit

POLICY = ScalingPolicy(min_replicas=0, max_replicas=4, target_waiting_per_replica=2.0, kv_cache_ceiling=0.8,
                       scale_down_delay_s=120.0, idle_to_zero_s=600.0, prewarm_replicas=2, hold_after_recovery_s=60.0)
KEY = "deepseek-residency/deepseek"
OTHER = "deepseek-residency/together"
DOWN = (WatchedProvider(KEY, True),)
UP = (WatchedProvider(KEY, False),)
FRESH = ScalerState()
LOAD, PREWARM, HOLD, DEMAND, IDLE, BOUNDS, STEADY = (Reason.LOAD, Reason.PREWARM, Reason.PREWARM_HOLD, Reason.DEMAND,
                                                     Reason.IDLE, Reason.BOUNDS, Reason.STEADY)


def ready(n: int = 1, waiting: float = 0.0, running: float = 0.0, kv: float = 0.0) -> tuple[PodLoad, ...]:
    """``n`` Ready pods with the same load each."""
    return tuple(PodLoad(True, waiting, running, kv) for _ in range(n))


def starting(n: int) -> tuple[PodLoad, ...]:
    return tuple(PodLoad(False) for _ in range(n))


def obs(t: float, replicas: int, pods: tuple[PodLoad, ...] = (), router: int = 0,
        watched: tuple[WatchedProvider, ...] = ()) -> Observation:
    return Observation(now=t, replicas=replicas, pods=pods, router_waiting=router, watched=watched)


def settled(t: float = 1000.0) -> ScalerState:
    """A state whose clocks all ran out long before ``t``: the last change, the last activity, below-target."""
    return ScalerState(last_scale_time=t - 5000, last_direction=1, last_active_time=t - 5000,
                       below_target_since=t - 5000)


def policy(**changes: float) -> ScalingPolicy:
    return replace(POLICY, **changes)  # type: ignore[arg-type]


# --- single decisions ----------------------------------------------------------------------------------------------

SINGLE = [
    # queue pressure: enough replicas that waiting per replica <= target, router-held requests count as waiting
    ("queue-up", POLICY, obs(0, 1, ready(1, waiting=7)), FRESH,
     4, LOAD, "load: 7 waiting over 1 ready replica (target 2 per replica) -> 4"),
    ("queue-counts-router-held", POLICY, obs(0, 1, ready(1, waiting=3), router=4), FRESH,
     4, LOAD, "load: 7 waiting (4 held at routers) over 1 ready replica (target 2 per replica) -> 4"),
    ("queue-at-target-is-steady", POLICY, obs(0, 2, ready(2, waiting=2, running=1)), FRESH,
     2, STEADY, "steady at 2: 4 waiting, 2 running, kv cache 0% over 2 ready replicas"),
    ("queue-one-over-target", POLICY, obs(0, 2, ready(2, waiting=2.5)), FRESH,
     3, LOAD, "load: 5 waiting over 2 ready replicas (target 2 per replica) -> 3"),
    # KV pressure: proportional, at least +1 over the Ready pods
    ("kv-up-proportional", POLICY, obs(0, 2, ready(2, running=5, kv=0.9)), FRESH,
     3, LOAD, "load: kv cache 90% over 2 ready replicas (ceiling 80%) -> 3"),
    ("kv-up-much", POLICY, obs(0, 1, ready(1, running=9, kv=1.0)), FRESH,
     2, LOAD, "load: kv cache 100% over 1 ready replica (ceiling 80%) -> 2"),
    ("kv-over-ceiling-by-a-hair-is-+1", POLICY, obs(0, 1, ready(1, running=1, kv=0.8000000001)), FRESH,
     2, LOAD, None),
    ("kv-at-ceiling-is-steady", POLICY, obs(0, 1, ready(1, running=3, kv=0.8)), FRESH,
     1, STEADY, "steady at 1: 0 waiting, 3 running, kv cache 80% over 1 ready replica"),
    ("kv-is-clamped-to-1", policy(max_replicas=8), obs(0, 2, ready(2, running=1, kv=7.0)), FRESH,
     3, LOAD, "load: kv cache 100% over 2 ready replicas (ceiling 80%) -> 3"),
    # the larger of both recommendations wins
    ("queue-beats-kv", POLICY, obs(0, 1, ready(1, waiting=5, kv=0.9)), FRESH,
     3, LOAD, "load: 5 waiting over 1 ready replica (target 2 per replica) -> 3"),
    ("kv-beats-queue", policy(max_replicas=8), obs(0, 3, ready(3, waiting=1, kv=1.0)), FRESH,
     4, LOAD, "load: kv cache 100% over 3 ready replicas (ceiling 80%) -> 4"),
    # starting pods count as capacity on the way: the same queue or cache does not add replicas again
    ("same-queue-while-starting", POLICY, obs(20, 4, ready(1, waiting=7) + starting(3)), FRESH,
     4, STEADY, "steady at 4: 7 waiting, 0 running, kv cache 0% over 1 ready replica, 3 starting"),
    ("growing-queue-while-starting", policy(max_replicas=8), obs(30, 4, ready(1, waiting=9) + starting(3)), FRESH,
     5, LOAD, "load: 9 waiting over 1 ready replica, 3 starting (target 2 per replica) -> 5"),
    ("same-cache-while-starting", POLICY, obs(20, 2, ready(1, running=4, kv=0.95) + starting(1)), FRESH,
     2, STEADY, None),
    ("not-ready-pods-have-no-metrics", POLICY,
     obs(0, 2, (*ready(1, running=1), PodLoad(False, waiting=50, running=50, kv_cache=1.0))), FRESH,
     2, STEADY, "steady at 2: 0 waiting, 1 running, kv cache 0% over 1 ready replica, 1 starting; fits 1, step down in"
                " 2m0s"),
    ("kv-residue-without-requests-is-no-load", POLICY, obs(1000, 1, ready(1, kv=0.5)), settled(),
     0, IDLE, "idle for 1h23m20s -> 0"),
    # demand at zero
    ("demand-one", POLICY, obs(0, 0, router=1), FRESH, 1, DEMAND, "demand: 1 request held at routers while at 0 -> 1"),
    ("demand-queue", POLICY, obs(0, 0, router=5), FRESH,
     3, DEMAND, "demand: 5 requests held at routers while at 0 -> 3"),
    ("zero-without-demand-stays", POLICY, obs(0, 0), FRESH, 0, STEADY, "steady at 0: no demand"),
    ("zero-ignores-terminating-pods", POLICY, obs(0, 0, ready(2, waiting=9, running=9, kv=1.0)), FRESH,
     0, STEADY, "steady at 0: no demand"),
    # prewarm
    ("prewarm-from-zero", POLICY, obs(0, 0, watched=DOWN), FRESH,
     2, PREWARM, f"prewarm: {KEY} is Down (>= 2 replicas)"),
    ("prewarm-from-one", POLICY, obs(0, 1, ready(1), watched=DOWN), FRESH,
     2, PREWARM, f"prewarm: {KEY} is Down (>= 2 replicas)"),
    ("prewarm-two-down", POLICY, obs(0, 0, watched=(WatchedProvider(OTHER, True), *DOWN)), FRESH,
     2, PREWARM, f"prewarm: {KEY}, {OTHER} are Down (>= 2 replicas)"),
    ("prewarm-holds-steady", POLICY, obs(500, 2, ready(2), watched=DOWN),
     replace(settled(500), down_providers=frozenset({KEY})),
     2, PREWARM, f"prewarm: {KEY} is Down (>= 2 replicas)"),
    ("prewarm-below-load-is-load", POLICY, obs(0, 1, ready(1, waiting=7), watched=DOWN), FRESH,
     4, LOAD, "load: 7 waiting over 1 ready replica (target 2 per replica) -> 4"),
    ("prewarm-off", policy(prewarm_replicas=0), obs(0, 0, watched=DOWN), FRESH, 0, STEADY, "steady at 0: no demand"),
    ("healthy-watched-is-no-prewarm", POLICY, obs(0, 0, watched=UP), FRESH, 0, STEADY, "steady at 0: no demand"),
    # bounds
    ("above-max-cut-at-once", POLICY, obs(0, 6, ready(6, waiting=20)), FRESH, 4, BOUNDS, "above maxReplicas 4 -> 4"),
    ("below-min-raised-at-once", policy(min_replicas=2), obs(0, 0), FRESH, 2, BOUNDS, "below minReplicas 2 -> 2"),
    ("load-capped-at-max", POLICY, obs(0, 1, ready(1, waiting=20)), FRESH,
     4, BOUNDS, "load: 20 waiting over 1 ready replica (target 2 per replica) -> 10, capped at maxReplicas 4"),
    ("pinned-at-max", POLICY, obs(0, 4, ready(4, waiting=5)), FRESH,
     4, BOUNDS, "load: 20 waiting over 4 ready replicas (target 2 per replica) -> 10, capped at maxReplicas 4"),
    ("prewarm-capped-at-max", policy(prewarm_replicas=6), obs(0, 1, ready(1), watched=DOWN), FRESH,
     4, BOUNDS, f"prewarm: {KEY} is Down (>= 6 replicas), capped at maxReplicas 4"),
    ("demand-capped-at-max-0", policy(max_replicas=0), obs(0, 0, router=3), FRESH,
     0, BOUNDS, "demand: 3 requests held at routers while at 0 -> 2, capped at maxReplicas 0"),
    ("min-over-max-is-max", policy(min_replicas=5, max_replicas=3), obs(0, 0), FRESH,
     3, BOUNDS, "below minReplicas 3 -> 3"),
    # step down: one step, only after the delay (since below-target and since the last change)
    ("step-down-due", POLICY, obs(1120, 3, ready(3)), replace(settled(), below_target_since=1000, last_scale_time=1000),
     2, LOAD, "load: fits 2 for 2m0s (0 waiting, 0 running, kv cache 0% over 3 ready replicas) -> 2"),
    ("step-down-1ms-early", POLICY, obs(1119.999, 3, ready(3)), replace(settled(), below_target_since=1000),
     3, STEADY, "steady at 3: 0 waiting, 0 running, kv cache 0% over 3 ready replicas; fits 2, step down in 0.001s"),
    ("step-down-waits-for-last-change", POLICY, obs(1120, 3, ready(3)),
     replace(settled(), below_target_since=900, last_scale_time=1050),
     3, STEADY, "steady at 3: 0 waiting, 0 running, kv cache 0% over 3 ready replicas; fits 2, step down in 50s"),
    ("step-down-one-at-a-time", POLICY, obs(1000, 4, ready(4, running=1)), settled(),
     3, LOAD, "load: fits 3 for 1h23m20s (0 waiting, 4 running, kv cache 0% over 4 ready replicas) -> 3"),
    ("step-down-to-min", policy(min_replicas=2), obs(1000, 3, ready(3)), settled(), 2, LOAD, None),
    ("no-step-below-min", policy(min_replicas=2), obs(1000, 2, ready(2)), settled(),
     2, STEADY, "steady at 2: 0 waiting, 0 running, kv cache 0% over 2 ready replicas"),
    ("no-step-while-load-needs-it", POLICY, obs(1000, 3, ready(3, waiting=5 / 3)), settled(), 3, STEADY, None),
    ("kv-step-down-when-it-fits", POLICY, obs(1000, 3, ready(3, running=2, kv=0.5)), settled(), 2, LOAD, None),
    ("kv-no-step-down-when-it-would-not", POLICY, obs(1000, 2, ready(2, running=2, kv=0.5)), settled(),
     2, STEADY, None),
    ("ordinary-step-stops-at-1", POLICY, obs(1000, 1, ready(1)), replace(settled(), last_active_time=780),
     1, STEADY, "steady at 1: 0 waiting, 0 running, kv cache 0% over 1 ready replica; idle for 3m40s, to 0 in 6m20s"),
    ("min-1-never-idles-to-zero", policy(min_replicas=1), obs(1000, 1, ready(1)), settled(),
     1, STEADY, "steady at 1: 0 waiting, 0 running, kv cache 0% over 1 ready replica"),
    ("idle-to-zero", POLICY, obs(1000, 1, ready(1)), replace(settled(), last_active_time=400),
     0, IDLE, "idle for 10m0s -> 0"),
    ("idle-to-zero-1ms-early", POLICY, obs(999.999, 1, ready(1)), replace(settled(), last_active_time=400),
     1, STEADY, None),
    ("idle-to-zero-waits-for-last-change", POLICY, obs(1000, 1, ready(1)),
     replace(settled(), last_active_time=0, last_scale_time=900), 1, STEADY, None),
    ("idle-hour", policy(idle_to_zero_s=3600), obs(4000, 1, ready(1)), replace(settled(), last_active_time=400),
     0, IDLE, "idle for 1h0m0s -> 0"),
    # a fresh state (restart without status) never steps down at once
    ("fresh-state-no-step-down", POLICY, obs(1000, 4, ready(4)), FRESH,
     4, STEADY, "steady at 4: 0 waiting, 0 running, kv cache 0% over 4 ready replicas; fits 3, step down in 2m0s"),
    ("fresh-state-no-idle-zero", POLICY, obs(1000, 1, ready(1)), FRESH,
     1, STEADY, "steady at 1: 0 waiting, 0 running, kv cache 0% over 1 ready replica; idle for 0s, to 0 in 10m0s"),
    ("clock-went-back", POLICY, obs(10, 3, ready(3)), ScalerState(last_scale_time=1e6, below_target_since=1e6),
     3, STEADY, "steady at 3: 0 waiting, 0 running, kv cache 0% over 3 ready replicas; fits 2, step down in 2m0s"),
]


@pytest.mark.parametrize(("pol", "o", "state", "replicas", "reason", "message"),
                         [c[1:] for c in SINGLE], ids=[c[0] for c in SINGLE])
def test_single_decision(pol: ScalingPolicy, o: Observation, state: ScalerState, replicas: int, reason: Reason,
                         message: str | None) -> None:
    d = decide(pol, o, state)
    assert (d.replicas, d.reason) == (replicas, reason), d.message
    assert d.changed is (replicas != o.replicas)
    if message is not None:
        assert d.message == message


STATE_AFTER = [
    ("up-records-the-change", obs(50, 1, ready(1, waiting=7)), FRESH,
     ScalerState(last_scale_time=50, last_direction=1, last_active_time=50)),
    ("step-records-and-restarts-below", obs(1000, 3, ready(3)), settled(),
     replace(settled(), last_scale_time=1000, last_direction=-1, below_target_since=1000)),
    ("step-to-where-load-fits-clears-below", obs(1000, 3, ready(3, waiting=4 / 3)), settled(),
     replace(settled(), last_scale_time=1000, last_direction=-1, below_target_since=None, last_active_time=1000)),
    ("below-starts-now", obs(50, 2, ready(2)), ScalerState(last_active_time=10),
     ScalerState(last_active_time=10, below_target_since=50)),
    ("below-kept", obs(50, 2, ready(2)), ScalerState(last_active_time=10, below_target_since=20),
     ScalerState(last_active_time=10, below_target_since=20)),
    ("below-cleared-by-load", obs(50, 2, ready(2, waiting=2)), ScalerState(last_active_time=10, below_target_since=20),
     ScalerState(last_active_time=50)),
    ("idle-clock-starts-at-first-observation", obs(50, 0), FRESH, ScalerState(last_active_time=50)),
    ("router-demand-is-activity", obs(50, 0, router=1), ScalerState(last_active_time=10),
     ScalerState(last_scale_time=50, last_direction=1, last_active_time=50)),
    ("prewarm-is-not-activity", obs(50, 0, watched=DOWN), ScalerState(last_active_time=10),
     ScalerState(last_scale_time=50, last_direction=1, last_active_time=10, down_providers=frozenset({KEY}))),
    ("recovery-starts-hold", obs(50, 2, ready(2), watched=UP),
     ScalerState(last_active_time=10, down_providers=frozenset({KEY})),
     ScalerState(last_active_time=10, recovered_at=((KEY, 50),))),
    ("hold-expires", obs(110, 2, ready(2), watched=UP), ScalerState(last_active_time=10, recovered_at=((KEY, 50),)),
     ScalerState(last_active_time=10, below_target_since=110)),
    ("down-again-re-arms", obs(70, 2, ready(2), watched=DOWN),
     ScalerState(last_active_time=10, recovered_at=((KEY, 50),)),
     ScalerState(last_active_time=10, down_providers=frozenset({KEY}))),
    ("unwatched-is-forgotten", obs(70, 2, ready(2)),
     ScalerState(last_active_time=10, down_providers=frozenset({KEY}), recovered_at=((OTHER, 50),)),
     ScalerState(last_active_time=10, below_target_since=70)),
]


@pytest.mark.parametrize(("o", "before", "after"), [c[1:] for c in STATE_AFTER], ids=[c[0] for c in STATE_AFTER])
def test_state_after(o: Observation, before: ScalerState, after: ScalerState) -> None:
    assert decide(POLICY, o, before).state == after


@pytest.mark.parametrize(("state", "down"), [(ProviderState.DOWN, True), (ProviderState.MISCONFIGURED, False),
                                             (ProviderState.DEGRADED, False), (ProviderState.UNKNOWN, False),
                                             (ProviderState.HEALTHY, False)])
def test_only_down_arms_prewarm(state: ProviderState, down: bool) -> None:
    watched = WatchedProvider.from_state(KEY, state)
    assert watched == WatchedProvider(KEY, down)
    assert decide(POLICY, obs(0, 0, watched=(watched,)), FRESH).replicas == (2 if down else 0)


# --- scenarios: the Deployment follows each decision, the state is fed forward --------------------------------------

Make = Callable[[float, int], Observation]


def run(pol: ScalingPolicy, times: Iterable[float], make: Make, replicas: int = 0,
        state: ScalerState = FRESH) -> dict[float, Decision]:
    """Decide at each of ``times`` (sorted); ``make(t, replicas)`` observes the pool at its current size."""
    out = {}
    for t in sorted(times):
        d = decide(pol, make(t, replicas), state)
        out[t], replicas, state = d, d.replicas, d.state
    return out


def changes(decisions: dict[float, Decision]) -> list[tuple[float, int, Reason]]:
    return [(t, d.replicas, d.reason) for t, d in decisions.items() if d.changed]


def ticks(end: float, *extra: float, step: float = 10.0) -> list[float]:
    return [i * step for i in range(int(end // step) + 1)] + list(extra)


def test_queue_spike_scales_up_at_once_then_steps_down_one_at_a_time() -> None:
    def make(t: float, n: int) -> Observation:
        if t < 10:
            return obs(t, n, ready(n, running=1))
        if t < 40:  # 7 waiting at the one warm pod, the new ones still starting
            return obs(t, n, ready(1, waiting=7) + starting(n - 1))
        return obs(t, n, ready(1, waiting=2, running=1) + ready(n - 1, running=1))

    d = run(replace(POLICY, min_replicas=1), ticks(600, 159.999), make, replicas=1)
    assert changes(d) == [(10, 4, LOAD), (160, 3, LOAD), (280, 2, LOAD), (400, 1, LOAD)]
    assert d[10].message == "load: 7 waiting over 1 ready replica (target 2 per replica) -> 4"
    assert d[20].message == "steady at 4: 7 waiting, 0 running, kv cache 0% over 1 ready replica, 3 starting"
    assert [d[t].replicas for t in (20, 30, 40, 150, 159.999)] == [4, 4, 4, 4, 4]
    assert d[159.999].message.endswith("; fits 3, step down in 0.001s")
    assert d[160].message == "load: fits 3 for 2m0s (2 waiting, 4 running, kv cache 0% over 4 ready replicas) -> 3"
    assert d[600].replicas == 1 and d[600].reason is STEADY


def test_idle_to_zero_exactly_at_idle_to_zero_s() -> None:
    def make(t: float, n: int) -> Observation:
        return obs(t, n, ready(n, running=1 if t <= 100 else 0))

    d = run(POLICY, ticks(800, 699.999), make, replicas=1)
    assert changes(d) == [(700, 0, IDLE)]
    assert d[699.999].replicas == 1
    assert d[699.999].message == ("steady at 1: 0 waiting, 0 running, kv cache 0% over 1 ready replica; "
                                  "idle for 9m59.999s, to 0 in 0.001s")
    assert d[700].message == "idle for 10m0s -> 0"
    assert d[800].message == "steady at 0: no demand"


def test_prewarm_while_down_hold_after_recovery_then_back_to_min() -> None:
    def make(t: float, n: int) -> Observation:
        load = ready(1, running=1) + ready(n - 1) if 200 <= t <= 250 else ready(n)  # failover traffic for a while
        return obs(t, n, load, watched=DOWN if 10 <= t < 300 else UP)

    d = run(POLICY, ticks(1000, 359.999, 479.999, 849.999), make)
    assert changes(d) == [(10, 2, PREWARM), (480, 1, LOAD), (850, 0, IDLE)]
    assert d[10].message == d[290].message == f"prewarm: {KEY} is Down (>= 2 replicas)"
    assert (d[290].reason, d[290].changed) == (PREWARM, False)
    assert (d[300].reason, d[300].message) == (HOLD, f"prewarm hold: {KEY} healthy for 0s of 1m0s (>= 2 replicas)")
    assert (d[359.999].replicas, d[359.999].reason) == (2, HOLD)
    assert d[359.999].message == f"prewarm hold: {KEY} healthy for 59.999s of 1m0s (>= 2 replicas)"
    assert (d[360].replicas, d[360].reason) == (2, STEADY)
    assert d[360].message.endswith("; fits 1, step down in 2m0s")
    assert d[479.999].replicas == 2
    assert d[849.999].replicas == 1  # idle counts from the last real request (250), not from the prewarm


def test_unused_prewarm_returns_to_zero_after_hold_and_ordinary_delays() -> None:
    def make(t: float, n: int) -> Observation:
        return obs(t, n, ready(n), watched=DOWN if 1000 <= t < 1100 else UP)

    d = run(POLICY, ticks(1600), make)
    assert changes(d) == [(1000, 2, PREWARM), (1280, 1, LOAD), (1400, 0, IDLE)]


def test_down_again_during_hold_re_arms_the_floor() -> None:
    def make(t: float, n: int) -> Observation:
        return obs(t, n, ready(n), watched=DOWN if 10 <= t < 300 or 330 <= t < 400 else UP)

    d = run(POLICY, ticks(700, 459.999), make)
    assert [d[t].reason for t in (300, 320, 330, 390, 400, 459.999, 460)] == [HOLD, HOLD, PREWARM, PREWARM, HOLD, HOLD,
                                                                              STEADY]
    assert changes(d) == [(10, 2, PREWARM), (580, 1, LOAD), (700, 0, IDLE)]  # idle since the first observation


def test_prewarm_floor_under_load_steps_down_to_the_floor_and_holds() -> None:
    def make(t: float, n: int) -> Observation:
        waiting = 10.0 if 20 <= t < 30 else 0.0
        return obs(t, n, ready(1, waiting=waiting, running=1) + ready(n - 1, running=1), watched=DOWN)

    d = run(POLICY, ticks(600), make)
    assert changes(d) == [(0, 2, PREWARM), (20, 4, BOUNDS), (150, 3, LOAD), (270, 2, LOAD)]
    assert d[600].replicas == 2 and d[600].reason is PREWARM


def test_several_watched_providers_each_keep_their_own_hold() -> None:
    def make(t: float, n: int) -> Observation:
        return obs(t, n, ready(n), watched=(WatchedProvider(KEY, t < 100), WatchedProvider(OTHER, t < 130)))

    d = run(POLICY, ticks(400), make)
    assert d[100].reason is PREWARM and d[100].message == f"prewarm: {OTHER} is Down (>= 2 replicas)"
    assert d[180].reason is HOLD and d[180].message == f"prewarm hold: {OTHER} healthy for 50s of 1m0s (>= 2 replicas)"
    assert d[190].reason is STEADY
    assert changes(d) == [(0, 2, PREWARM), (310, 1, LOAD)]


def test_demand_pulses_never_flap_zero_one() -> None:
    pulses = {0.0, 300.0, 600.0, 900.0}

    def make(t: float, n: int) -> Observation:
        return obs(t, n, ready(n), router=1 if t in pulses else 0)

    d = run(POLICY, ticks(1600, 1499.999), make)
    assert changes(d) == [(0, 1, DEMAND), (1500, 0, IDLE)]
    assert d[0].message == "demand: 1 request held at routers while at 0 -> 1"


def test_alternating_queue_never_steps_down() -> None:
    def make(t: float, n: int) -> Observation:
        return obs(t, n, ready(n, waiting=6 / n if (t // 60) % 2 == 0 else 0))

    d = run(POLICY, ticks(2000), make, replicas=3, state=settled(0))
    assert changes(d) == []


def test_demand_at_zero_waits_for_its_pod_without_adding_more() -> None:
    def make(t: float, n: int) -> Observation:
        if t < 70:  # the request is held at the router while the pod starts
            return obs(t, n, starting(n), router=1)
        return obs(t, n, ready(n, running=1 if t < 100 else 0))

    d = run(POLICY, ticks(800), make)
    assert changes(d) == [(0, 1, DEMAND), (690, 0, IDLE)]  # idle since its last request ran (t=90)
    assert [d[t].replicas for t in (10, 60, 70, 680)] == [1, 1, 1, 1]
    assert d[60].reason is STEADY and d[60].message.startswith("steady at 1: 1 waiting (1 held at routers)")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("pol", [POLICY, replace(POLICY, min_replicas=1, max_replicas=6, prewarm_replicas=3)],
                         ids=["min0-max4", "min1-max6"])
def test_random_load_never_flaps_and_stays_in_bounds(seed: int, pol: ScalingPolicy) -> None:
    rng = random.Random(seed)
    state, n, last_change, last_active = FRESH, 0, -math.inf, 0.0
    seen: set[tuple[Reason, int]] = set()
    for i in range(3000):
        t = i * 10.0
        busy = rng.random() < (0.3 if (i // 150) % 3 else 0.0)  # every third 25 minutes are quiet
        pods = tuple(PodLoad(rng.random() < 0.9, rng.choice((0, 0, 1, 3, 6)) if busy else 0.0,
                             rng.choice((0, 1, 4)) if busy else 0.0, rng.random() if busy else 0.0)
                     for _ in range(n))
        o = obs(t, n, pods, router=rng.choice((0, 0, 0, 1, 4)) if busy else 0,
                watched=(WatchedProvider(KEY, rng.random() < 0.05),))
        d = decide(pol, o, state)
        assert pol.min_replicas <= d.replicas <= pol.max_replicas
        if d.replicas < n:
            assert d.replicas == n - 1, "scale-down is one step"
            assert t - last_change >= pol.scale_down_delay_s, "a step down comes a full delay after any change"
            assert state.below_target_since is not None and t - state.below_target_since >= pol.scale_down_delay_s
            if d.replicas == 0:
                assert t - last_active >= pol.idle_to_zero_s and d.reason is IDLE
        if d.changed:
            last_change = t
            seen.add((d.reason, 1 if d.replicas > n else -1))
        if (n and any(p.ready and (p.waiting or p.running) for p in pods)) or o.router_waiting:
            last_active = t
        state, n = d.state, d.replicas
    assert {(LOAD, 1), (LOAD, -1)} <= seen  # the run did exercise both directions
    assert (IDLE, -1) in seen or pol.min_replicas > 0


@pytest.mark.parametrize(("pol", "o"), [
    (POLICY, obs(0, -3)),
    (POLICY, obs(0, 2, ())),
    (POLICY, obs(0, 2, ready(2, waiting=math.nan, running=math.inf, kv=math.nan), router=-5)),
    (POLICY, obs(0, 2, ready(2, waiting=-4, running=-1, kv=-1))),
    (POLICY, obs(0, 1, ready(1, waiting=1e308, kv=math.inf))),
    (policy(target_waiting_per_replica=0.0, kv_cache_ceiling=0.0), obs(0, 1, ready(1, waiting=1, kv=0.1))),
    (policy(target_waiting_per_replica=math.nan, kv_cache_ceiling=math.nan), obs(0, 1, ready(1, waiting=1, kv=0.1))),
    (policy(min_replicas=-2, max_replicas=-1, prewarm_replicas=-3), obs(0, 1, ready(1), router=3, watched=DOWN)),
    (policy(scale_down_delay_s=math.nan, idle_to_zero_s=-1), obs(0, 3, ready(3))),
], ids=["negative-replicas", "no-pods", "nan-inf-metrics", "negative-metrics", "huge-metrics", "zero-target-ceiling",
        "nan-target-ceiling", "negative-bounds", "odd-delays"])
def test_total(pol: ScalingPolicy, o: Observation) -> None:
    d = decide(pol, o, FRESH)
    hi = max(pol.max_replicas, 0)
    assert 0 <= d.replicas <= hi and d.reason in Reason and d.message
    assert hash(d.state) is not None  # immutable and hashable, fit for a dict key or a set
    assert decide(pol, o, FRESH) == d  # deterministic


def test_total_edge_answers() -> None:
    assert decide(POLICY, obs(0, 1, ready(1, waiting=1e308)), FRESH).replicas == 4
    assert decide(policy(target_waiting_per_replica=0.0), obs(0, 1, ready(1, waiting=1)), FRESH).replicas == 4
    assert decide(POLICY, obs(0, 2, ready(2, waiting=math.nan, kv=math.nan)), FRESH).replicas == 2


# --- parse_vllm_metrics ---------------------------------------------------------------------------------------------

MODEL = "deepseek-ai/DeepSeek-V3"
EXPOSITION = f"""\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{{generation="0"}} 12086.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.143547392e+09
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{MODEL}"}} 3.0
vllm:num_requests_running{{engine="1",model_name="{MODEL}"}} 2.0
vllm:num_requests_running{{engine="0",model_name="qwen3-32b"}} 4.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="{MODEL}"}} 5.0
vllm:num_requests_waiting{{engine="1",model_name="{MODEL}"}} 1.0
vllm:num_requests_waiting{{engine="0",model_name="qwen3-32b"}} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="{MODEL}"}} 0.5
vllm:kv_cache_usage_perc{{engine="1",model_name="{MODEL}"}} 0.7
vllm:kv_cache_usage_perc{{engine="0",model_name="qwen3-32b"}} 0.3
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{{engine="0",model_name="{MODEL}"}} 1.8432e+06
vllm:prefix_cache_queries_created{{engine="0",model_name="{MODEL}"}} 1.7674e+09
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{{engine="0",finished_reason="stop",model_name="{MODEL}"}} 812.0
vllm:request_success_total{{engine="0",finished_reason="length",model_name="{MODEL}"}} 17.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.001",model_name="{MODEL}"}} 0.0
vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.5",model_name="{MODEL}"}} 640.0
vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",model_name="{MODEL}"}} 829.0
vllm:time_to_first_token_seconds_count{{engine="0",model_name="{MODEL}"}} 829.0
vllm:time_to_first_token_seconds_sum{{engine="0",model_name="{MODEL}"}} 301.25
vllm:time_to_first_token_seconds_created{{engine="0",model_name="{MODEL}"}} 1.7674e+09
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{{block_size="16",cache_dtype="auto",enable_prefix_caching="True",num_gpu_blocks="27258"}} 1.0
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{{max_lora="2",running_lora_adapters="sql-lora,chat-lora",waiting_lora_adapters=""}} 1.7674e+09
# HELP vllm:num_requests_waiting_by_reason Not a vLLM metric: a longer name must not be read as the gauge.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{{reason="capacity",model_name="{MODEL}"}} 99.0
"""


@pytest.mark.parametrize(("model", "expected"), [
    (None, PodLoad(True, waiting=6.0, running=9.0, kv_cache=0.5)),
    (MODEL, PodLoad(True, waiting=6.0, running=5.0, kv_cache=0.6)),
    ("qwen3-32b", PodLoad(True, waiting=0.0, running=4.0, kv_cache=0.3)),
], ids=["all-series", "one-model-two-engines", "other-model"])
def test_parse_realistic_exposition(model: str | None, expected: PodLoad) -> None:
    got = parse_vllm_metrics(EXPOSITION, model)
    assert (got.ready, got.waiting, got.running) == (expected.ready, expected.waiting, expected.running)
    assert got.kv_cache == pytest.approx(expected.kv_cache)


def test_parsed_pod_feeds_decide() -> None:
    pod = parse_vllm_metrics(EXPOSITION, MODEL)
    d = decide(POLICY, obs(0, 1, (pod,)), FRESH)
    assert (d.replicas, d.message) == (3, "load: 6 waiting over 1 ready replica (target 2 per replica) -> 3")


GAUGES = 'vllm:num_requests_waiting{model_name="m"} 2\nvllm:num_requests_running{model_name="m"} 1\n'


@pytest.mark.parametrize(("text", "expected"), [
    (GAUGES, PodLoad(True, 2.0, 1.0, 0.0)),
    (GAUGES + 'vllm:gpu_cache_usage_perc{model_name="m"} 0.4\n', PodLoad(True, 2.0, 1.0, 0.4)),
    (GAUGES + 'vllm:gpu_cache_usage_perc{model_name="m"} 0.4\nvllm:kv_cache_usage_perc{model_name="m"} 0.1\n',
     PodLoad(True, 2.0, 1.0, 0.1)),
    ('vllm:num_requests_waiting{model_name="m"} 2 1700000000000\r\nvllm:num_requests_running{model_name="m",} 1\r\n',
     PodLoad(True, 2.0, 1.0, 0.0)),
    ('vllm:num_requests_waiting{model_name="m"} 2 # {trace_id="abc"} 1.0\nvllm:num_requests_running{model_name="m"}'
     ' 1e0\n# EOF\n', PodLoad(True, 2.0, 1.0, 0.0)),
    ('vllm:num_requests_waiting { model_name = "m" , engine="0" } 2\nvllm:num_requests_running 1\n',
     PodLoad(True, 2.0, 1.0, 0.0)),
    ('vllm:num_requests_waiting{model_name="a\\"b,c}"} +2\nvllm:num_requests_running{model_name="a\\"b,c}"} .5\n',
     PodLoad(True, 2.0, 0.5, 0.0)),
], ids=["no-kv", "removed-kv-name-as-fallback", "current-kv-name-wins", "timestamps-crlf-trailing-comma",
        "exemplar-and-eof", "spaces-and-no-labels", "escaped-label-value"])
def test_parse_small(text: str, expected: PodLoad) -> None:
    got = parse_vllm_metrics(text)
    assert (got.ready, got.waiting, got.running) == (expected.ready, expected.waiting, expected.running)
    assert got.kv_cache == pytest.approx(expected.kv_cache)


def test_parse_model_filter_reads_escaped_name() -> None:
    text = ('vllm:num_requests_waiting{model_name="a\\"b"} 3\nvllm:num_requests_running{model_name="a\\"b"} 1\n'
            'vllm:num_requests_waiting{model_name="other"} 7\nvllm:num_requests_running{model_name="other"} 7\n')
    assert parse_vllm_metrics(text, 'a"b') == PodLoad(True, 3.0, 1.0, 0.0)


def test_parse_nan_value_is_accepted_and_decide_reads_it_as_zero() -> None:
    pod = parse_vllm_metrics(GAUGES.replace(" 2\n", " NaN\n") + 'vllm:kv_cache_usage_perc{model_name="m"} +Inf\n')
    assert math.isnan(pod.waiting) and pod.kv_cache == math.inf
    assert decide(POLICY, obs(0, 1, (pod,)), FRESH).replicas == 1


@pytest.mark.parametrize(("text", "model", "error"), [
    ("<html><body>502 Bad Gateway</body></html>\n", None, "metrics line 1: not a Prometheus sample: '<html>"),
    ("# HELP x\n" + GAUGES.replace(" 2\n", " two\n"), None,
     "metrics line 2: vllm:num_requests_waiting has a bad value 'two'"),
    (GAUGES.replace(" 2\n", " 1_000\n"), None, "metrics line 1: vllm:num_requests_waiting has a bad value '1_000'"),
    (GAUGES + 'vllm:kv_cache_usage_perc{model_name="m} 0.4\n', None, "metrics line 3: not a Prometheus sample"),
    (GAUGES + "vllm:kv_cache_usage_perc{model_name=m} 0.4\n", None, "metrics line 3: bad labels {model_name=m}"),
    (GAUGES + 'vllm:kv_cache_usage_perc{a="1" b="2"} 0.4\n', None, "metrics line 3: bad labels"),
    (GAUGES + "vllm:kv_cache_usage_perc 0.4 1 2\n", None, "metrics line 3: not a Prometheus sample"),
    (GAUGES + "vllm:kv_cache_usage_perc\n", None, "metrics line 3: not a Prometheus sample"),
    ("", None, "no vllm:num_requests_waiting series (no vLLM series at all); is this vLLM's /metrics?"),
    ('vllm:num_requests_waiting{model_name="m"} 2\n', None, "no vllm:num_requests_running series (model_name seen: m)"),
    ('vllm:gpu_cache_usage_perc{model_name="m"} 0.4\n', None, "no vllm:num_requests_waiting series"),
    (GAUGES, "deepseek", 'no vllm:num_requests_waiting series with model_name="deepseek" (model_name seen: m)'),
], ids=["html", "word-value", "underscore-value", "unterminated-label", "unquoted-label", "labels-without-comma",
        "extra-fields", "no-value", "empty", "no-running", "only-removed-kv", "unknown-model"])
def test_parse_rejects(text: str, model: str | None, error: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(error)):
        parse_vllm_metrics(text, model)
