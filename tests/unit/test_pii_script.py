"""The compiled search for cue words in windows that are not ASCII (``core/_pii_script.c``) is ``Cues.pattern`` and
``_UNITS`` as Python's ``re`` runs them: each character of each word and the look-arounds' letter class, compared with
``re`` over every code point, then whole windows compared with ``Context._window`` on generated multilingual text
dense in cue words, their case variants (``re``'s case folding: Kelvin sign, long s, dotted and dotless i, the
Cyrillic small letters ``re._casefix`` pairs) and letters glued to them."""

from __future__ import annotations

import re
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.core import pii_context

pytestmark = pytest.mark.unit

try:
    from llmroute.core import _pii_clusters
except ImportError:  # not built here (CI requires it: test_pii_clusters)
    _pii_clusters = None  # type: ignore[assignment]

compiled = pytest.mark.skipif(_pii_clusters is None, reason="the compiled plan is not built (pip install -e .)")

CUES = {"phone": pii_context.PHONE, "card": pii_context.CARD, "ssn": pii_context.SSN, "ip": pii_context.IP}
EVERY_CODE_POINT = "".join(map(chr, range(0x110000)))


def _words(cues: pii_context.Cues) -> list[str]:
    """The words of ``cues.pattern``, read back from its source (each ``first(?:rest|rest)`` group)."""
    return [
        first + rest
        for first, rests in re.findall(r"(.)\(\?:([^()]*)\)", cues.pattern.pattern)
        for rest in rests.split("|")
    ]


WORDS = sorted({word for cues in CUES.values() for word in _words(cues)} | set(pii_context._UNIT_WORDS))


@cache
def _matches(ch: str) -> frozenset[str]:
    """Every character ``re`` matches to ``ch`` under IGNORECASE (itself included)."""
    return frozenset(m.group() for m in re.finditer(re.escape(ch), EVERY_CODE_POINT, re.IGNORECASE))


def _positions(flags: bytes) -> list[int]:
    return [m.start() for m in re.finditer(b"\x01", flags)]


FOLDED = sorted({c for word in WORDS for ch in word for c in _matches(ch)})
"""Every character ``re`` matches to a character of a cue word."""
PROBE = "".join(FOLDED) + "".join(map(chr, range(128))) + "\u00e9\u0436\U0001f600"


def test_the_words_read_back_are_the_patterns() -> None:
    """The words these tests draw from are the ones the patterns hold (a word of every kind is among them)."""
    for word in ("phone", "telefonnummer", "\u0442\u0435\u043b\u0435\u0444\u043e\u043d", "\u7535\u8bdd", "order",
                 "\u0437\u0430\u043a\u0430\u0437", "x-forwarded-for", "ss#", "n\u00ba", "\u092b\u094b\u0928", "bytes"):
        assert word in WORDS
    for cues in CUES.values():
        for word in _words(cues):
            assert cues.pattern.fullmatch(word) is not None, word
        assert cues.script is not None  # and the compiled description spells the same words, then the units
        spelled = ["".join(chr(m if isinstance(m, int) else m[0]) for m in chars) for *_, chars in cues.script[0]]
        assert spelled == [*_words(cues), *pii_context._UNIT_WORDS, "%"]


@compiled
def test_every_character_and_the_letter_class_match_what_re_matches() -> None:
    """Over every code point: the compiled letter class is ``re``'s ``[A-Za-z\u00c0-\u024f\u0400-\u04ff]`` under
    IGNORECASE, and each character of each compiled alternative of the four cues accepts exactly what ``re``
    matches to it."""
    assert _pii_clusters is not None
    expected = [m.start() for m in pii_context._LETTER.finditer(EVERY_CODE_POINT)]
    exhausted: set[object] = set()
    for cues in CUES.values():
        assert _positions(_pii_clusters.script_chars(cues.words, -1, 0, EVERY_CODE_POINT)) == expected
        assert cues.script is not None
        for a, (_, _, _, characters) in enumerate(cues.script[0]):
            for k, matcher in enumerate(characters):
                ch = chr(matcher) if isinstance(matcher, int) else chr(matcher[0])
                if matcher not in exhausted:  # each distinct character over every code point once
                    exhausted.add(matcher)
                    accepted = _pii_clusters.script_chars(cues.words, a, k, EVERY_CODE_POINT)
                    assert {EVERY_CODE_POINT[i] for i in _positions(accepted)} == _matches(ch), ch
                # every character of every alternative on the characters that matter (what any of them accepts)
                probe = _pii_clusters.script_chars(cues.words, a, k, PROBE)
                assert probe == bytes(c in _matches(ch) for c in PROBE), (a, k, ch)
    assert len(exhausted) > 60  # (the words' characters: Latin, accented, Cyrillic, Devanagari, CJK, symbols)


# --- whole windows ---------------------------------------------------------------------------------------------------


def _variant(word: str, picks: list[int]) -> str:
    """``word`` with some characters replaced by others ``re`` matches to them (case variants, folds)."""
    out = list(word)
    for n, p in enumerate(picks):
        i = p % len(out)
        variants = sorted(_matches(out[i]))
        out[i] = variants[(p + n) % len(variants)]
    return "".join(out)


words = st.sampled_from(WORDS)
variants = st.builds(_variant, words, st.lists(st.integers(0, 1000), max_size=3))
glue = st.sampled_from(
    [" ", "  ", ": ", ", ", "\t", "#", "# ", "\u2116", "\u2116 ", "(", "((", " :- (", "-", ".", "%", " %", "\u3002",
     "\uff1a", "\u2014", "\u00e9", "\u00c9", "\u0436", "\u0416", "\u017f", "\u212a", "\u0130", "\u0131", "\u2c65",
     "\u1c80", "\u00b5", "\u0345", "\u1e9e", "\u0915", "\u4e2d", "\U0001f600", "\U00010400", "a", "Z", "_"]
)
digits = st.text("0123456789", min_size=1, max_size=12)
script_texts = st.lists(st.one_of(words, variants, glue, digits, st.sampled_from(FOLDED)), max_size=20).map("".join)
"""Texts dense in cue words of every script and their variants, glued to letters of every kind, separators and
digits (mostly not ASCII: the windows the compiled search takes)."""


@compiled
@pytest.mark.parametrize("kind", sorted(CUES))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script_texts, st.integers(0, 200), st.integers(0, 30), st.integers(0, 60), st.integers(0, 30))
def test_compiled_windows_in_any_script_are_the_python_ones(kind: str, text: str, start: int, length: int,
                                                            back: int, ahead: int) -> None:
    """Any window and candidate span in any script: ``_pii_clusters.cue`` answers what ``Context._window`` answers
    (with its patterns under IGNORECASE), and leaves nothing to it."""
    assert _pii_clusters is not None
    cues = CUES[kind]
    start = min(start, len(text))
    end = min(len(text), start + max(length, 1))
    if end == 0:
        return
    lo, hi = max(0, start - back), min(len(text), end + ahead)
    ctx = pii_context.Context(text)
    found = _pii_clusters.cue(text, ctx.classes, start, end, lo, hi, cues.words, pii_context._UNIT_WORDS)
    expected = ctx._window(start, end, lo, hi, cues)
    assert found == (0 if expected is None else expected.value), (text, start, end, lo, hi)


@compiled
@pytest.mark.parametrize(
    ("text", "span", "expected"),
    [
        ("\u0422\u0435\u043b\u0435\u0444\u043e\u043d: 4155550134", (9, 19), 1),  # Телефон:
        ("\u0437\u0430\u043a\u0430\u0437 4155550134", (6, 16), 2),  # заказ
        ("\u0442\u0435\u043b\u044c 4155550134", (5, 15), 0),  # "тель": a letter after "тел"
        ("\u7535\u8bdd4155550134", (2, 12), 1),  # 电话, glued: CJK words need no boundary
        ("\u8ba2\u5355\u53f74155550134", (3, 13), 2),  # 订单号
        ("T\u00c9L 4155550134", (4, 14), 1),  # TÉL
        ("\u212aontakt \u00e9 4155550134", (10, 20), 1),  # Kelvin sign for K
        ("pho\u017fne 4155550134", (7, 17), 0),  # a long s is an s: "phosne" is no word
        ("\u00e9 \u2116 4155550134", (4, 14), 2),  # № right before the number
        ("\u00e9 4155550134 \u0442\u0435\u043b.", (2, 12), 1),  # тел. after it
        ("\u00e9 4155550134 KB", (2, 12), 2),  # a unit after it
        ("\u00e9 4155550134 \u212aB", (2, 12), 2),  # the unit with a Kelvin sign
        ("\u00e9 4155550134 kb\u00e9", (2, 12), 0),  # glued to a letter: no unit
    ],
)
def test_known_windows(text: str, span: tuple[int, int], expected: int) -> None:
    assert _pii_clusters is not None
    ctx = pii_context.Context(text)
    start, end = span
    assert text[start:end] == "4155550134"
    got = _pii_clusters.cue(text, ctx.classes, start, end, 0, len(text), pii_context.PHONE.words,
                            pii_context._UNIT_WORDS)
    python = ctx._window(start, end, 0, len(text), pii_context.PHONE)
    assert got == expected == (0 if python is None else python.value)


@compiled
def test_a_bad_script_is_refused_naming_what() -> None:
    assert _pii_clusters is not None
    table = pii_context.PHONE.table
    script = pii_context._script(("phone", ""), ("order", ""))
    assert script is not None
    alternatives, letters = script
    good = _pii_clusters.words(table, script)
    assert _pii_clusters.script_chars(good, 0, 0, "pP\u212a") == b"\x01\x01\x00"
    for bad, message in (
        ((alternatives,), "alternatives, letters"),
        ((alternatives, letters[:10]), "8192 bytes"),
        ((((1, True, True, ()),), letters), "non-empty"),
        ((((4, True, True, (112,)),), letters), "kind is 1, 2 or 3"),
        ((((1, True, True, ("p",)),), letters), "an int or a tuple"),
        ((((1, True, True, ((1, 2, 3, 4, 5),)),), letters), "an int or a tuple"),
        ((((1, True, True, (0x110000,)),), letters), "code point"),
    ):
        with pytest.raises(TypeError, match=message):
            _pii_clusters.words(table, bad)
    with pytest.raises(ValueError, match="no such character"):
        _pii_clusters.script_chars(good, len(alternatives), 0, "p")
    with pytest.raises(ValueError, match="no such character"):
        _pii_clusters.script_chars(_pii_clusters.words(table), -1, 0, "p")


def test_cue_words_must_be_literals() -> None:
    with pytest.raises(ValueError, match="read specially"):
        pii_context._first_letter_groups("phone|tel.")
