"""Redaction on the request path: Block before any attempt, placeholders in every attempt's body, originals back in
the answer - streamed, assembled or plain.

Owns the router half of issue 11's redaction (the placeholders and the restoring itself are pure:
:mod:`llmroute.core.redaction`):

* **Rules** - :class:`Index` (one per snapshot, only when the config has ``redaction``) gives a route's
  :class:`Policy`: the modes of the request's classes (every class it was escalated to as well) merged, and per usable
  provider the provider's own requirement on top (the strictest mode per type wins), cached per set of classes and
  providers. A route none of whose classes or usable providers redacts gets None and pays nothing.
* **Requests** - :func:`prepare` scans the body (or takes the escalation's scan), keeps the findings of the types
  the policy names, refuses the request with 400 ``pii_blocked`` naming the types (never a value) when its classes
  Block one, and otherwise issues the placeholders once (:class:`llmroute.core.redaction.Redactor`). A request
  without findings gets None: it is sent as it came.
* **Reloads** - an attempt made after a reload mid-flight must be redacted as the loaded config says
  (:func:`covered_after_reload`): a provider the new config redacts more for is skipped when the request holds
  such a type (its placeholders were issued once, under the config it started with).
* **Attempts** - :meth:`Redaction.attempt` gives the body for one provider: the body with that provider's types
  replaced, built once per distinct set of types (a failover to a provider with the same rule reuses it), with its
  own reasoning history (:mod:`llmroute.router.reasoning`) when the request has one; and sets ``restorer`` to what
  that attempt's answer needs (None when its types are only redacted or nothing was replaced).
* **Answers** - :class:`SseRestorer` restores a stream on its bytes, behind :class:`llmroute.router.sse.StreamRelay`
  (:class:`RestoringRelay`). It keeps only an incomplete last line (one event at most), parses each data event of a
  restoring attempt and writes again only the events whose text changed; every other event goes out byte for byte
  (:class:`llmroute.core.redaction.AnswerStream`). Held text goes out in the event with the choice's
  ``finish_reason``, else in an event of its own before ``[DONE]``, an error event, or the end
  (:meth:`SseRestorer.close`). Every event is parsed because nothing cheaper can tell which ones may hold a
  placeholder: a bare echo (``EMAIL_1``) starts with an ordinary letter, and the most precise byte-level check
  measured (4-9 us per event) cost more than parsing it (1-3 us). Attempts that restore nothing use the plain relay.
  Assembled and plain JSON answers are restored whole (:meth:`llmroute.core.redaction.Restorer.answer`).
* **Metrics** - ``llmroute_pii_findings_total{type, action}`` with actions ``redacted`` (findings replaced in a
  request, counted once even across failovers), ``restored`` (placeholders put back in answers) and ``blocked``.

Nothing here logs a value. Used by :mod:`llmroute.router.config_source` (the index), :mod:`llmroute.router.proxy`
(:func:`prepare`) and :mod:`llmroute.router.failover` (attempts and answers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmroute.api.provider_policy import RedactionMode
from llmroute.core import redaction as core
from llmroute.core.pii import CustomDetector, Detector, Finding
from llmroute.core.redaction import Restorer
from llmroute.core.request_text import Place, findings_in, places, scan
from llmroute.core.router_config import Redaction as Settings
from llmroute.router import jsonwire, metrics, reasoning
from llmroute.router.sse import StreamRelay

MAX_POLICIES = 4096
"""Policies kept per snapshot (sets of classes x usable providers seen); beyond, they are built per request."""
ACTIONS = ("redacted", "restored", "blocked")
"""``action`` label values of ``llmroute_pii_findings_total`` this module counts."""


@dataclass(frozen=True, slots=True)
class Rule:
    """What one attempt does: the types it replaces, those it restores, those it keeps redacted in the answer."""

    replace: frozenset[str]
    restore: frozenset[str]
    keep: frozenset[str]


@dataclass(frozen=True, slots=True)
class Policy:
    """The redaction of one route (its classes, its usable providers)."""

    detector: Detector
    types: frozenset[str]
    """Every type some attempt replaces or the classes block: findings of other types are ignored."""
    blocked: frozenset[str]
    rules: Mapping[str, Rule]
    """Per usable provider that replaces something."""


class Index:
    """The config's redaction settings, compiled once per snapshot; :meth:`policy` per route."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.detector = Detector(tuple(CustomDetector(d.name, d.pattern, d.confidence) for d in settings.detectors))
        unknown = sorted({t for m in (*settings.classes.values(), *settings.providers.values()) for t in m}
                         - self.detector.types)
        if unknown:
            raise ValueError(f"unknown redaction types {', '.join(unknown)}")
        self._policies: dict[tuple[tuple[str, ...], tuple[str, ...]], Policy | None] = {}

    def policy(self, classes: Sequence[str], providers: Sequence[str]) -> Policy | None:
        """The policy of a route held to ``classes`` whose usable backends are at ``providers``; None when nothing
        is redacted for it."""
        key = (tuple(classes), tuple(providers))
        if key in self._policies:
            return self._policies[key]
        found = self._build(key[0], key[1])
        if len(self._policies) < MAX_POLICIES:
            self._policies[key] = found
        return found

    def _build(self, classes: tuple[str, ...], providers: tuple[str, ...]) -> Policy | None:
        s = self.settings
        by_class = core.merge(*(s.classes.get(c, {}) for c in classes))
        rules: dict[str, Rule] = {}
        for provider in dict.fromkeys(providers):
            modes = core.merge(by_class, s.providers.get(provider, {}))
            rule = Rule(replace=frozenset(t for t, m in modes.items() if m in core.REPLACED),
                        restore=frozenset(t for t, m in modes.items() if m is RedactionMode.RESTORE),
                        keep=frozenset(t for t, m in modes.items() if m is RedactionMode.REDACT))
            if rule.replace:
                rules[provider] = rule
        blocked = frozenset(t for t, m in by_class.items() if m is RedactionMode.BLOCK)
        if not rules and not blocked:
            return None
        types = blocked.union(*(r.replace for r in rules.values()))
        return Policy(self.detector, types, blocked, rules)


def covered_after_reload(policy: Policy | None, current: Redaction | None, body: dict[str, Any],
                         providers: Sequence[str]) -> frozenset[str]:
    """Which of ``providers`` a request may still be sent to under ``policy``, the redaction of a config loaded
    while it was in flight, given the placeholders it was issued under the config it started with (``current``).

    A provider is dropped when the new config replaces a type for it that the request's own redaction does not
    and the request holds that type; all are dropped when the new config's classes Block a type it holds. Either
    way nothing the loaded config redacts leaves in clear (fail closed; the request keeps its placeholders, issued
    once). The body is scanned only when some provider needs more than the request's redaction replaces, which
    is only after such a reload."""
    if policy is None:
        return frozenset(providers)
    owed: dict[str, frozenset[str]] = {}
    for provider in providers:
        rule = policy.rules.get(provider)
        if rule is not None:
            missing = rule.replace - current.replaced_for(provider) if current is not None else rule.replace
            if missing:
                owed[provider] = missing
    if not owed and not policy.blocked:
        return frozenset(providers)
    held = {f.type for _, f in scan(body, policy.detector)}
    if held & policy.blocked:
        return frozenset()
    return frozenset(p for p in providers if not owed.get(p, frozenset()) & held)


class Blocked(Exception):
    """The request holds types its classes Block; ``types`` are the type names, sorted (never a value)."""

    def __init__(self, types: Sequence[str]) -> None:
        super().__init__(", ".join(types))
        self.types = tuple(types)


def prepare(policy: Policy, body: dict[str, Any], raw: bytes,
            found: Sequence[tuple[Place, Finding]] | None = None) -> Redaction | None:
    """The redaction of one request (None: nothing found to redact); raises :class:`Blocked`. ``found``: the
    request's scan when escalation made one already (over the same body)."""
    texts = places(body)
    if found is None:
        found = findings_in(texts, policy.detector)
    found = [(p, f) for p, f in found if f.type in policy.types]
    if not found:
        return None
    blocked = Counter(f.type for _, f in found if f.type in policy.blocked)
    if blocked:
        for kind, n in blocked.items():
            metrics.pii_finding(kind, "blocked", n)
        raise Blocked(sorted(blocked))
    # a shallow copy: attempts replace ``messages`` on the call's body, the paths found point into these ones
    redactor = core.Redactor(dict(body), texts, found, raw.decode("utf-8", "replace"))
    return Redaction(policy, redactor)


class Redaction:
    """The placeholders of one request and, per attempt, the body it sends and the restorer its answer needs."""

    __slots__ = ("_bodies", "_policy", "_redacted", "_redactor", "_restorers", "restorer")

    def __init__(self, policy: Policy, redactor: core.Redactor) -> None:
        self._policy = policy
        self._redactor = redactor
        self._bodies: dict[frozenset[str], tuple[dict[str, Any], reasoning.History | None] | None] = {}
        self._restorers: dict[Rule, Restorer | None] = {}
        self._redacted: Counter[str] = Counter()
        self.restorer: Restorer | None = None
        """What the current attempt's answer needs restored (None: nothing)."""

    def replaced_for(self, provider: str) -> frozenset[str]:
        """The types this request's attempts to ``provider`` replace."""
        rule = self._policy.rules.get(provider)
        return rule.replace if rule is not None else frozenset()

    def attempt(self, provider: str, body: dict[str, Any],
                history: reasoning.History | None) -> tuple[dict[str, Any], reasoning.History | None]:
        """The body (and reasoning history) to send to ``provider``: ``body``/``history`` when it gets nothing
        replaced."""
        rule = self._policy.rules.get(provider)
        self.restorer = None
        if rule is None:
            return body, history
        if rule.replace not in self._bodies:
            self._bodies[rule.replace] = self._build(rule.replace, history is not None)
        built = self._bodies[rule.replace]
        if built is None:
            return body, history
        if rule not in self._restorers:
            self._restorers[rule] = self._redactor.restorer(rule.restore, rule.keep)
        self.restorer = self._restorers[rule]
        return built

    def _build(self, types: frozenset[str],
               with_history: bool) -> tuple[dict[str, Any], reasoning.History | None] | None:
        redacted, counts = self._redactor.body(types)
        if not counts:
            return None
        for kind, n in counts.items():  # once per request: the most any attempt replaced
            self._redacted[kind] = max(self._redacted[kind], n)
        out = dict(redacted)
        return out, reasoning.history(out) if with_history else None

    def relay(self, comment: bytes | None, reasoning_field: str, chat: bool) -> StreamRelay:
        """The stream relay of the current attempt: restoring when its answer needs it."""
        if self.restorer is None:
            return StreamRelay(comment, reasoning_field)
        return RestoringRelay(comment, reasoning_field, SseRestorer(self.restorer, chat))

    def answer(self, body: dict[str, Any]) -> None:
        """Restore an assembled answer in place (nothing when the current attempt restores nothing)."""
        if self.restorer is not None:
            self.restorer.answer(body)

    def plain(self, body: bytes) -> bytes:
        """A plain JSON answer with the current attempt's placeholders restored (as it came when it has none)."""
        if self.restorer is None:
            return body
        try:
            doc = jsonwire.loads_chunk(body)
        except ValueError:
            return body
        if not isinstance(doc, dict):
            return body
        before = sum(self.restorer.restored.values())
        self.restorer.answer(doc)
        return jsonwire.dumps(doc) if sum(self.restorer.restored.values()) != before else body

    def report(self) -> None:
        """Count the request's findings redacted and placeholders restored (call once, when it is served)."""
        for kind, n in self._redacted.items():
            metrics.pii_finding(kind, "redacted", n)
        for restorer in {id(r): r for r in self._restorers.values() if r is not None}.values():
            for kind, n in restorer.restored.items():
                metrics.pii_finding(kind, "restored", n)


class SseRestorer:
    """Restores one attempt's SSE bytes (see the module docstring); ``feed`` chunks, ``close`` at the end."""

    __slots__ = ("_answer", "_carry")

    def __init__(self, restorer: Restorer, chat: bool) -> None:
        self._answer = core.AnswerStream(restorer, chat)
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        if self._carry:
            data = self._carry + data
        end = data.rfind(b"\n") + 1
        if end < len(data):
            data, self._carry = data[:end], data[end:]
        else:
            self._carry = b""
        if not data:
            return b""
        return b"\n".join([self._line(line) for line in data.split(b"\n")])

    def close(self) -> bytes:
        """What is still owed at the end of the stream: an incomplete last line (completed) and the held text."""
        out = b""
        if self._carry:
            carry, self._carry = self._carry, b""
            out = self._line(carry) + b"\n"
        return out + self._flush()

    def _line(self, line: bytes) -> bytes:
        if line[:5] != b"data:":
            return line
        head = 6 if line[5:6] == b" " else 5
        payload = line[head:]
        cr = payload[-1:] == b"\r"
        if cr:
            payload = payload[:-1]
        text = payload.strip()
        if text == b"[DONE]" or text.startswith((b'{"error"', b'{ "error"')):
            return self._flush() + line
        try:
            chunk = jsonwire.loads_chunk(payload)
        except ValueError:
            return line
        if not isinstance(chunk, dict) or not self._answer.chunk(chunk):
            return line
        return line[:head] + jsonwire.dumps(chunk) + (b"\r" if cr else b"")

    def _flush(self) -> bytes:
        return b"".join(b"data: " + jsonwire.dumps(c) + b"\n\n" for c in self._answer.flush())


class RestoringRelay(StreamRelay):
    """A :class:`llmroute.router.sse.StreamRelay` whose output is restored by an :class:`SseRestorer`."""

    __slots__ = ("_restore",)

    def __init__(self, comment: bytes | None, reasoning_field: str, restore: SseRestorer) -> None:
        super().__init__(comment, reasoning_field)
        self._restore = restore

    def feed(self, chunk: bytes) -> bytes:
        return self._restore.feed(super().feed(chunk))

    def close(self) -> bytes:
        return self._restore.close()
