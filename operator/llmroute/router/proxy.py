"""One client request, from bytes to routing decision: parse, look up the model, resolve the data class, check
residency, then hand over to :mod:`llmroute.router.failover` for the attempts.

Owns the request-level contract (issue "Router data plane"): the body is parsed once (``json``) to read ``model``
and ``stream``; unknown fields pass through untouched, and ``model`` is replaced per attempt by the backend's
upstream name (and, for chat requests whose history carries reasoning, ``messages`` by the form that upstream
accepts: :mod:`llmroute.router.reasoning`). The data class is the ``x-llmroute-data-class`` header, else the
config's default. When the config escalates on what requests contain (a class with ``detect``), the parsed body's
text is scanned with the snapshot's detector and the request is held to its class **and** every class a finding
calls for (:mod:`llmroute.core.escalation`): the Call carries that combined entry, so every attempt, retry and
failover stays within what all of them allow, and responses name the classes applied (``public,pii``); without
``detect`` nothing is scanned. The refusals are OpenAI-shaped (:mod:`llmroute.router.openai_errors`): 413 too large, 400
malformed JSON, 404 ``model_not_found``, 400 ``unknown_data_class``, 403 ``no_compliant_backend`` (each denied
backend with its reasons), 503 ``no_healthy_backend``, 400 ``pii_blocked`` (the types a class Blocks, never the
values). When the route's classes or usable providers redact (:mod:`llmroute.router.redaction`), the request's
placeholders are issued here, once, and the Call carries them to the attempts. Every request is counted once in
``llmroute_requests_total`` with bounded labels.

When the config audits (``audit``), each request gets a :class:`llmroute.core.audit.Trace` (its id is sent back as
``x-llmroute-request-id``): the classes applied and the types detected are noted here, every attempt by the failover
loop, the first byte of a stream by the sink; at the end the record is sampled (:func:`llmroute.core.audit.keep`)
and handed to :class:`llmroute.router.audit.AuditLog`, which never blocks.

Nothing here logs a prompt, a completion or a key. Called by :mod:`llmroute.router.app`, which owns HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Mapping
from enum import StrEnum
from functools import partial
from typing import Any

from llmroute.core import audit, escalation, request_text
from llmroute.core.escalation import Escalation
from llmroute.core.pii import Finding
from llmroute.core.request_text import Place
from llmroute.router import jsonwire, metrics, openai_errors, reasoning, redaction
from llmroute.router.audit import AuditLog, process_log
from llmroute.router.client import ClientSink, Reply
from llmroute.router.config_source import ConfigWatcher, RouteEntry, Snapshot
from llmroute.router.failover import Call, Failover, Mode, Served
from llmroute.router.metrics import NONE, Outcome
from llmroute.router.openai_errors import RouterError
from llmroute.router.upstream import client_headers

log = logging.getLogger("llmroute.router.proxy")

DATA_CLASS_HEADER = "x-llmroute-data-class"
REQUEST_ID_HEADER = "x-llmroute-request-id"


class Kind(StrEnum):
    """The proxied endpoints, by upstream path (appended to the provider's endpoint, which ends in /v1)."""

    CHAT = "/chat/completions"
    COMPLETIONS = "/completions"
    EMBEDDINGS = "/embeddings"


class _Refusal(Exception):
    def __init__(self, error: RouterError, outcome: Outcome, model: str = NONE, data_class: str = NONE,
                 header: str | None = None) -> None:
        super().__init__(error.message)
        self.error, self.outcome, self.model, self.data_class = error, outcome, model, data_class
        self.header = header or data_class  # x-llmroute-data-class: every class applied, declared first


class Proxy:
    """Serves proxied requests with the watcher's current snapshot (held for the whole request)."""

    def __init__(self, watcher: ConfigWatcher, failover: Failover, audit_log: AuditLog | None = None,
                 rng: random.Random | None = None) -> None:
        self.watcher = watcher
        self.failover = failover
        self.audit_log = audit_log or process_log()
        self.rng = rng or random.Random()  # audit sampling

    async def handle(self, kind: Kind, body: bytes, headers: Mapping[str, str], sink: ClientSink,
                     identity: str | None = None) -> Reply | None:
        """Serve one request; returns the reply to send, or None when it was streamed into ``sink``.
        ``identity``: the caller, when the route checks who calls (for the audit trail only)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        snapshot = self.watcher.current
        if snapshot is None:
            return Reply.error(openai_errors.not_ready())
        trace = None
        if snapshot.config.audit is not None:
            trace = audit.Trace(os.urandom(16).hex(), time.time(), time.perf_counter(), kind.value.lstrip("/"))
            sink = _TracedSink(sink, trace)
        metrics.IN_FLIGHT.inc()
        try:
            call = _route(snapshot, kind, body, headers, started, trace)
        except _Refusal as refusal:
            metrics.IN_FLIGHT.dec()
            metrics.request_done(refusal.model, NONE, NONE, refusal.data_class, refusal.outcome, 0.0)
            extra = {DATA_CLASS_HEADER: refusal.header} if refusal.data_class != NONE else {}
            refused = Reply.error(refusal.error, extra)
            if trace is None:
                return refused
            return self._audited(snapshot, trace, _refused(trace, refusal, time.perf_counter()), identity, refused)
        if trace is not None:
            trace.model, trace.data_class = call.entry.model, call.entry.data_class
            trace.classes, trace.stream = call.entry.classes or (call.entry.data_class,), call.mode is Mode.STREAM
            call.trace = trace
        served = _LEFT
        try:
            served = await self.failover.run(call, sink)
        finally:
            metrics.IN_FLIGHT.dec()
            provider = served.provider or NONE
            endpoint = snapshot.endpoints.get(provider)
            jurisdiction = endpoint.provider.jurisdiction if endpoint else NONE
            metrics.request_done(call.entry.model, provider, jurisdiction, call.entry.data_class, served.outcome,
                                 loop.time() - started)
            if call.redaction is not None:
                call.redaction.report()
        if trace is None:
            return served.reply
        reply = served.reply
        status = reply.status if reply is not None else 200 if sink.started else 499
        end = audit.End(status, served.outcome, _ROUTER_ERRORS.get(served.outcome), served.provider,
                        time.perf_counter())
        return self._audited(snapshot, trace, end, identity, reply)

    def _audited(self, snapshot: Snapshot, trace: audit.Trace, end: audit.End, identity: str | None,
                 reply: Reply | None) -> Reply | None:
        """Emit the request's audit line if sampling keeps it; the reply carries the request id."""
        settings = snapshot.config.audit
        assert settings is not None
        if audit.keep(end.outcome, end.error, settings.sample_rate, self.rng):
            try:
                line = audit.line(audit.record(trace, end, route=snapshot.route_name, config_hash=snapshot.hash,
                                               identity=identity, sample_rate=settings.sample_rate))
            except Exception:  # a bug in the trail must not fail the request it records; it is counted as dropped
                log.exception("the audit line of request %s could not be built", trace.request_id)
                self.audit_log.dropped()
            else:
                self.audit_log.emit(line)
        if reply is None:
            return None
        return reply._replace(headers={**reply.headers, REQUEST_ID_HEADER: trace.request_id})

    def refuse_oversized(self, size: int | None) -> Reply | None:
        """413 before reading a body whose declared length is over the limit (None: read it)."""
        snapshot = self.watcher.current
        if snapshot is None or size is None or size <= snapshot.config.max_request_bytes:
            return None
        metrics.request_done(NONE, NONE, NONE, NONE, Outcome.INVALID_REQUEST, 0.0)
        return Reply.error(openai_errors.too_large(size, snapshot.config.max_request_bytes))


_LEFT = Served(None, Outcome.CLIENT_CLOSED)
"""How a request ended if the attempt loop did not say (its task was cancelled: the client left, or the drain cut
it)."""
_ROUTER_ERRORS = {Outcome.NO_HEALTHY_BACKEND: "no_healthy_backend", Outcome.STREAM_ERROR: "stream_interrupted"}
"""The error code the router itself sent (body or stream event) for a request that ended this way after routing."""


def _refused(trace: audit.Trace, refusal: _Refusal, now: float) -> audit.End:
    """Notes on ``trace`` what a request refused before any attempt was (names the config does not know stay null)
    and returns how it ended."""
    trace.model = None if refusal.model == NONE else refusal.model
    trace.data_class = None if refusal.data_class == NONE else refusal.data_class
    trace.classes = tuple(refusal.header.split(",")) if trace.data_class else ()
    return audit.End(refusal.error.status, refusal.outcome, refusal.error.code, None, now)


class _TracedSink:
    """The client sink of an audited request: notes when the first byte went out, sends the request id."""

    __slots__ = ("inner", "trace")

    def __init__(self, inner: ClientSink, trace: audit.Trace) -> None:
        self.inner, self.trace = inner, trace

    @property
    def started(self) -> bool:
        return self.inner.started

    @property
    def gone(self) -> bool:
        return self.inner.gone

    async def start(self, headers: Mapping[str, str]) -> None:
        self.trace.first_byte = time.perf_counter()
        await self.inner.start({**headers, REQUEST_ID_HEADER: self.trace.request_id})

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def end(self) -> None:
        await self.inner.end()


def _route(snapshot: Snapshot, kind: Kind, raw: bytes, headers: Mapping[str, str], started: float,
           trace: audit.Trace | None = None) -> Call:
    """Parse and route, or raise :class:`_Refusal`."""
    config = snapshot.config
    if len(raw) > config.max_request_bytes:
        raise _Refusal(openai_errors.too_large(len(raw), config.max_request_bytes), Outcome.INVALID_REQUEST)
    body = _parse(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _Refusal(openai_errors.invalid_body("you must provide a model parameter", "model"),
                       Outcome.INVALID_REQUEST)
    declared = headers.get(DATA_CLASS_HEADER) or None
    data_class = declared or config.default_data_class
    if data_class not in config.data_classes:
        known_model = model if snapshot.routes.get((model, config.default_data_class)) else NONE
        raise _Refusal(openai_errors.unknown_data_class(data_class, config.data_classes), Outcome.INVALID_REQUEST,
                       known_model)
    entry = snapshot.routes.get((model, data_class))
    if entry is None:
        raise _Refusal(openai_errors.model_not_found(model, snapshot.published), Outcome.INVALID_REQUEST,
                       data_class=data_class)
    escalated, scanned = None, None
    if snapshot.detector is not None:
        entry, escalated, scanned = _escalate(snapshot, entry, body)
        if trace is not None:
            trace.detected = tuple(sorted({f.type for _, f in scanned}))
    _check_route(entry, escalated)
    mode = _mode(kind, body)
    chat = kind is Kind.CHAT
    history = reasoning.history(body) if chat and reasoning.MARKER in raw else None
    redacting = None if snapshot.redaction is None else _redaction(snapshot.redaction, entry, body, raw, scanned)
    return Call(snapshot=snapshot, entry=entry, path=kind.value, body=body, mode=mode, chat=chat,
                headers=client_headers(headers), started=started, history=history, redaction=redacting,
                reroute=partial(entry_under, model=model, declared=declared, body=body))


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = jsonwire.loads(raw)
    except ValueError as exc:
        raise _Refusal(openai_errors.invalid_json(str(exc)), Outcome.INVALID_REQUEST) from None
    if not isinstance(body, dict):
        raise _Refusal(openai_errors.invalid_body("the request body must be a JSON object"), Outcome.INVALID_REQUEST)
    return body


def _escalate(snapshot: Snapshot, entry: RouteEntry,
              body: dict[str, Any]) -> tuple[RouteEntry, Escalation, list[tuple[Place, Finding]]]:
    """``entry`` held to every class the body's text calls for, and why (types found, never a value); and the scan
    (redaction reuses it). Counted in the detection metrics."""
    started = time.perf_counter()
    entry, esc, scanned, found = _escalated(snapshot, entry, body)
    metrics.detection_done(time.perf_counter() - started, found, esc.pairs)
    return entry, esc, scanned


def _escalated(snapshot: Snapshot, entry: RouteEntry, body: dict[str, Any],
               ) -> tuple[RouteEntry, Escalation, list[tuple[Place, Finding]], Counter[str]]:
    assert snapshot.detector is not None
    scanned = request_text.scan(body, snapshot.detector)
    found = Counter(f.type for _, f in scanned)
    esc = escalation.escalate(entry.data_class, snapshot.detect_rules, found)
    if esc.escalated:
        entry = snapshot.escalated(entry, esc.classes)
    return entry, esc, scanned, found


def entry_under(snapshot: Snapshot, model: str, declared: str | None, body: dict[str, Any]) -> RouteEntry | None:
    """The route ``snapshot`` gives this request (its model, its declared class or else that config's default, and
    what its body holds, escalated by that config's own detectors and rules), or None when the config no longer
    routes the model or the class. Used when a reload comes mid-flight (:meth:`llmroute.router.failover.Failover`):
    attempts after it must be allowed by the new config too - a request that declared no class is held to the new
    default as well as to the one it started with."""
    entry = snapshot.routes.get((model, declared or snapshot.config.default_data_class))
    if entry is not None and snapshot.detector is not None:
        try:
            entry = _escalated(snapshot, entry, body)[0]
        except KeyError:  # a class the new rules escalate to has no route: nothing is known to be allowed
            return None
    return entry


def _redaction(index: redaction.Index, entry: RouteEntry, body: dict[str, Any], raw: bytes,
               scanned: list[tuple[Place, Finding]] | None) -> redaction.Redaction | None:
    """The request's placeholders when its classes or usable providers redact what it holds (None: sent as it came);
    a type its classes Block refuses it with 400 before any attempt. ``scanned``: escalation's scan of the body (the
    same detectors), reused."""
    policy = index.policy(entry.classes or (entry.data_class,), tuple(b.provider for b in entry.usable))
    if policy is None:
        return None
    try:
        return redaction.prepare(policy, body, raw, scanned)
    except redaction.Blocked as exc:
        raise _Refusal(openai_errors.pii_blocked(entry.class_header, exc.types), Outcome.INVALID_REQUEST,
                       entry.model, entry.data_class, entry.class_header) from None


def _check_route(entry: RouteEntry, escalated: Escalation | None = None) -> None:
    if not entry.route.allowed:
        metrics.residency_denial(entry.model, entry.data_class)
        why = escalation.explain(escalated) if escalated is not None else ""
        error = openai_errors.no_compliant_backend(entry.model, entry.class_header, entry.route.denied, why)
        raise _Refusal(error, Outcome.NO_COMPLIANT_BACKEND, entry.model, entry.data_class, entry.class_header)
    if not entry.usable:
        raise _Refusal(openai_errors.no_healthy_backend(entry.model, entry.class_header, entry.keyless, 60),
                       Outcome.NO_HEALTHY_BACKEND, entry.model, entry.data_class, entry.class_header)


def _mode(kind: Kind, body: dict[str, Any]) -> Mode:
    """How to talk to the upstream; a non-streaming completion is asked for as a stream (see sse.Assembler)."""
    if kind is Kind.EMBEDDINGS:
        return Mode.PLAIN
    if body.get("stream") is True:
        return Mode.STREAM
    options = body.get("stream_options")
    body["stream"] = True
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return Mode.ASSEMBLE
