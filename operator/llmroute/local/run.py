"""Orchestration of ``llmroute local``: start the stack, drive traffic, play the drill, show, summarise.

The loop samples four times a second: the drill phase (applying its fault plan to the target's emulator when it
changes), the router's /metrics (circuit states, failovers, denials), the emulators' counters and the pools' state
(which run by themselves, :mod:`llmroute.local.pools`). Everything stops by itself after ``duration`` seconds, or on
Ctrl-C (the stack's context managers stop the router, the pools' pods and the emulators). Exit code 0 when every
request went only where its class allows, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
from collections import Counter
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.live import Live

from llmroute.core.compile import compile_route
from llmroute.documents import load
from llmroute.emulator import INCIDENTS, FaultPlan
from llmroute.local import stack as stk
from llmroute.local.drill import DEEPSEEK_DRILL, NO_DRILL, Phase, Slot, phase_at, schedule
from llmroute.local.pools import TICK_FRACTION, TIMER_FRACTION, LocalPool, pool_timings
from llmroute.local.report import Summary, escalation_counts, summarise
from llmroute.local.stack import Metrics
from llmroute.local.traffic import USER_TAG, Result, Traffic
from llmroute.local.view import PoolRow, ProviderRow, Snapshot, render, render_summary

_SEVERITY = ("healthy", "degraded", "recovering", "open")


def run_local(example: Path, *, duration: float, tui: bool, drill: bool, port: int | None,
              summary_json: Path | None, concurrency: int, time_scale: float, seed: int = 0) -> int:
    """Run a local session; returns the process exit code."""
    bundle = load([example])
    route, policy = stk.pick_route(bundle)  # a broken example is one clear error before anything starts
    pools = stk.used_pools(bundle, route, policy)
    phases = DEEPSEEK_DRILL if drill else NO_DRILL
    phase_s = duration / len(phases)
    console = Console(width=max(Console().width, 120))
    if time_scale != 1:
        console.print(f"local mode: circuit-breaker and probe timings run {time_scale:g}x faster than the route "
                      "says (timeouts and time-to-first-token budgets are unchanged)")
    for provider, pool in pools.items():
        timings = pool_timings(pool.spec, time_scale, phase_s)
        console.print(f"local mode: ModelPool {pool.metadata.name} (provider {provider}) runs as emulated vLLM pods; "
                      f"its timers run {time_scale:g}x faster and at most {TIMER_FRACTION:.0%} of a "
                      f"{phase_s:.3g}s phase (intervals {TICK_FRACTION:.0%}): {timings.describe()}")
    summary = asyncio.run(_session(example, duration=duration, tui=tui, phases=phases, port=port,
                                   concurrency=concurrency, seed=seed, time_scale=time_scale))
    console.print(render_summary(summary))
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return 0 if summary.total_violations == 0 and summary.sensitive_to_cn == 0 else 1


def pick_target(st: stk.Stack) -> str:
    """The drill's target: the provider called deepseek, else the first CN provider, else the first provider."""
    names = list(st.emulators)
    if "deepseek" in names:
        return "deepseek"
    return next((n for n in names if st.provider(n).jurisdiction == "CN"), names[0])


async def _session(example: Path, *, duration: float, tui: bool, phases: tuple[Phase, ...], port: int | None,
                   concurrency: int, seed: int, time_scale: float) -> Summary:
    phase_s = duration / len(phases)
    async with stk.running(example, port=port, seed=seed, time_scale=time_scale, phase_s=phase_s) as st:
        config = compile_route(st.route, st.policy)
        slots = schedule(phases, duration)
        target = pick_target(st)
        traffic = Traffic(st.router_url, tuple(m.name for m in st.route.spec.models),
                          phase_of=lambda t: phase_at(slots, t).phase.name, concurrency=concurrency, seed=seed,
                          api_key=st.client_key)
        task = asyncio.create_task(traffic.run())
        t0 = asyncio.get_running_loop().time()
        try:
            async with aiohttp.ClientSession() as http:
                timeline = await _play(st, http, slots, target, t0, duration, traffic, tui)
                traffic.stop.set()
                await _drain(task)
                metrics = await _scrape(http, st.router_url)
        finally:  # Ctrl-C cancels us: stop the clients first, so the router has nothing left to drain
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return summarise(target=target, slots=slots, results=traffic.results, received=_received(st),
                         config=config, circuit_timeline=timeline,
                         residency_denials=int(_sum(metrics, "llmroute_residency_denials_total")),
                         pool_history={p.name: [(t - t0, n) for t, n in p.history] for p in st.pools.values()},
                         router_escalations=_escalations(metrics))


async def _play(st: stk.Stack, http: aiohttp.ClientSession, slots: tuple[Slot, ...], target: str, t0: float,
                duration: float, traffic: Traffic, tui: bool) -> list[tuple[float, str]]:
    """Run the drill's clock (from the loop time ``t0``): apply each phase's faults, sample the router, refresh the
    view. The circuit timeline."""
    loop = asyncio.get_running_loop()
    timeline: list[tuple[float, str]] = []
    current: Slot | None = None
    last_counts: dict[str, tuple[int, float]] = {}
    live = Live(auto_refresh=False, transient=False) if tui else None
    with live if live is not None else contextlib.nullcontext():
        while (t := loop.time() - t0) < duration:
            slot = phase_at(slots, t)
            if slot is not current:
                current = slot
                st.emulators[target].set_faults(INCIDENTS[slot.phase.faults] if slot.phase.faults else FaultPlan())
            metrics = await _scrape(http, st.router_url)
            timeline.append((t, _circuit(metrics, target)))
            if live is not None:
                snapshot = _snapshot(st, slot, t, duration, metrics, traffic.results, last_counts)
                live.update(render(snapshot), refresh=True)
            await asyncio.sleep(0.25)
    return timeline


async def _scrape(http: aiohttp.ClientSession, url: str) -> Metrics:
    """The router's metrics; empty when it does not answer (the view shows "-")."""
    try:
        return await stk.scrape_metrics(http, url)
    except aiohttp.ClientError:
        return {}


async def _drain(task: asyncio.Task[None], grace: float = 30.0) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(task), grace)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _received(st: stk.Stack) -> dict[str, dict[str, int]]:
    """Provider -> data class -> requests that provider's emulator, or its pool's pods, received (``user`` tags)."""
    out: dict[str, dict[str, int]] = {}
    for name, emu in st.emulators.items():
        tags = Counter(r.user.removeprefix(USER_TAG) for r in emu.stats.records
                       if r.user and r.user.startswith(USER_TAG))
        out[name] = dict(tags)
    for name, pool in st.pools.items():
        out[name] = {user.removeprefix(USER_TAG): n for user, n in pool.users().items() if user.startswith(USER_TAG)}
    return out


def _circuit(metrics: Metrics, provider: str) -> str:
    states = [dict(lbl)["state"] for (name, lbl), v in metrics.items()
              if name == "llmroute_circuit_state" and v == 1 and dict(lbl).get("provider") == provider]
    return max(states, key=_SEVERITY.index) if states else "-"


def _sum(metrics: Metrics, name: str, **match: str) -> float:
    return sum(v for (n, lbl), v in metrics.items()
               if n == name and all(dict(lbl).get(k) == want for k, want in match.items()))


def _escalations(metrics: Metrics) -> dict[tuple[str, str, str], int]:
    """The router's ``llmroute_escalations_total`` by (from class, to class, type), the ones above zero."""
    out: dict[tuple[str, str, str], int] = {}
    for (name, lbl), v in metrics.items():
        labels = dict(lbl)
        if name == "llmroute_escalations_total" and v > 0:
            out[(labels.get("from_class", "?"), labels.get("to_class", "?"), labels.get("type", "?"))] = int(v)
    return out


def _rate(count: int, t: float, previous: tuple[int, float] | None) -> float:
    if previous is None or t <= previous[1]:
        return 0.0
    return (count - previous[0]) / (t - previous[1])


def _snapshot(st: stk.Stack, slot: Slot, t: float, total: float, metrics: Metrics, results: list[Result],
              last: dict[str, tuple[int, float]]) -> Snapshot:
    counts = {name: (emu.stats.total, sum(n for o, n in emu.stats.outcomes.items() if o != "ok"))
              for name, emu in st.emulators.items()}
    counts.update({name: (pool.requests(), pool.errors()) for name, pool in st.pools.items()})
    rows = []
    for name, (total, errors) in counts.items():
        recent = [r for r in results[-400:] if r.provider == name and r.ttft_s is not None and r.started > t - 10]
        rows.append(ProviderRow(
            name=name, jurisdiction=st.provider(name).jurisdiction, circuit=_circuit(metrics, name),
            rps=_rate(total, t, last.get(name)), error_rate=errors / total if total else 0,
            ttft_p50_s=statistics.median(r.ttft_s for r in recent if r.ttft_s is not None) if recent else None,
        ))
        last[name] = (total, t)
    by_class: dict[str, Counter[str]] = {}
    for name, classes in _received(st).items():
        for cls, n in classes.items():
            by_class.setdefault(cls, Counter())[st.provider(name).jurisdiction] += n
    return Snapshot(
        phase=slot.phase.name, incident=slot.phase.incident, elapsed_s=t, total_s=total, providers=tuple(rows),
        class_jurisdictions={c: dict(v) for c, v in sorted(by_class.items())},
        failovers=int(_sum(metrics, "llmroute_failovers_total")),
        residency_denials=int(_sum(metrics, "llmroute_residency_denials_total")),
        client_errors=sum(1 for r in results if not r.ok), requests=len(results),
        pools=tuple(_pool_row(name, pool) for name, pool in st.pools.items()),
        escalations=escalation_counts(results),
    )


def _pool_row(provider: str, pool: LocalPool) -> PoolRow:
    d = pool.decision
    return PoolRow(name=pool.name, provider=provider, replicas=pool.replicas, ready=pool.ready, desired=pool.desired,
                   gpus_per_replica=pool.pool.spec.resources.gpus, held=pool.held(),
                   reason=str(d.reason) if d is not None else "", message=d.message if d is not None else "")
