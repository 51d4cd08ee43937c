"""Custom detectors' regexes: bounded cost, since a ProviderPolicy's pattern runs on every request of its routes.

Python's ``re`` backtracks and has no time limit, so a pattern is held to two bounds. At load, ``check`` refuses the
shapes whose backtracking grows exponentially or polynomially with the text (nested quantifiers such as ``(a+)+``,
alternatives that can match the same text under a repeat such as ``(a|ab)*``, and repeats over the same characters
one after the other such as ``\\d+\\d*x``): it reads the parsed pattern and compares the characters each part can
start with and consume, on a probe alphabet (ASCII plus a few non-ASCII letters, digits and spaces), and it
over-approximates, so a refused pattern may be harmless but an accepted one has none of these shapes. At run time,
``finditer`` lets the engine read at most ``2 * MAX_MATCH`` characters past where a match starts, so even a pattern
whose repeat runs to the end of a long run (``[a-z]+@corp`` over a megabyte of letters, which plain ``re`` takes
minutes over) costs time linear in the text (a few seconds per megabyte at worst, against minutes or more).
Pure; patterns are configuration, never request data. It lives with the API so that a ProviderPolicy naming such a
pattern is refused where every other invalid field is (``llmroute validate``, the operator's admission of the policy,
with the field named), and the detector (:mod:`llmroute.core.pii`) applies the same bounds when it runs the pattern.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from typing import Any

_parser: Any = importlib.import_module("re._parser")  # the ``re`` module's own parser (``sre_parse`` is deprecated)

MAX_MATCH = 256
"""Custom matches up to this long are found exactly as ``re`` finds them; the engine never reads more than twice
this far past a match's start (where a longer match is cut)."""

LARGE = 8
"""A repeat that may run more times than this is one whose backtracking can multiply."""

_UNBOUNDED = _parser.MAXREPEAT
_PROBE = frozenset(map(chr, range(128))) | frozenset("éÉßЖж中٣\u00a0\u2028\u017f\u212a")
"""Characters the analysis tries: ASCII, and non-ASCII letters, a digit and spaces that ``\\w``, ``\\d`` and ``\\s``
match (and the long s and Kelvin sign, which match ``s`` and ``k`` case-insensitively)."""
_CATEGORIES = {
    name: frozenset(ch for ch in _PROBE if re.fullmatch(rx, ch))
    for name, rx in (
        ("CATEGORY_DIGIT", r"\d"),
        ("CATEGORY_NOT_DIGIT", r"\D"),
        ("CATEGORY_SPACE", r"\s"),
        ("CATEGORY_NOT_SPACE", r"\S"),
        ("CATEGORY_WORD", r"\w"),
        ("CATEGORY_NOT_WORD", r"\W"),
        ("CATEGORY_LINEBREAK", "\n"),
        ("CATEGORY_NOT_LINEBREAK", "[^\n]"),
    )
}

Node = tuple[Any, Any]
"""One item of a parsed pattern: (opcode, argument)."""


class _Analysis:
    """What each part of one parsed pattern can start with and consume, over ``_PROBE``."""

    def __init__(self, ignorecase: bool) -> None:
        self.ignorecase = ignorecase

    def chars_of(self, code: int) -> frozenset[str]:
        """What the literal ``code`` matches: itself, and with IGNORECASE what ``re`` folds onto it."""
        ch = chr(code)
        if not self.ignorecase:
            return frozenset(ch)
        literal = re.compile(re.escape(ch), re.IGNORECASE)
        return frozenset(c for c in _PROBE if literal.fullmatch(c)) | {ch}

    def charset(self, items: list[Node]) -> frozenset[str]:
        """What a ``[...]`` set matches."""
        out: set[str] = set()
        negate = False
        for op, av in items:
            name = str(op)
            if name == "NEGATE":
                negate = True
            elif name == "LITERAL":
                out |= self.chars_of(av)
            elif name == "RANGE":
                low, high = chr(av[0]), chr(av[1])
                span = re.compile(f"[{re.escape(low)}-{re.escape(high)}]", re.IGNORECASE if self.ignorecase else 0)
                out |= {c for c in _PROBE if span.fullmatch(c)} | {low, high}
            elif name == "CATEGORY":
                out |= _CATEGORIES.get(str(av), _PROBE)
            else:
                out |= _PROBE  # unknown: anything
        return _PROBE - out if negate else frozenset(out)

    def first(self, seq: Any) -> frozenset[str]:
        """What ``seq`` (a sequence of nodes) can start with."""
        return self._leading(seq, self.node_first)

    def _leading(self, seq: Any, of: Callable[[Node], frozenset[str]]) -> frozenset[str]:
        """``of`` each node of ``seq`` that can come first (``seq`` reversed: last), up to and including the first
        one that cannot match empty."""
        out: set[str] = set()
        for node in seq:
            out |= of(node)
            if not self.nullable(node):
                break
        return frozenset(out)

    def node_first(self, node: Node) -> frozenset[str]:
        op, av = node
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            return self.node_chars(node)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            return self.first(av[2]) if av[1] else frozenset()
        if name == "SUBPATTERN":
            return self.first(av[3])
        if name == "ATOMIC_GROUP":
            return self.first(av)
        if name == "BRANCH":
            return frozenset().union(*(self.first(alt) for alt in av[1]))
        if name == "GROUPREF_EXISTS":
            return self.first(av[1]) | (self.first(av[2]) if av[2] is not None else frozenset())
        if name == "GROUPREF":
            return _PROBE
        return frozenset()  # anchors and look-arounds consume nothing

    def nullable(self, node: Node) -> bool:
        """``node`` can match without consuming a character."""
        op, av = node
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            return False
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            return av[0] == 0 or all(self.nullable(n) for n in av[2])
        if name == "SUBPATTERN":
            return all(self.nullable(n) for n in av[3])
        if name == "ATOMIC_GROUP":
            return all(self.nullable(n) for n in av)
        if name == "BRANCH":
            return any(all(self.nullable(n) for n in alt) for alt in av[1])
        if name == "GROUPREF_EXISTS":
            return True
        return True  # anchors, look-arounds and back references (which may be empty)

    def node_chars(self, node: Node) -> frozenset[str]:
        """Every character ``node`` can consume, anywhere in it."""
        op, av = node
        name = str(op)
        if name == "LITERAL":
            return self.chars_of(av)
        if name == "NOT_LITERAL":
            return _PROBE - self.chars_of(av)
        if name == "ANY":
            return _PROBE
        if name == "IN":
            return self.charset(av)
        if name == "GROUPREF":
            return _PROBE
        return frozenset().union(*(self.node_chars(n) for n in _children(node)))

    def large_ends(self, node: Node) -> frozenset[str]:
        """What the large repeats that can end ``node`` consume."""
        op, av = node
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            if av[1] > LARGE:
                return frozenset().union(*(self.node_chars(n) for n in av[2]))
            return self.seq_large_ends(av[2])
        if name in ("SUBPATTERN", "ATOMIC_GROUP", "BRANCH", "GROUPREF_EXISTS"):
            return frozenset().union(*(self.seq_large_ends(seq) for seq in _sequences(node)))
        return frozenset()

    def seq_large_ends(self, seq: Any) -> frozenset[str]:
        return self._leading(reversed(list(seq)), self.large_ends)

    def large_starts(self, node: Node) -> frozenset[str]:
        """What the large repeats that can start ``node`` can start with."""
        op, av = node
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            return self.first(av[2]) if av[1] > LARGE else self.seq_large_starts(av[2])
        if name in ("SUBPATTERN", "ATOMIC_GROUP", "BRANCH", "GROUPREF_EXISTS"):
            return frozenset().union(*(self.seq_large_starts(seq) for seq in _sequences(node)))
        return frozenset()

    def seq_large_starts(self, seq: Any) -> frozenset[str]:
        return self._leading(seq, self.large_starts)


def _sequences(node: Node) -> list[Any]:
    """The sub-sequences directly inside ``node``."""
    op, av = node
    name = str(op)
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        return [av[2]]
    if name == "SUBPATTERN":
        return [av[3]]
    if name == "ATOMIC_GROUP":
        return [av]
    if name == "BRANCH":
        return list(av[1])
    if name == "GROUPREF_EXISTS":
        return [av[1]] + ([av[2]] if av[2] is not None else [])
    if name in ("ASSERT", "ASSERT_NOT"):
        return [av[1]]
    return []


def _children(node: Node) -> list[Node]:
    return [child for seq in _sequences(node) for child in seq]


def reach(pattern: str) -> int:
    """How far past a match's start the engine may read: the pattern's longest match, look-arounds included
    (``_UNBOUNDED`` or more: no limit)."""
    return _reach(_parser.parse(pattern))


def _reach(seq: Any) -> int:
    total = 0
    for node in seq:
        op, av = node
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            total += av[1] * _reach(av[2]) if av[1] < _UNBOUNDED else _UNBOUNDED
        elif name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            total += 1
        elif name == "GROUPREF":
            total += _UNBOUNDED  # as long as the group it repeats (which this does not look up)
        elif name in ("ASSERT", "ASSERT_NOT"):
            total += _reach(av[1])  # the engine reads that far ahead (or behind: counted all the same)
        else:
            total += max((_reach(inner) for inner in _sequences(node)), default=0)
        total = min(total, _UNBOUNDED)
    return total


def check(pattern: str) -> str | None:
    """Why ``pattern`` could backtrack catastrophically, or None when it has none of the shapes that do."""
    try:
        parsed = _parser.parse(pattern)
    except re.error as e:
        return f"invalid pattern ({e.msg} at position {e.pos})"
    analysis = _Analysis(bool(parsed.state.flags & re.IGNORECASE))
    return _check_seq(analysis, parsed, inside_large=False)


def _check_seq(a: _Analysis, seq: Any, inside_large: bool) -> str | None:
    nodes = list(seq)
    for i, node in enumerate(nodes):
        reason = _check_node(a, node, inside_large)
        if reason is not None:
            return reason
        ends = a.large_ends(node)
        if not ends:
            continue
        for following in nodes[i + 1 :]:
            if ends & a.large_starts(following):
                return (
                    "has two repeats over the same characters in a row (as in \\d+\\d*x), whose backtracking "
                    "grows with the square of the text; merge them or bound them to 8 or fewer"
                )
            if not a.nullable(following):
                break
    return None


def _check_node(a: _Analysis, node: Node, inside_large: bool) -> str | None:
    op, av = node
    name = str(op)
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, body = av
        if inside_large and high != low:
            return (
                "nests a repeat inside a repeat (as in (a+)+ or (\\w+\\s?)*), whose backtracking grows "
                "exponentially; write the repeated group with a fixed length or repeat it 8 times or fewer"
            )
        if high > LARGE:
            for branch in _branches(body):
                alternatives = [list(alt) for alt in branch[1][1]]
                firsts = [a.first(alt) for alt in alternatives]
                if any(all(a.nullable(n) for n in alt) for alt in alternatives) or any(
                    firsts[i] & firsts[j] for i in range(len(firsts)) for j in range(i + 1, len(firsts))
                ):
                    return (
                        "repeats alternatives that can match the same text (as in (a|ab)*, (ab|a.)+ or (a|)*), "
                        "whose backtracking grows exponentially; make them start with different characters"
                    )
            return _check_seq(a, body, inside_large=True)
        return _check_seq(a, body, inside_large)
    for seq in _sequences(node):
        reason = _check_seq(a, seq, inside_large)
        if reason is not None:
            return reason
    return None


def _branches(seq: Any) -> Iterator[Node]:
    """Every alternation inside ``seq``, at any depth."""
    for node in seq:
        if str(node[0]) == "BRANCH":
            yield node
        for inner in _sequences(node):
            yield from _branches(inner)


def finditer(pattern: re.Pattern[str], text: str, reach: int) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, non-empty matches only, with the engine never reading more than ``2 * MAX_MATCH``
    characters past where a match starts: ``reach`` (``reach(pattern.pattern)``) says whether it could read more
    than ``MAX_MATCH``.

    A pattern that cannot (``EMP-[0-9]{6}``: most) runs as it is. One that can (``TCK-[0-9]+``) searches windows
    of ``2 * MAX_MATCH`` characters: a match that starts in a window's first half is taken and the next search starts
    after it, else the next starts halfway into the window. A match is then found as ``re`` finds it when it is
    at most ``MAX_MATCH`` long (and the pattern looks no further ahead), and a longer one ends where the window
    does."""
    if reach <= MAX_MATCH:
        yield from (m for m in pattern.finditer(text) if m.end() > m.start())
        return
    n, pos = len(text), 0
    while pos < n:
        hi = min(n, pos + 2 * MAX_MATCH)
        m = pattern.search(text, pos, hi)
        if m is None:
            if hi == n:
                return
            pos = hi - MAX_MATCH
            continue
        if m.start() >= hi - MAX_MATCH and hi < n:
            pos = m.start()  # it may be cut short in this window: search again from where it starts
            continue
        if m.end() > m.start():
            yield m
            pos = m.end()
        else:
            pos = m.end() + 1
