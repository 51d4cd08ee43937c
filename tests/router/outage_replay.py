"""Replaying DeepSeek's five recorded incident shapes against the real router, time-compressed, and measuring them.

Reuses local mode's machinery rather than a copy of it: :func:`llmroute.local.stack.running` (one emulator per
provider, the example's YAML pointed at them with circuit/probe timings divided by :data:`TIME_SCALE`, the real router
process), :class:`llmroute.local.traffic.Traffic` (concurrent openai SDK clients, half of them streaming, with the
traffic generator's class mix), the drill's :class:`~llmroute.local.drill.Phase` and the emulator's
:data:`~llmroute.emulator.INCIDENTS`. The five shapes of ``reference/deepseek-api-safety-and-outages.txt`` are local
mode's four plus July 2025's capacity overload (every request a 503).

The example is the repository's ``deepseek-residency`` without its ModelPool (its pods are another test's subject),
with ``timeToFirstToken: 1s`` (a route that cares about latency says so; the Nov 2025 incident's 5-10 s first token
is replayed at its real length: only hours of incident and the circuit's timings are compressed) and :data:`CIRCUIT`.

Measured per incident, over the ``public`` requests (the only class residency lets reach DeepSeek); a request
*touched* DeepSeek when DeepSeek served it or it needed more than one attempt (DeepSeek is every model's first
backend), and the emulator's own count of attempts cross-checks it:

* ``errors``: client-visible errors, streaming and not, of every class, from onset to the end of recovery;
* ``lost``: requests with no HTTP answer at all (a connection error or a cut stream);
* ``below_1pct_after_s``: from onset until every model's traffic has left DeepSeek: per model, the first
  :data:`WINDOW_S` window of its requests started in which < 1% touched DeepSeek (``left_after_s``), and the latest of
  those. Per model, because each model's DeepSeek backend has its own circuit: each opens after its own failures (the
  reasoner, a fifth of the traffic, collects them later), stays open for ``openDuration`` (longer than a window) and
  then lets recovery trials through whenever a probe passes - which during the slow-first-token incident is every
  time (``GET /models`` answers at once). The two circuits' cycles are not in phase, so one window in which *neither*
  model sees a trial exists only when their open periods happen to overlap for a whole window (a matter of the
  request rate: a loaded machine opens the reasoner's later and the overlap shrinks below a window);
  ``residual_pct``: the share of the public requests that still touched it, each model's from when it left to the end
  of the incident (the circuits' recovery trials: a probe that passes lets a 10% step through, whose first failure
  re-opens it);
* ``return_first_s`` / ``return_full_s``: from recovery until the first public request DeepSeek serves, and until the
  first window in which it serves >= 90% of them; ``return_steps_pct``: its share in each recovery-step-long bucket.
  Requests DeepSeek queued during the slow-first-token incident still miss their budget after it ends and re-open
  the circuit once: :data:`RECOVERY_S` leaves room for that (budget + open duration + the steps).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from llmroute.api.base import parse_duration
from llmroute.emulator import INCIDENTS, FaultPlan
from llmroute.local import stack as stk
from llmroute.local.drill import DEEPSEEK_DRILL, Phase
from llmroute.local.traffic import Result, Traffic
from tests.conftest import example_doc

TARGET = "deepseek"
TIME_SCALE = 20.0
"""Circuit windows, open durations, recovery steps and probe intervals run this much faster than the route says."""
WINDOW_S = 1.0
BASELINE_S, INCIDENT_S, RECOVERY_S = 3.0, 6.0, 8.0
CONCURRENCY = 8
TTFT = "1s"
CIRCUIT = {"errorRatePercent": 25, "minRequests": 5, "recoveryStepDuration": "30s"}
"""The replay route's circuit, over the example's: a 30% failure rate is an outage (the example's 50% lets the Feb 2026
shape through the circuit and leaves it to failover); the window, 20x shorter, holds 20x fewer requests; and a
recovery step, compressed, still outlasts the time-to-first-token budget (:data:`TTFT`, not compressed): the router
holds a step while a trial awaits its first token (a slow provider's fails first), so a shorter step would last a
trial's budget, not the step's duration."""
INCIDENTS_REPLAYED: tuple[Phase, ...] = (
    *(p for p in DEEPSEEK_DRILL if p.faults is not None),
    Phase("overloaded", "Jul 2025, ~12 h: API returning errors (capacity overload)", "overloaded"),
)


@dataclass(frozen=True)
class IncidentFigures:
    """What one replayed incident measured (see the module notes)."""

    name: str
    incident: str
    requests: int
    streamed: int
    errors: int
    lost: int
    public_requests: int
    below_1pct_after_s: float | None
    residual_pct: float
    left_after_s: tuple[tuple[str, float | None], ...]  # per model: its first window below 1% (see the notes)
    return_first_s: float | None
    return_full_s: float | None
    return_steps_pct: tuple[float, ...]
    attempts_at_target: int  # the emulator's count during the incident and its recovery
    touched_target: int  # public requests that touched DeepSeek in that time, from the clients' side


@dataclass(frozen=True)
class Replay:
    incidents: tuple[IncidentFigures, ...]
    baseline_share_pct: float  # public requests DeepSeek served before the first incident
    sensitive_to_cn: int  # pii/phi requests DeepSeek's emulator received (must be 0)
    step_s: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "incidents": [asdict(i) for i in self.incidents]}


def example(folder: Path) -> Path:
    """The replay's example: ``deepseek-residency`` without the ModelPool, :data:`TTFT` and :data:`CIRCUIT`."""
    policy, route, secrets = example_doc("policy"), example_doc("route"), example_doc("secrets")
    policy["spec"]["providers"] = [p for p in policy["spec"]["providers"] if "pool" not in p]
    for model in route["spec"]["models"]:
        model["backends"] = [b for b in model["backends"] if b["provider"] != "vllm"]
    route["spec"]["failover"]["timeToFirstToken"] = TTFT
    route["spec"]["circuitBreaker"].update(CIRCUIT)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "example.yaml").write_text(yaml.safe_dump_all([policy, route, secrets], sort_keys=False))
    return folder


def schedule() -> list[tuple[float, float, Phase]]:
    """(start, end, phase) from the run's start: a baseline, then each incident followed by its recovery."""
    out = [(0.0, BASELINE_S, Phase("baseline", "DeepSeek healthy", None))]
    t = BASELINE_S
    for phase in INCIDENTS_REPLAYED:
        out.append((t, t + INCIDENT_S, phase))
        out.append(
            (
                t + INCIDENT_S,
                t + INCIDENT_S + RECOVERY_S,
                Phase(f"{phase.name}/recovery", "DeepSeek healthy again", None),
            )
        )
        t += INCIDENT_S + RECOVERY_S
    return out


def run(folder: Path) -> Replay:
    """Replay every incident once through one router (a few minutes of CPU on a shared machine: run it once)."""
    return asyncio.run(_session(example(folder)))


async def _session(folder: Path) -> Replay:
    slots = schedule()
    route = yaml.safe_load_all((folder / "example.yaml").read_text())
    step_s = (
        parse_duration(
            next(d for d in route if d["kind"] == "LLMRoute")["spec"]["circuitBreaker"]["recoveryStepDuration"]
        )
        / TIME_SCALE
    )
    async with stk.running(folder, seed=3, time_scale=TIME_SCALE) as st:
        emulator = st.emulators[TARGET]
        traffic = Traffic(
            st.router_url,
            tuple(m.name for m in st.route.spec.models),
            phase_of=lambda t: _slot(slots, t)[2].name,
            concurrency=CONCURRENCY,
            seed=3,
        )
        t0 = time.monotonic()
        task = asyncio.create_task(traffic.run())
        arrivals: list[tuple[float, int]] = []
        current: Phase | None = None
        try:
            while (t := time.monotonic() - t0) < slots[-1][1]:
                phase = _slot(slots, t)[2]
                if phase is not current:
                    current = phase
                    emulator.set_faults(INCIDENTS[phase.faults] if phase.faults else FaultPlan())
                arrivals.append((t, emulator.stats.requests["/chat/completions"]))
                await asyncio.sleep(0.05)
            traffic.stop.set()
            await asyncio.wait_for(task, 30)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        sensitive = sum(
            1 for r in emulator.stats.records if r.user and any(c in r.user for c in (",pii", "/pii", "phi"))
        )
    return summarise(slots, traffic.results, arrivals, step_s, sensitive)


def _slot(slots: Sequence[tuple[float, float, Phase]], t: float) -> tuple[float, float, Phase]:
    return next((s for s in slots if s[0] <= t < s[1]), slots[-1])


def touched(r: Result) -> bool:
    """The request reached DeepSeek: served by it, or failed over from it (it is every model's first backend)."""
    return r.provider == TARGET or r.attempts > 1


def summarise(
    slots: Sequence[tuple[float, float, Phase]],
    results: Sequence[Result],
    arrivals: Sequence[tuple[float, int]],
    step_s: float,
    sensitive: int,
) -> Replay:
    public = sorted((r for r in results if r.data_class == "public" and r.carries is None), key=lambda r: r.started)
    base = [r for r in public if r.phase == "baseline" and r.ok]
    incidents = []
    for start, end, phase in slots:
        if phase.faults is None:
            continue
        rec_end = end + RECOVERY_S
        incidents.append(
            IncidentFigures(
                name=phase.name,
                incident=phase.incident,
                requests=sum(1 for r in results if start <= r.started < rec_end),
                streamed=sum(1 for r in results if start <= r.started < rec_end and r.stream),
                errors=sum(1 for r in results if start <= r.started < rec_end and not r.ok),
                lost=sum(1 for r in results if start <= r.started < rec_end and not r.ok and r.status is None),
                public_requests=sum(1 for r in public if start <= r.started < rec_end),
                **_onset(public, start, end),
                **_return(public, end, rec_end, step_s),
                attempts_at_target=_count(arrivals, end + RECOVERY_S) - _count(arrivals, start),
                touched_target=sum(1 for r in public if start <= r.started < rec_end and touched(r)),
            )
        )
    return Replay(tuple(incidents), _pct(sum(r.provider == TARGET for r in base), len(base)), sensitive, step_s)


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def _count(arrivals: Sequence[tuple[float, int]], t: float) -> int:
    """The emulator's attempt count at ``t`` (the last sample at or before it)."""
    return next((n for s, n in reversed(arrivals) if s <= t), 0)


def _onset(public: Sequence[Result], start: float, end: float) -> dict[str, Any]:
    during = [r for r in public if start <= r.started < end]
    left = {model: _left(start, end, [r for r in during if r.model == model])
            for model in sorted({r.model for r in during})}
    below = None if not left or None in left.values() else max(s for s in left.values() if s is not None)
    rest = [r for r in during if below is not None and r.started >= start + (left[r.model] or 0.0)]
    return {
        "below_1pct_after_s": below,
        "residual_pct": _pct(sum(map(touched, rest)), len(rest)) if below is not None else 100.0,
        "left_after_s": tuple(left.items()),
    }


def _left(start: float, end: float, requests: Sequence[Result]) -> float | None:
    """From ``start`` until the first :data:`WINDOW_S` window of ``requests`` (one model's) in which < 1% touched
    DeepSeek, or None."""
    t = start
    while t + WINDOW_S <= end:
        window = [r for r in requests if t <= r.started < t + WINDOW_S]
        if window and sum(map(touched, window)) < 0.01 * len(window):
            return round(t - start, 2)
        t += 0.1
    return None


def _return(public: Sequence[Result], start: float, end: float, step_s: float) -> dict[str, Any]:
    after = [r for r in public if start <= r.started < end and r.ok]
    served = [r for r in after if r.provider == TARGET]
    first = round(served[0].started - start, 2) if served else None
    full = None
    t = start
    while t + WINDOW_S <= end:
        window = [r for r in after if t <= r.started < t + WINDOW_S]
        if window and sum(r.provider == TARGET for r in window) >= 0.9 * len(window):
            full = round(t - start, 2)
            break
        t += 0.1
    steps = []
    t = start
    while t + step_s <= end:
        bucket = [r for r in after if t <= r.started < t + step_s]
        steps.append(_pct(sum(r.provider == TARGET for r in bucket), len(bucket)))
        t += step_s
    return {"return_first_s": first, "return_full_s": full, "return_steps_pct": tuple(steps)}
