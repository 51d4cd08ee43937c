"""PII detection: what kinds of personal data a text appears to contain, without ever repeating the data.

Owns the detection contract shared by ``llmroute explain --text``, ``llmroute scan``, escalation routing and
redaction: the type names (``TYPES``), the ``Finding`` (type, span in code points, confidence - never the value)
and the ``Detector`` (built-in types plus the ProviderPolicy's custom regex detectors, compiled once). Pure: no I/O,
nothing logged; a finding is a position, so no caller can leak what it points at by printing it.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple, Protocol, TypeVar

from llmroute.api import pattern_cost
from llmroute.api.provider_policy import BUILTIN_PII_TYPES
from llmroute.core import pii_context, pii_keys, pii_net, pii_numbers

TYPES: tuple[str, ...] = BUILTIN_PII_TYPES  # the contract names, declared once with the API that validates them
"""Built-in type names (contract: policies' ``detect`` lists, metrics labels, placeholders and scan output)."""


class Finding(NamedTuple):
    """One detected item: its type, where it is (code-point offsets into the scanned str) and how sure we are. (A
    named tuple: number-dense text makes dozens per request, and a frozen dataclass costs three times as much.)"""

    type: str
    start: int
    end: int
    confidence: float


@dataclass(frozen=True)
class CustomDetector:
    """A detector declared in the ProviderPolicy: a name (not one of ``TYPES``) and a Python ``re`` pattern, held to
    a bounded cost (:mod:`llmroute.api.pattern_cost`: no catastrophic backtracking shapes, a match at most
    ``MAX_MATCH`` long)."""

    name: str
    pattern: str
    confidence: float = 0.9


Hit = tuple[str, int, int, float]
"""What the built-in passes yield for candidates that validated: (type, start, end, confidence). There are three:
from each ``@`` (``pii_net.emails``, only when the text has one), over long tokens (``pii_keys.keys``) and over digit
clusters (``pii_numbers.numbers``, only when the text has a digit)."""


class Detector:
    """Built-in types plus custom regex detectors, compiled once; ``detect`` is safe to call concurrently."""

    def __init__(self, custom: Sequence[CustomDetector] = ()) -> None:
        self._custom = tuple(_compile_custom(c) for c in custom)
        names = [c.name for c in custom]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"custom PII detector {dup[0]!r} is declared more than once")
        self.types: frozenset[str] = frozenset(TYPES) | frozenset(names)

    def detect(self, text: str, key: str = "") -> list[Finding]:
        """Every finding in ``text``: sorted by start, non-overlapping (longer, then more confident, wins).

        ``key``: the name ``text`` is the value of, when it has one (a JSON key in tool-call arguments: ``"phone"``),
        which counts as context the way a column header does."""
        return list(self.detect_many([text], [key])[0])

    def detect_many(self, texts: list[str], keys: list[str]) -> Sequence[Sequence[Finding]]:
        """``detect(text, key)`` for each text and its key, in order (an empty tuple where there is nothing): the
        texts of one request in one pass - the built-in types in one compiled call where it is built
        (``builtin_hits_py`` for each, as Findings, without a Python call per text or per finding), and no list kept
        for a text without a finding (most of them: fewer objects for the garbage collector on a big request)."""
        found: list[list[Finding] | tuple[()]]
        if _compiled_detect is not None:
            found = _compiled_detect(texts, keys, _DETECT_HOOKS, not self._custom)
            if not self._custom:
                return found  # (overlaps resolved there)
        else:
            found = [
                [_new(Finding, h) for h in builtin_hits_py(text, key)] or _NOTHING
                for text, key in zip(texts, keys, strict=True)
            ]
        return self._finish(texts, found)

    def detect_places(self, places: Sequence[Placed]) -> Sequence[Sequence[Finding]]:
        """``detect_many`` of the places' texts and keys (``place_key``), read from the places themselves (no two
        lists made of a big request's places first). ``places``: a list of ``request_text.Place``."""
        if _compiled_detect is not None:
            found = _compiled_detect(places, None, _DETECT_HOOKS, not self._custom)  # type: ignore[arg-type]
            return self._finish([p.text for p in places], found) if self._custom else found
        return self.detect_many([p.text for p in places], [place_key(p) for p in places])

    def _finish(self, texts: list[str], found: list[list[Finding] | tuple[()]]) -> list[Sequence[Finding]]:
        """Custom detectors' hits added (``texts``: what was scanned; read only when there are custom detectors),
        overlaps resolved."""
        if self._custom:
            found = [self._with_custom(text, hits) for text, hits in zip(texts, found, strict=True)]
        return [(list(_resolve(hits)) if len(hits) > 1 else hits) if hits else _NOTHING for hits in found]

    def _with_custom(self, text: str, hits: list[Finding] | tuple[()]) -> list[Finding] | tuple[()]:
        extra = [
            _new(Finding, (name, m.start(), m.end(), confidence))
            for name, pattern, confidence, reach in self._custom
            for m in pattern_cost.finditer(pattern, text, reach)
        ]
        return [*hits, *extra] if extra else hits


_NOTHING: tuple[()] = ()


class Placed(Protocol):
    """A string in a request body as ``request_text.Place`` holds it: its path from the body's root, the text, and
    whether the path runs into JSON held in a string (tool-call arguments)."""

    @property
    def path(self) -> tuple[str | int, ...]: ...
    @property
    def text(self) -> str: ...
    @property
    def in_json(self) -> bool: ...


def place_key(place: Placed) -> str:
    """The JSON key a string in tool-call arguments is the value of, else ``""`` (read like a column header). The
    compiled pass reads a Place's key the same way."""
    last = place.path[-1]
    return last if place.in_json and isinstance(last, str) else ""


def builtin_hits_py(text: str, key: str = "") -> list[Hit]:
    """The built-in types' hits in ``text`` before overlaps are resolved: e-mail addresses, then keys, then the
    numeric types. ``_pii_clusters.detect_many`` (compiled) returns the same for many texts at once (a test compares
    the two); this is what runs without it."""
    context = pii_context.Context(text, key)
    hits = pii_keys.keys(text, context)
    if "@" in text:
        hits[:0] = pii_net.emails(text, context)  # e-mail first: overlaps are resolved in this order
    if context.classes.find(b"0") >= 0:  # a digit (``in`` would try the bytes as an int first, and raise)
        hits.extend(pii_numbers.numbers(text, context))
    return hits


_DETECT_HOOKS = (
    pii_context._CLASS_TABLE,
    pii_context._TOKEN_TABLE,
    pii_numbers._HOOKS,
    pii_keys._assigned,
    pii_keys._random_looking,
    pii_net._NOT_TLDS,
    pii_net._ROLE,
    pii_keys.pem_keys,
    pii_keys._PRIVATE_KEY,
    pii_context.Context,
    Finding,
)
"""What the compiled pass is given: the tables of ``Context``'s two byte views, the numeric types' hooks, the Python
functions it calls where ``builtin_hits_py`` does (a key's assignment pattern and entropy), the suffixes and local
parts no e-mail address has, the PEM keys' function and the marker it looks for first, ``Context`` (made only for a
lookup Python decides), and ``Finding``, the type of what it returns."""

_compiled_detect: Callable[[list[str], list[str], tuple[object, ...], bool], list[list[Finding] | tuple[()]]] | None
try:
    from llmroute.core._pii_clusters import detect_many as _compiled_detect
except ImportError:  # not built
    _compiled_detect = None


def _compile_custom(c: CustomDetector) -> tuple[str, re.Pattern[str], float, int]:
    if c.name in TYPES:
        raise ValueError(f"custom PII detector {c.name!r} clashes with the built-in type of that name")
    if not 0.0 < c.confidence <= 1.0:
        raise ValueError(f"custom PII detector {c.name!r}: confidence must be in (0, 1]")
    try:
        pattern = re.compile(c.pattern)
    except re.error as e:
        raise ValueError(f"custom PII detector {c.name!r}: invalid pattern ({e.msg} at position {e.pos})") from None
    slow = pattern_cost.check(c.pattern)
    if slow is not None:
        raise ValueError(
            f"custom PII detector {c.name!r}: the pattern {slow}. It runs on every request of the "
            f"routes whose policy detects it, so it must not backtrack without bound"
        ) from None
    return (c.name, pattern, c.confidence, pattern_cost.reach(c.pattern))


H = TypeVar("H", bound=Hit)
"""A hit, or a Finding (a hit as a named tuple): overlaps are resolved the same way for both."""


def _resolve(hits: list[H]) -> Iterator[H]:
    """A non-overlapping subset, in order of start: longest first, then most confident, then earliest.

    Most texts' hits overlap nowhere: then that subset is all of them, in order of start (distinct starts, spans not
    empty), which one sort by start finds without the bookkeeping below."""
    ordered = sorted(hits, key=_START)
    end = -1
    for h in ordered:
        if h[1] < end or h[1] >= h[2]:  # an overlap (or an empty span): the general way
            break
        end = h[2]
    else:
        return iter(ordered)
    return iter(resolve_overlapping(hits))


def resolve_overlapping(hits: list[H]) -> list[H]:
    """:func:`_resolve`'s general way, for hits that may overlap (also what its shortcut is tested against)."""
    starts: list[int] = []
    kept: list[H] = []
    for h in sorted(hits, key=lambda h: (h[1] - h[2], -h[3], h[1])):
        i = bisect_left(starts, h[1])
        if (i < len(kept) and kept[i][1] < h[2]) or (i > 0 and kept[i - 1][2] > h[1]):
            continue
        starts.insert(i, h[1])
        kept.insert(i, h)
    return kept


_START = itemgetter(1)
_new = tuple.__new__
"""A Finding from a hit as ``Finding(*hit)`` makes it, without the named tuple's constructor (a Python function)."""

DEFAULT = Detector()


def detect(text: str, key: str = "") -> list[Finding]:
    """``DEFAULT.detect(text, key)``: the built-in types only."""
    return DEFAULT.detect(text, key)


def summarise(findings: Sequence[Finding]) -> str:
    """``"2 email, 1 us_ssn"``, or ``"none"``; counts and types only, never the data."""
    counts = Counter(f.type for f in findings)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"
