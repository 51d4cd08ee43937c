"""Scaling of self-hosted vLLM pools: how many replicas a pool's Deployment should have now, and why.

Owns the pure decision the operator makes once per interval for each pool (:func:`decide`) and the reading of one
pod's ``/metrics`` into a :class:`PodLoad` (:func:`parse_vllm_metrics`). The operator does the I/O: it lists the
pool's pods (not the terminating ones), scrapes the Ready ones, sums the requests its routers hold for the pool, maps
the prober's state of each provider in ``prewarm.whenDown`` to a :class:`WatchedProvider`, calls :func:`decide`,
patches ``spec.replicas`` when ``Decision.changed`` and keeps ``Decision.state`` (in memory and in status) for the
next call. Pure: ``now`` is seconds on any clock the caller keeps using (monotonic or epoch); nothing is read.

Signals, each interval (pods that are not Ready, or whose ``/metrics`` did not answer, count in ``replicas`` as
starting capacity but contribute no metrics; non-finite or negative metrics count as 0):

* **queue**: ``waiting`` = ``vllm:num_requests_waiting`` over Ready pods + requests held at routers for the pool.
  Load needs ``ceil(waiting / target_waiting_per_replica)`` replicas. That is a size, not "ready + k": while an
  earlier scale-up is still starting (cold starts take minutes), the same queue asks for the same size again and
  nothing is added twice; only a growing queue asks for more.
* **KV cache**: ``kv`` = mean ``vllm:kv_cache_usage_perc`` over Ready pods. Load needs ``ceil(ready * kv /
  kv_cache_ceiling)`` replicas (the same work spread so the mean sits at the ceiling), at least ``ready + 1`` while
  ``kv`` is over the ceiling. It is based on the Ready pods, which carry the measured load, and compared with the
  desired replicas, so pods still starting count as capacity on the way: no second scale-up while they start.
* **activity**: any request waiting or running (or held at a router). Without activity load needs 0 replicas
  whatever KV usage says (cached blocks of finished requests are not load). The idle clock
  (``ScalerState.last_active_time``) counts only activity: a prewarmed but unused pool is idle.
* At 0 replicas pod metrics are ignored (pods still listed are terminating); only router demand brings the pool back.

Rules, in order:

1. **Bounds**: above ``max_replicas`` -> ``max_replicas`` at once (the policy changed).
2. **Up at once** (no delay) to the largest of what load needs (queue or KV, the larger wins), **Demand** (at 0 with
   requests held at routers: at least 1, or what their queue needs), **Prewarm** (a watched provider is Down: at least
   ``prewarm_replicas``), **PrewarmHold** (a watched provider came back less than ``hold_after_recovery_s`` ago: the
   same floor) and ``min_replicas``; capped at ``max_replicas``. Reason ``Bounds`` when a bound changed the answer.
3. **Down one step** (replicas - 1) once everything in 2 has allowed the smaller size continuously for
   ``scale_down_delay_s`` (``below_target_since``) *and* the last change is at least ``scale_down_delay_s`` old.
   Ordinary steps (``Load``) stop at ``max(min_replicas, 1)``; the step 1 -> 0 (``Idle``, only with
   ``min_replicas`` 0) also needs ``idle_to_zero_s`` without any activity. A pool at 0 without demand stays at 0.
4. Otherwise no change: the reason names what holds the size (``Prewarm``, ``PrewarmHold``, ``Bounds`` when pinned
   at max while load wants more), else ``Steady``; the message says what would step it down next, and when.

No flapping: a step down needs the smaller size allowed for a whole delay and a delay since *any* change, so down ->
up -> down takes at least ``scale_down_delay_s``, and 1 -> 0 needs ``idle_to_zero_s`` without the demand that brought
it up (the 0 <-> 1 flapping of kubeai#67 cannot happen). An up after a down is never delayed: requests would queue.
A fresh :class:`ScalerState` (a restarted operator without its status) starts every clock at the first observation,
so nothing steps down before a full delay nor goes to 0 before ``idle_to_zero_s``. Times in the state that are later
than ``now`` (a clock that went backwards) are taken as ``now``: clocks restart rather than stall.

Prewarm: a provider counts as down only when the prober has it **Down** (:data:`PREWARM_STATES`). Misconfigured (a
rejected key, a wrong path) is not an outage that ends by itself: it needs a person, could pin GPUs indefinitely
(a key rotation could start them), and whatever traffic does fail over shows up in the queue signal anyway. A provider
that goes Down again during its hold re-arms the floor; one no longer listed in ``watched`` is forgotten.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from llmroute.api.provider_policy import ProviderState

PREWARM_STATES = frozenset({ProviderState.DOWN})
"""Prober states of a ``prewarm.whenDown`` provider that arm the prewarm floor (not Misconfigured: see above)."""
_EPS = 1e-9
"""Slack for float noise in ``ceil``: 2 * 0.4 / 0.8 must need 1 replica, not 2."""
_HUGE = 1e9
"""Stands in for "unbounded" (a non-positive target or ceiling); always capped by ``max_replicas``."""


class Reason(StrEnum):
    """Why the pool has its size; short, for the REASON column of ``kubectl get modelpools``."""

    LOAD = "Load"
    PREWARM = "Prewarm"
    PREWARM_HOLD = "PrewarmHold"
    DEMAND = "Demand"
    IDLE = "Idle"
    BOUNDS = "Bounds"
    STEADY = "Steady"


@dataclass(frozen=True)
class PodLoad:
    """One pool pod as the operator observed it this interval; ``ready=False`` also when its /metrics did not answer."""

    ready: bool
    waiting: float = 0.0
    running: float = 0.0
    kv_cache: float = 0.0


@dataclass(frozen=True)
class ScalingPolicy:
    """A pool's scaling settings, durations in seconds (0 ``prewarm_replicas``: no prewarm)."""

    min_replicas: int
    max_replicas: int
    target_waiting_per_replica: float
    kv_cache_ceiling: float
    scale_down_delay_s: float
    idle_to_zero_s: float
    prewarm_replicas: int = 0
    hold_after_recovery_s: float = 0.0


@dataclass(frozen=True)
class WatchedProvider:
    """A provider named in ``prewarm.whenDown``; ``key`` is ``"<policy>/<provider>"``, ``down`` the prober says Down."""

    key: str
    down: bool

    @classmethod
    def from_state(cls, key: str, state: ProviderState) -> WatchedProvider:
        """The prober's state mapped by :data:`PREWARM_STATES`."""
        return cls(key, state in PREWARM_STATES)


@dataclass(frozen=True)
class Observation:
    """What the operator saw this interval: ``replicas`` is the Deployment's ``spec.replicas``, ``router_waiting``
    the requests held at routers for this pool (summed over routers, fresh)."""

    now: float
    replicas: int
    pods: tuple[PodLoad, ...]
    router_waiting: int = 0
    watched: tuple[WatchedProvider, ...] = ()


@dataclass(frozen=True)
class ScalerState:
    """What the decision remembers between intervals; times are on the caller's clock, ``recovered_at`` holds
    ``(key, time)`` pairs sorted by key for the watched providers still in their hold."""

    last_scale_time: float | None = None
    last_direction: int = 0
    last_active_time: float | None = None
    below_target_since: float | None = None
    down_providers: frozenset[str] = frozenset()
    recovered_at: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Decision:
    """The size to set, why (``reason`` for the REASON column, ``message`` for status, Events and logs), the state for
    the next call, and whether the size differs from the observed ``spec.replicas``."""

    replicas: int
    reason: Reason
    message: str
    state: ScalerState
    changed: bool = False


@dataclass(frozen=True)
class _Load:
    """The pool's load this interval (Ready pods' metrics plus router demand)."""

    ready: int
    starting: int
    waiting: float
    held: int
    running: float
    kv: float

    @property
    def active(self) -> bool:
        return self.waiting > 0 or self.running > 0


@dataclass(frozen=True)
class _Want:
    """A size something asks for: a need (``-> n``) or a floor (``>= n replicas``)."""

    count: int
    reason: Reason
    why: str
    floor: bool = False

    def say(self) -> str:
        return f"{self.why} (>= {self.count} replicas)" if self.floor else f"{self.why} -> {self.count}"


def decide(policy: ScalingPolicy, obs: Observation, state: ScalerState) -> Decision:
    """The pool's size after ``obs`` (see the module docstring for the rules); total and deterministic."""
    now, replicas, hi = obs.now, max(obs.replicas, 0), max(policy.max_replicas, 0)
    load = _observe(obs, replicas)
    state = _remember(_rewound(state, now), obs, load, policy.hold_after_recovery_s)
    top = max(_wants(policy, load, state, now, replicas), key=lambda w: w.count)
    if replicas > hi:
        return _decision(state, now, replicas, hi, Reason.BOUNDS, f"above maxReplicas {hi} -> {hi}", top.count)
    if min(top.count, hi) > replicas:
        return _up(state, now, replicas, top, hi)
    state = _below(state, now, top.count < replicas)
    step = _step_down(policy, load, state, now, replicas)
    if step is not None:
        return _decision(state, now, replicas, replicas - 1, *step, top.count)
    return Decision(replicas, *_steady(policy, load, state, now, replicas, top, hi), state)


def parse_vllm_metrics(text: str, model_name: str | None = None) -> PodLoad:
    """A Ready pod's load from its ``/metrics`` (Prometheus text exposition); ``model_name`` keeps only its series.

    ``vllm:num_requests_waiting`` and ``vllm:num_requests_running`` are summed over their series (engines, models);
    ``vllm:kv_cache_usage_perc`` is averaged. Comments, other metrics (``_created``, histograms, counters, info
    gauges) and exemplars are ignored. The removed ``vllm:gpu_cache_usage_perc`` (same meaning, vLLM before the
    rename) is read only when no ``vllm:kv_cache_usage_perc`` series is there at all: an older vLLM keeps its KV
    signal, and a current one is never read from the old name. Missing KV usage reads as 0.

    Raises ValueError (the operator then counts the pod as not Ready) on a line that is not a sample, a bad value,
    or when either request gauge has no series (for ``model_name``): a renamed metric or a wrong model name must not
    read as an idle pod, which could scale the pool to 0 under load.
    """
    series: dict[str, list[float]] = {name: [] for name in _WANTED}
    models: set[str] = set()
    for name, labels, value in _samples(text):
        model = labels.get("model_name")
        if model is not None and name.startswith("vllm:"):
            models.add(model)
        if name in series and (model_name is None or model == model_name):
            series[name].append(value)
    for name in (_WAITING, _RUNNING):
        if not series[name]:
            scope = f' with model_name="{model_name}"' if model_name is not None else ""
            seen = f"model_name seen: {', '.join(sorted(models))}" if models else "no vLLM series at all"
            raise ValueError(f"no {name} series{scope} ({seen}); is this vLLM's /metrics?")
    kv = series[_KV] or series[_KV_REMOVED]
    return PodLoad(ready=True, waiting=sum(series[_WAITING]), running=sum(series[_RUNNING]),
                   kv_cache=sum(kv) / len(kv) if kv else 0.0)


# --- decide(): the steps -------------------------------------------------------------------------------------------


def _observe(obs: Observation, replicas: int) -> _Load:
    pods = [p for p in obs.pods if p.ready] if replicas > 0 else []
    held = max(obs.router_waiting, 0)
    kv = [min(_finite(p.kv_cache), 1.0) for p in pods]
    return _Load(ready=len(pods), starting=max(replicas - len(pods), 0),
                 waiting=sum(_finite(p.waiting) for p in pods) + held, held=held,
                 running=sum(_finite(p.running) for p in pods), kv=sum(kv) / len(kv) if kv else 0.0)


def _rewound(state: ScalerState, now: float) -> ScalerState:
    """``state`` with times later than ``now`` taken as ``now``."""
    def at_most(t: float | None) -> float | None:
        return None if t is None else min(t, now)
    return replace(state, last_scale_time=at_most(state.last_scale_time),
                   last_active_time=at_most(state.last_active_time),
                   below_target_since=at_most(state.below_target_since),
                   recovered_at=tuple((k, min(t, now)) for k, t in state.recovered_at))


def _remember(state: ScalerState, obs: Observation, load: _Load, hold_s: float) -> ScalerState:
    """Providers' Down/recovered bookkeeping and the idle clock, updated with ``obs``."""
    now = obs.now
    watched = {w.key for w in obs.watched}
    down = frozenset(w.key for w in obs.watched if w.down)
    recovered = dict(state.recovered_at)
    recovered.update(dict.fromkeys(state.down_providers - down, now))
    holding = tuple(sorted((k, t) for k, t in recovered.items() if k in watched and k not in down and now - t < hold_s))
    active = now if load.active or state.last_active_time is None else state.last_active_time
    return replace(state, down_providers=down, recovered_at=holding, last_active_time=active)


def _wants(policy: ScalingPolicy, load: _Load, state: ScalerState, now: float, replicas: int) -> list[_Want]:
    """Everything that asks for a size, in tie-break order (the first of equal counts names the reason)."""
    lo = min(max(policy.min_replicas, 0), max(policy.max_replicas, 0))
    need = _load_want(policy, load)
    wants = [need]
    if replicas == 0 and load.held > 0:
        wants.insert(0, _Want(max(need.count, 1), Reason.DEMAND,
                              f"demand: {_n(load.held, 'request')} held at routers while at 0"))
    wants.extend(_prewarm_wants(policy, state, now))
    wants.append(_Want(lo, Reason.BOUNDS, f"below minReplicas {lo}"))
    return wants


def _load_want(policy: ScalingPolicy, load: _Load) -> _Want:
    if not load.active:
        return _Want(0, Reason.LOAD, "load: no requests")
    over = f"over {_n(load.ready, 'ready replica')}" + (f", {load.starting} starting" if load.starting else "")
    queue = _need(load.waiting, policy.target_waiting_per_replica)
    kv = _need(load.ready * load.kv, policy.kv_cache_ceiling)
    if load.kv > policy.kv_cache_ceiling:
        kv = max(kv, load.ready + 1)
    if kv > queue:
        return _Want(kv, Reason.LOAD, f"load: kv cache {load.kv:.0%} {over} (ceiling {policy.kv_cache_ceiling:.0%})")
    held = f" ({load.held} held at routers)" if load.held else ""
    return _Want(max(queue, 1), Reason.LOAD, f"load: {_num(load.waiting)} waiting{held} {over} "
                                             f"(target {_num(policy.target_waiting_per_replica)} per replica)")


def _prewarm_wants(policy: ScalingPolicy, state: ScalerState, now: float) -> list[_Want]:
    n = max(policy.prewarm_replicas, 0)
    wants: list[_Want] = []
    if n and state.down_providers:
        keys = sorted(state.down_providers)
        verb = "is" if len(keys) == 1 else "are"
        wants.append(_Want(n, Reason.PREWARM, f"prewarm: {_names(keys)} {verb} Down", floor=True))
    if n and state.recovered_at:
        key, since = max(state.recovered_at, key=lambda kt: (kt[1], kt[0]))  # the latest: its hold ends last
        wants.append(_Want(n, Reason.PREWARM_HOLD, f"prewarm hold: {key} healthy for {_dur(now - since)} of "
                                                   f"{_dur(policy.hold_after_recovery_s)}", floor=True))
    return wants


def _up(state: ScalerState, now: float, replicas: int, top: _Want, hi: int) -> Decision:
    if top.count > hi:
        return _decision(state, now, replicas, hi, Reason.BOUNDS, f"{top.say()}, capped at maxReplicas {hi}", top.count)
    return _decision(state, now, replicas, top.count, top.reason, top.say(), top.count)


def _below(state: ScalerState, now: float, smaller_fits: bool) -> ScalerState:
    """``below_target_since`` kept while a smaller size fits, started now when it starts to, cleared when it stops."""
    if not smaller_fits:
        return replace(state, below_target_since=None)
    return state if state.below_target_since is not None else replace(state, below_target_since=now)


def _step_down(policy: ScalingPolicy, load: _Load, state: ScalerState, now: float,
               replicas: int) -> tuple[Reason, str] | None:
    """``(reason, message)`` of the one-replica step down if it is due now, else None."""
    below, delay = state.below_target_since, policy.scale_down_delay_s
    if replicas == 0 or below is None or now - below < delay:
        return None
    if state.last_scale_time is not None and now - state.last_scale_time < delay:
        return None
    if replicas > 1:
        return Reason.LOAD, f"load: fits {replicas - 1} for {_dur(now - below)} ({_summary(load)}) -> {replicas - 1}"
    idle = now - (state.last_active_time if state.last_active_time is not None else now)
    if idle < policy.idle_to_zero_s:
        return None
    return Reason.IDLE, f"idle for {_dur(idle)} -> 0"


def _steady(policy: ScalingPolicy, load: _Load, state: ScalerState, now: float, replicas: int, top: _Want,
            hi: int) -> tuple[Reason, str]:
    if top.count > hi:
        return Reason.BOUNDS, f"{top.say()}, capped at maxReplicas {hi}"
    if top.count == replicas and top.reason in (Reason.PREWARM, Reason.PREWARM_HOLD):
        return top.reason, top.say()
    if replicas == 0:
        return Reason.STEADY, "steady at 0: no demand"
    return Reason.STEADY, f"steady at {replicas}: {_summary(load)}{_outlook(policy, state, now, replicas)}"


def _outlook(policy: ScalingPolicy, state: ScalerState, now: float, replicas: int) -> str:
    """When the next step down comes if nothing changes ("" if none is on the way)."""
    if state.below_target_since is None:
        return ""
    delay = policy.scale_down_delay_s
    due = state.below_target_since + delay
    if state.last_scale_time is not None:
        due = max(due, state.last_scale_time + delay)
    if replicas > 1:
        return f"; fits {replicas - 1}, step down in {_dur(due - now)}"
    active = state.last_active_time if state.last_active_time is not None else now
    return f"; idle for {_dur(now - active)}, to 0 in {_dur(max(due, active + policy.idle_to_zero_s) - now)}"


def _decision(state: ScalerState, now: float, old: int, new: int, reason: Reason, message: str,
              wanted: int) -> Decision:
    if new != old:
        state = replace(state, last_scale_time=now, last_direction=1 if new > old else -1,
                        below_target_since=now if wanted < new else None)
    return Decision(new, reason, message, state, changed=new != old)


# --- small helpers -------------------------------------------------------------------------------------------------


def _need(amount: float, per: float) -> int:
    """Replicas so that ``amount`` per replica stays within ``per`` (a non-positive ``per`` tolerates nothing)."""
    if amount <= 0:
        return 0
    x = amount / per if per > 0 else _HUGE
    return math.ceil(min(x, _HUGE) - _EPS)


def _finite(x: float) -> float:
    return x if math.isfinite(x) and x > 0 else 0.0


def _summary(load: _Load) -> str:
    held = f" ({load.held} held at routers)" if load.held else ""
    starting = f", {load.starting} starting" if load.starting else ""
    return (f"{_num(load.waiting)} waiting{held}, {_num(load.running)} running, kv cache {load.kv:.0%} "
            f"over {_n(load.ready, 'ready replica')}{starting}")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _num(x: float) -> str:
    return f"{round(x, 2):g}"


def _names(keys: list[str], most: int = 3) -> str:
    more = f" +{len(keys) - most}" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


def _dur(seconds: float) -> str:
    """Go-style duration: ``45s``, ``2m0s``, ``10m0s``, ``1h0m0s`` (milliseconds kept, negatives as 0s)."""
    s = round(max(seconds, 0.0), 3)
    if s < 60:
        return f"{s:g}s"
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return (f"{int(h)}h" if h else "") + f"{int(m)}m{round(sec, 3):g}s"


# --- parse_vllm_metrics(): a small Prometheus text parser ------------------------------------------------------------

_WAITING = "vllm:num_requests_waiting"
_RUNNING = "vllm:num_requests_running"
_KV = "vllm:kv_cache_usage_perc"
_KV_REMOVED = "vllm:gpu_cache_usage_perc"
_WANTED = (_WAITING, _RUNNING, _KV, _KV_REMOVED)
_SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:[ \t]*\{(?P<labels>(?:[^\"{}]|\"(?:[^\"\\]|\\.)*\")*)\})?"
    r"[ \t]+(?P<value>\S+)"
    r"(?:[ \t]+-?[0-9]+(?:\.[0-9]+)?)?"  # timestamp
    r"(?:[ \t]+#.*)?"  # OpenMetrics exemplar
)
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(?:,|$)')
_VALUE = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[Ii]nf|NaN|nan)")
_ESCAPE = re.compile(r"\\(.)")


def _samples(text: str) -> Iterable[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of each sample line; ValueError naming the line on anything else."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.fullmatch(line)
        if m is None:
            raise ValueError(f"metrics line {number}: not a Prometheus sample: {line[:80]!r}")
        if not _VALUE.fullmatch(m["value"]):
            raise ValueError(f"metrics line {number}: {m['name']} has a bad value {m['value'][:40]!r}")
        yield m["name"], _labels(m["labels"] or "", number), float(m["value"])


def _labels(text: str, number: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text.rstrip()):
        m = _LABEL.match(text, pos)
        if m is None:
            raise ValueError(f"metrics line {number}: bad labels {{{text[:80]}}}")
        labels[m[1]] = _ESCAPE.sub(lambda e: "\n" if e[1] == "n" else e[1], m[2])
        pos = m.end()
    return labels
