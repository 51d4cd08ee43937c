"""The attempts of one request: plan, call, classify, record, fail over - until an answer, or the budget is spent.

Owns the execution of a request whose route is already decided (:mod:`llmroute.router.proxy`). Every decision comes
from the pure core: the order from :func:`llmroute.core.selection.plan_attempts` (over ``RouteEntry.usable``: the
backends residency allows for the request's class - every class it was escalated to as well - that have a key, so
no attempt, retry or failover can ever leave that set), what a result means from :mod:`llmroute.core.retry`, backoff
from ``retry.backoff_s``, circuit updates through :mod:`llmroute.router.health`. Rounds: the plan is tried in order;
if ``max_attempts`` is not used up, the plan is made again (open circuits drop out) and retried with jittered
backoff, honouring Retry-After, bounded by ``max_attempts`` and ``total_timeout``.

Three ways to talk to the upstream:

* ``STREAM`` - the client asked for a stream: :class:`llmroute.router.sse.StreamRelay` relays it. Failover is
  invisible until the first data event went to the client; after it, a stall longer than ``idle_timeout`` (no
  bytes at all) or a cut ends the stream with an OpenAI-shaped error event, counted in
  ``llmroute_stream_errors_total``.
* ``ASSEMBLE`` - non-streaming chat/completions: the upstream is asked for a stream and
  :class:`llmroute.router.sse.Assembler` builds the JSON answer (see :mod:`llmroute.router.sse` for why). Nothing
  reaches the client before the end, so any failure, even mid-answer, fails over invisibly.
* ``PLAIN`` - embeddings: one JSON exchange, bounded by ``time_to_first_token`` as a response timeout.

In every mode the first data must come within ``time_to_first_token`` of sending the attempt (keep-alive comments
and blank lines are not data), else the attempt is abandoned: DeepSeek's 5-10 s time-to-first-token incident.
An attempt on a RECOVERING backend is a trial (:meth:`llmroute.router.health.Health.admit`): its circuit's recovery
step waits for it until its first token comes in time (no slower than the circuit's ``slow_first_token``) or the
attempt ends, its outcome recorded - so a slow provider's trial re-opens the circuit before the share climbs.

Reasoning text reaches the client under the published model's name in every mode, whichever backend served, and
each attempt sends the request history in the form its upstream accepts (:mod:`llmroute.router.reasoning`).

Redaction (:mod:`llmroute.router.redaction`, only for a Call that carries placeholders): each attempt sends the body
with its provider's types replaced, and its answer is restored in every mode - the stream on its bytes (held text is
written before the end, or before the error event when the stream breaks), the assembled or plain JSON whole.

ModelPools (:mod:`llmroute.router.pools`): an attempt to a pool backend goes to the pod picked by load, which counts
it in flight until the attempt ends (stream end included). A pool with no ready pod is skipped while any other
candidate is left; when none is, the request is held (round 0 only) until a pod is ready or ``coldStart.maxWait``
passes (then 503 with Retry-After). The held time is not the attempts' time: every attempt budget - time to first
token, idle, and ``total_timeout`` too - starts after the hold, so a client may wait up to ``maxWait +
totalTimeout``. ``maxWait`` is the route's explicit statement of how long a cold start may take, and a pod that just
became ready deserves the same budget as any backend.

Drills: before an attempt is sent, :meth:`llmroute.router.drills.Drills.inject` may turn it into a simulated failure
of the chosen backend (never another one). Nothing is sent; the failure is classified by :mod:`llmroute.core.retry`
and recorded exactly like a real one (attempt metrics, circuit, Retry-After, failover), so the rehearsal exercises the
real failover path.

Audit (only for a Call with a ``trace``, :mod:`llmroute.core.audit`): every attempt is noted with its provider's
jurisdiction and region, the status and classified outcome, and what came next (the reason it moved on).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from llmroute.core import audit, retry
from llmroute.core.drills import SimulatedFailure
from llmroute.core.retry import Action, FailureKind
from llmroute.core.router_config import BackendTarget
from llmroute.core.selection import backend_key, earliest_retry_s, plan_attempts
from llmroute.router import jsonwire, metrics, openai_errors, reasoning, redaction
from llmroute.router.client import EVENT_STREAM, JSON, ClientGone, ClientSink, Reply
from llmroute.router.config_source import RouteEntry, Snapshot
from llmroute.router.drills import Drills
from llmroute.router.health import Health, Trial
from llmroute.router.metrics import Outcome
from llmroute.router.pools import ColdPlan, Pools
from llmroute.router.sse import Assembler, ProtocolError, StreamRelay, end_comment
from llmroute.router.upstream import Exchange, Upstream, UpstreamFailure

log = logging.getLogger("llmroute.router.failover")

BACKOFF_CAP_S = 5.0
"""Longest wait before retrying a backend already tried (a longer Retry-After skips that backend instead)."""
ERROR_BODY_S = 2.0
"""How long an upstream error body may take to arrive (read so the connection can be reused)."""
MAX_BODY = 256 * 1024 * 1024
_CONNECT_ERROR = retry.classify_failure(FailureKind.CONNECT).reason


class Mode(Enum):
    STREAM = "stream"
    ASSEMBLE = "assemble"
    PLAIN = "plain"


@dataclass(slots=True)
class Call:
    """One client request, parsed and routed: what to send, and the residency-checked route it may use."""

    snapshot: Snapshot
    entry: RouteEntry
    path: str
    body: dict[str, Any]
    mode: Mode
    chat: bool
    headers: dict[str, str]
    started: float
    history: reasoning.History | None = None  # assistant messages with reasoning: what each upstream gets
    redaction: redaction.Redaction | None = None  # placeholders: the body each attempt sends, what its answer restores
    trace: audit.Trace | None = None  # the audit trail's notes on this request (None: the config does not audit)
    reroute: Callable[[Snapshot], RouteEntry | None] | None = None  # this request's route under another config


class Served(NamedTuple):
    """How the request ended: a reply to send (None if streamed), its outcome and the serving provider."""

    reply: Reply | None
    outcome: Outcome
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class _Failure:
    outcome: retry.Outcome
    detail: str
    status: int | None = None  # the upstream's HTTP status, when one came
    sent: bool = True  # False: a drill failed the attempt without sending it


class Failover:
    """Per-process dependencies of the attempt loop. ``current`` returns the config now loaded (the watcher's): an
    attempt made after a reload must be allowed by that config too (see :meth:`_Attempts._allowed_now`)."""

    def __init__(self, upstream: Upstream, health: Health, rng: random.Random | None = None,
                 drills: Drills | None = None, pools: Pools | None = None,
                 current: Callable[[], Snapshot | None] | None = None) -> None:
        self.upstream = upstream
        self.health = health
        self.drills = drills or health.drills  # one Drills per process: the probes and the attempts share it
        self.rng = rng or random.Random()
        self.pools = pools  # ModelPool pods and held requests (None: pool providers get no attempt)
        self.current = current

    def run(self, call: Call, sink: ClientSink) -> Coroutine[Any, Any, Served]:
        return _Attempts(self, call, sink).run()


class _Attempts:
    """The attempt loop of one request."""

    __slots__ = ("attempts", "call", "config", "deadline", "deps", "loop", "notes", "now_allowed", "pending",
                 "retry_after", "sink", "trial")

    def __init__(self, deps: Failover, call: Call, sink: ClientSink) -> None:
        self.deps = deps
        self.call = call
        self.sink = sink
        self.attempts = 0
        self.notes: list[str] = []
        self.retry_after: dict[str, float] = {}
        self.pending: tuple[str, str] | None = None  # (provider, reason) of a failure not yet counted as a failover
        self.loop = asyncio.get_running_loop()
        self.config = call.snapshot.config
        self.deadline = call.started + self.config.failover.total_timeout_s
        self.now_allowed: tuple[Snapshot, frozenset[str]] | None = None  # a newer config and what it allows
        self.trial: Trial | None = None  # the attempt under way, sent to a recovering backend, awaiting a first token

    async def run(self) -> Served:
        f, s = self.config.failover, self.config.circuit
        for round_ in range(f.max_attempts):
            if self.attempts >= f.max_attempts or self.loop.time() >= self.deadline:
                break
            budget, pools, cold_start = f.max_attempts - self.attempts, self.deps.pools, self.config.cold_start
            plan = plan_attempts(self.call.entry.usable, self.deps.health.circuits, s,
                                 max_attempts=budget if cold_start is None else len(self.call.entry.usable),
                                 now=self.loop.time(), rng=self.deps.rng)
            if pools is not None and cold_start is not None:  # a config with pools: cut to the budget after them
                cold = await pools.ready_plan(plan, budget, self.call.entry, cold_start, self.sink, hold=round_ == 0)
                if cold.refusal is not None or cold.client_gone:
                    return self._not_held(cold)
                plan, self.deadline = cold.plan, self.deadline + cold.held_s  # held time is not attempt time
            if round_ == 0 and plan.skipped:
                self.notes += [f"skipped {backend_key(k.backend)}: {k.reason}" for k in plan.skipped]
            tried = self.attempts
            for b in plan.attempts:
                if self.attempts >= f.max_attempts or self.loop.time() >= self.deadline:
                    break
                if self.deps.health.is_open(b) or (round_ and not await self._back_off(round_, b)):
                    continue
                if not self._allowed_now(b):
                    continue
                result = await self._attempt(b)
                if isinstance(result, Served):
                    if self.call.trace is not None:
                        status = result.reply.status if result.reply is not None else 200
                        self.call.trace.served(self.call.snapshot.endpoints[b.provider].provider, status,
                                               result.outcome.value)
                    return result
                self._failed(b, result)
            if self.attempts == tried:
                break
        return await self._give_up()

    def _allowed_now(self, b: BackendTarget) -> bool:
        """Whether ``b`` is also allowed (and keyed) by the config loaded *now*, for this request's classes.

        A request keeps the snapshot it started with (its endpoints, keys and budgets), but a reload mid-flight may
        have narrowed residency - a provider removed, a jurisdiction dropped, a class tightened - or redaction - a
        type now replaced for a provider: its retries and failovers must not go where the current config forbids,
        nor carry in clear what it redacts (fail closed on stale config). The new config can
        only take backends away from the request, never add one: the plan is still the old snapshot's."""
        current = self.deps.current() if self.deps.current is not None else None
        if current is None or current is self.call.snapshot:
            return True
        if self.now_allowed is None or self.now_allowed[0] is not current:
            self.now_allowed = (current, _usable_keys(current, self.call))
        if backend_key(b) in self.now_allowed[1]:
            return True
        self.notes.append(f"skipped {backend_key(b)}: not allowed by the config loaded since the request started")
        return False

    async def _back_off(self, round_: int, b: BackendTarget) -> bool:
        wait_after = self.retry_after.get(backend_key(b))
        cap = min(BACKOFF_CAP_S, self.deadline - self.loop.time())
        if wait_after is not None and wait_after > cap:
            self.notes.append(f"{backend_key(b)}: Retry-After {wait_after:g}s is beyond the budget")
            return False
        delay = retry.backoff_s(round_ - 1, base_s=self.config.failover.backoff_s, cap_s=max(cap, 0.0),
                                rng=self.deps.rng, retry_after_s=wait_after)
        await asyncio.sleep(delay)
        return self.loop.time() < self.deadline

    def _attempt(self, b: BackendTarget) -> Coroutine[Any, Any, Served | _Failure]:
        """The attempt's coroutine (handed back, not awaited here: one frame less on every wake-up)."""
        self.attempts += 1
        if self.pending is not None:
            metrics.failover(self.call.entry.model, *self.pending)
            self.pending = None
        trial = self.deps.health.admit(b)
        simulated = self.deps.drills.inject(b.provider)
        attempt: Coroutine[Any, Any, Served | _Failure]
        if simulated is not None:
            attempt = self._simulated(simulated)
        elif self.call.snapshot.endpoints[b.provider].provider.pool is not None:
            attempt = self._on_pod(b)
        else:
            attempt = self._send(b)
        return attempt if trial is None else self._trial(attempt, trial)

    async def _trial(self, attempt: Coroutine[Any, Any, Served | _Failure], trial: Trial) -> Served | _Failure:
        """``attempt``, a trial: it holds its circuit's recovery step until its first token (:meth:`_progress`) or
        its end (its outcome is recorded before the next step can come: nothing is awaited in between)."""
        self.trial = trial
        try:
            return await attempt
        finally:
            self.trial = None
            self.deps.health.settle(trial)

    async def _send(self, b: BackendTarget, base_url: str | None = None) -> Served | _Failure:
        """Send one attempt to ``b`` (to ``base_url`` instead of its endpoint: a pool's pod) and see it through."""
        endpoint = self.call.snapshot.endpoints[b.provider]
        assert endpoint.headers is not None  # RouteEntry.usable holds keyed backends only
        body, history = self.call.body, self.call.history
        if self.call.redaction is not None:
            body, history = self.call.redaction.attempt(b.provider, body, history)
        body["model"] = b.model
        if history is not None:
            body["messages"] = history.messages(endpoint.provider.self_hosted)
        data = jsonwire.dumps(body)
        started = self.loop.time()
        deadline, kind = self._bounded(started + self.config.failover.time_to_first_token_s, FailureKind.TTFT)
        try:
            ex = await self.deps.upstream.post(
                endpoint, self.call.path, data, {**self.call.headers, **endpoint.headers},
                connect_s=self.config.failover.connect_timeout_s, deadline=deadline, on_timeout=kind,
                base_url=base_url)
        except UpstreamFailure as exc:
            return _Failure(retry.classify_failure(exc.kind), exc.detail)
        if not 200 <= ex.status < 300:
            return await self._status(b, ex)
        if self.call.mode is Mode.STREAM:
            return await self._stream(b, ex, started, deadline, kind)
        if self.call.mode is Mode.ASSEMBLE and EVENT_STREAM in ex.content_type:
            return await self._assemble(b, ex, started, deadline, kind)
        return await self._plain(b, ex, deadline, kind)

    async def _on_pod(self, b: BackendTarget) -> Served | _Failure:
        """An attempt on the pod :mod:`llmroute.router.pools` picks, counted in flight on it until it ends."""
        lease = self.deps.pools.lease(b.provider) if self.deps.pools is not None else None
        if lease is None:
            return _Failure(retry.classify_failure(FailureKind.CONNECT), "no ready pod", sent=False)
        refused = False
        try:
            result = await self._send(b, lease.base_url)
            refused = isinstance(result, _Failure) and result.outcome.reason == _CONNECT_ERROR
        finally:
            lease.release(refused=refused)
        return result

    def _not_held(self, cold: ColdPlan) -> Served:
        """A request held for starting pools that ends without an attempt: 503 with Retry-After, or the client left."""
        if cold.refusal is None:
            return Served(None, Outcome.CLIENT_CLOSED)
        headers = {"x-llmroute-data-class": self.call.entry.class_header, "x-llmroute-attempts": "0"}
        return Served(Reply.error(cold.refusal, headers), Outcome.NO_HEALTHY_BACKEND)

    async def _simulated(self, sim: SimulatedFailure) -> _Failure:
        """A drill's failure of this attempt, which was not sent; classified as if it were real."""
        if sim.status is not None:
            return _Failure(retry.classify_status(sim.status, sim.retry_after, now_epoch=time.time()), sim.detail,
                            sim.status, sent=False)
        kind = sim.failure or FailureKind.CONNECT
        if sim.wait_for_ttft:  # as long as a real slow first token would hold the attempt
            deadline, kind = self._bounded(self.loop.time() + self.config.failover.time_to_first_token_s, kind)
            await asyncio.sleep(max(deadline - self.loop.time(), 0.0))
        return _Failure(retry.classify_failure(kind), sim.detail, sent=False)

    def _bounded(self, when: float, kind: FailureKind) -> tuple[float, FailureKind]:
        return (when, kind) if when < self.deadline else (self.deadline, FailureKind.TOTAL)

    def _headers(self, b: BackendTarget) -> dict[str, str]:
        return {"x-llmroute-provider": b.provider, "x-llmroute-data-class": self.call.entry.class_header,
                "x-llmroute-attempts": str(self.attempts)}

    async def _status(self, b: BackendTarget, ex: Exchange) -> Served | _Failure:
        outcome = retry.classify_status(ex.status, ex.header("Retry-After"), now_epoch=time.time())
        try:
            body = await ex.read_body(min(self.loop.time() + ERROR_BODY_S, self.deadline), FailureKind.TOTAL)
            ex.finish()
        except UpstreamFailure:
            body = b""
            ex.abandon()
        if outcome.action is not Action.RETURN:
            return _Failure(outcome, f"HTTP {ex.status}", ex.status)
        self._succeeded(b, None, outcome.reason)
        if self.sink.started:
            event = body if body.lstrip().startswith(b"{") else openai_errors.stream_interrupted(
                b.provider, f"HTTP {ex.status}").body()
            return await self._end_stream(b"data: " + event.strip() + b"\n\n", Outcome.UPSTREAM_CLIENT_ERROR,
                                          b.provider)
        reply = Reply(ex.status, body, ex.content_type or JSON, self._headers(b))
        return Served(reply, Outcome.UPSTREAM_CLIENT_ERROR, b.provider)

    async def _stream(self, b: BackendTarget, ex: Exchange, started: float, deadline: float,
                      kind: FailureKind) -> Served | _Failure:
        comment = end_comment(b.provider, self.attempts) if self.sink.started else None
        relay = (StreamRelay(comment, self.call.entry.reasoning_field) if self.call.redaction is None
                 else self.call.redaction.relay(comment, self.call.entry.reasoning_field, self.call.chat))
        ttft: float | None = None
        try:
            while not relay.done:
                chunk = await ex.read(deadline, kind)
                if not chunk:
                    break
                out = relay.feed(chunk)
                if out:
                    if not self.sink.started:
                        await self.sink.start(self._headers(b))
                    await self.sink.write(out)
                if relay.first_data:
                    ttft, deadline, kind = self._progress(b, started, ttft)
        except UpstreamFailure as exc:
            ex.abandon()
            return self._early(exc.kind, exc.detail) if ttft is None else await self._broken(b, exc.kind,
                                                                                              relay.close())
        except ProtocolError as exc:
            ex.abandon()
            return _Failure(retry.classify_status(502), str(exc))
        except ClientGone:
            ex.abandon()
            return Served(None, Outcome.CLIENT_CLOSED, b.provider)
        if not relay.done:
            ex.abandon()
            return self._early(FailureKind.RESET, "closed early") if ttft is None else await self._broken(
                b, FailureKind.RESET, relay.close())
        ex.finish()
        self._succeeded(b, ttft)
        try:
            tail = relay.close()  # held text of a restoring relay
            if tail:
                await self.sink.write(tail)
            await self.sink.end()
        except ClientGone:
            return Served(None, Outcome.CLIENT_CLOSED, b.provider)
        return Served(None, Outcome.OK, b.provider)

    def _early(self, kind: FailureKind, detail: str) -> _Failure:
        return _Failure(retry.classify_failure(kind), detail)

    def _progress(self, b: BackendTarget, started: float, ttft: float | None) -> tuple[float, float, FailureKind]:
        """Data arrived: the time to first token (recorded once), and the idle deadline that now applies."""
        now = self.loop.time()
        if ttft is None:
            ttft = now - started
            metrics.first_token(b.provider, ttft)
            if self.trial is not None and ttft <= self.config.circuit.slow_first_token_s:  # (a slow one: its end)
                self.deps.health.settle(self.trial)
                self.trial = None
        deadline, kind = self._bounded(now + self.config.failover.idle_timeout_s, FailureKind.IDLE)
        return ttft, deadline, kind

    async def _broken(self, b: BackendTarget, kind: FailureKind, tail: bytes = b"") -> Served:
        """A stream failed after its first event: the client learns it from an error event (after ``tail``, what
        the relay still owed)."""
        outcome = retry.classify_failure(kind)
        metrics.attempt(b.provider, outcome.reason)
        metrics.stream_error(
            b.provider, outcome.reason if outcome.reason in metrics.STREAM_ERRORS else "upstream_error")
        if outcome.circuit_failure:
            self.deps.health.record(b, ok=False)
        log.info("stream from %s broke after the first token: %s", backend_key(b), outcome.reason)
        event = tail + openai_errors.stream_interrupted(b.provider, outcome.reason).sse_event()
        return await self._end_stream(event, Outcome.STREAM_ERROR, b.provider)

    async def _end_stream(self, event: bytes, outcome: Outcome, provider: str | None) -> Served:
        try:
            await self.sink.write(event)
            await self.sink.end()
        except ClientGone:
            return Served(None, Outcome.CLIENT_CLOSED, provider)
        return Served(None, outcome, provider)

    async def _assemble(self, b: BackendTarget, ex: Exchange, started: float, deadline: float,
                        kind: FailureKind) -> Served | _Failure:
        asm = Assembler(self.call.chat, self.call.entry.reasoning_field)
        ttft: float | None = None
        try:
            while not asm.done:
                chunk = await ex.read(deadline, kind)
                if not chunk:
                    asm.end()
                    break
                asm.feed(chunk)
                if asm.first_data:
                    ttft, deadline, kind = self._progress(b, started, ttft)
        except UpstreamFailure as exc:
            ex.abandon()
            return _Failure(retry.classify_failure(exc.kind), exc.detail)
        except ProtocolError as exc:
            ex.abandon()
            return _Failure(retry.classify_status(502), str(exc))
        if not asm.done:
            ex.abandon()
            return _Failure(retry.classify_failure(FailureKind.RESET), "stream ended without [DONE]")
        ex.finish()
        self._succeeded(b, ttft)
        answer = asm.result()
        if self.call.redaction is not None:
            self.call.redaction.answer(answer)
        body = jsonwire.dumps(answer)
        return Served(Reply(200, body, JSON, self._headers(b)), Outcome.OK, b.provider)

    async def _plain(self, b: BackendTarget, ex: Exchange, deadline: float, kind: FailureKind) -> Served | _Failure:
        try:
            body = await ex.read_body(deadline, kind, MAX_BODY)
        except UpstreamFailure as exc:
            ex.abandon()
            return _Failure(retry.classify_failure(exc.kind), exc.detail)
        ex.finish()
        self._succeeded(b, None)
        if self.call.chat:  # a provider that answered a chat request with JSON, not the stream asked for
            body = reasoning.rename_json(body, self.call.entry.reasoning_field)
        if self.call.redaction is not None:
            body = self.call.redaction.plain(body)
        return Served(Reply(ex.status, body, ex.content_type or JSON, self._headers(b)), Outcome.OK, b.provider)

    def _succeeded(self, b: BackendTarget, ttft: float | None, reason: str = "ok") -> None:
        slow = ttft is not None and ttft > self.config.circuit.slow_first_token_s
        self.deps.health.record(b, ok=True, slow=slow)
        metrics.attempt(b.provider, reason)

    def _failed(self, b: BackendTarget, failure: _Failure) -> None:
        o, key = failure.outcome, backend_key(b)
        metrics.attempt(b.provider, o.reason)
        if self.call.trace is not None:
            self.call.trace.failed(self.call.snapshot.endpoints[b.provider].provider, failure.status, o, failure.sent)
        self.notes.append(f"{key}: {o.reason}")
        if o.action is Action.MISCONFIGURED:
            self.deps.health.force_open(b, f"misconfigured: {o.reason} ({failure.detail})")
        elif o.action is Action.TAKE_OUT:
            self.deps.health.take_out(b.provider, f"taken out: {o.reason} ({failure.detail})")
        elif o.circuit_failure:
            self.deps.health.record(b, ok=False)
        if o.retry_after_s is not None:
            self.retry_after[key] = o.retry_after_s
        self.pending = (b.provider, o.reason)
        log.debug("attempt %d on %s failed: %s (%s)", self.attempts, key, o.reason, failure.detail)

    async def _give_up(self) -> Served:
        entry = self.call.entry
        if self.loop.time() >= self.deadline:
            self.notes.append(f"total timeout of {self.config.failover.total_timeout_s:g}s reached")
        wait = earliest_retry_s(entry.usable, self.deps.health.circuits, self.config.circuit, now=self.loop.time())
        err = openai_errors.no_healthy_backend(entry.model, entry.class_header, [*entry.keyless, *self.notes],
                                               max(1, math.ceil(wait or 0)))
        if self.sink.started:
            return await self._end_stream(err.sse_event(), Outcome.NO_HEALTHY_BACKEND, None)
        headers = {"x-llmroute-data-class": entry.class_header, "x-llmroute-attempts": str(self.attempts)}
        return Served(Reply.error(err, headers), Outcome.NO_HEALTHY_BACKEND, None)


def _usable_keys(snapshot: Snapshot, call: Call) -> frozenset[str]:
    """The backends ``snapshot`` lets this request use (its model, declared class and escalation under that config;
    none when the model or a class is gone from it, or when the Call cannot say: fail closed)."""
    now = call.reroute(snapshot) if call.reroute is not None else None
    if now is None:
        return frozenset()
    usable = now.usable
    if snapshot.redaction is not None:  # and redacted as that config says: else not at all
        providers = tuple(b.provider for b in usable)
        policy = snapshot.redaction.policy(now.classes or (now.data_class,), providers)
        covered = redaction.covered_after_reload(policy, call.redaction, call.body, providers)
        usable = tuple(b for b in usable if b.provider in covered)
    return frozenset(backend_key(b) for b in usable)
