"""The compiled digit-cluster plan (``core/_pii_clusters.c``) is ``pii_numbers.plan_py`` item for item: on the
benchmark corpus, on every stress text whose findings are pinned (``test_pii_stress``), and on generated texts made
of the characters its shape tests turn on (digits, separators, letters, cue words, non-ASCII characters of every
width). Each shape test is also compared alone with the pattern or function it stands for, so a mismatch names the
piece. CI requires the compiled plan (it is optional where no C compiler is at hand: ``plan_py`` runs then)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.core import pii, pii_context, pii_keys, pii_numbers, request_text
from tests.benchmarks import bench_pii, pii_corpus
from tests.unit import test_pii_stress as stress

pytestmark = pytest.mark.unit

try:
    from llmroute.core import _pii_clusters
except ImportError:  # not built here: the tests that compare it skip (CI fails in the first test instead)
    _pii_clusters = None  # type: ignore[assignment]

CONSTANTS = pii_numbers.PLAN_CONSTANTS
compiled = pytest.mark.skipif(_pii_clusters is None, reason="the compiled plan is not built (pip install -e .)")


def test_ci_runs_the_compiled_plan() -> None:
    """Under CI the extension must be built, or every other test here would skip and the router run ``plan_py``."""
    if os.environ.get("CI", "").lower() not in ("1", "true"):
        pytest.skip("outside CI the compiled plan is optional")
    assert _pii_clusters is not None, "llmroute.core._pii_clusters did not build: is a C compiler installed?"
    assert pii_numbers.COMPILED and pii_numbers.plan is _pii_clusters.plan


@compiled
def test_the_built_extension_is_not_older_than_its_source() -> None:
    """An editable install compiles the extension once; a change to a C source needs ``pip install -e .`` again
    (else these tests would compare the old build)."""
    assert _pii_clusters is not None and _pii_clusters.__file__ is not None
    built = Path(_pii_clusters.__file__).stat().st_mtime
    for source in sorted(Path(pii_numbers.__file__).parent.glob("_pii_*.[ch]")):
        assert built >= source.stat().st_mtime, (
            f"{source.name} changed after the extension was built: run pip install -e . again"
        )


def _classes(text: str) -> bytes:
    return pii_context.Context(text).classes


def _assert_same_plan(texts: list[str]) -> None:
    assert _pii_clusters is not None
    for i, text in enumerate(texts):
        classes = _classes(text)
        expected = pii_numbers.plan_py(text, classes)
        assert _pii_clusters.plan(text, classes, CONSTANTS) == expected, f"text {i}: {text[:80]!r}"


@cache
def _corpus() -> list[str]:
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 1500, pii_corpus.HELD_OUT_UNSEEN)
    records += pii_corpus.generate(pii_corpus.TUNE_SEED, 1500, pii_corpus.HELD_OUT_UNSEEN)
    return [p.text for r in records for p in request_text.places(r.body)]


@compiled
def test_same_plan_on_the_corpus_and_the_benchmark_requests() -> None:
    texts = _corpus() + [
        place.text
        for make in (bench_pii.log_bodies, bench_pii.sized_bodies)
        for body in make(pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 300), 8 << 10)[:2]
        for place in request_text.places(body)
    ]
    _assert_same_plan(texts)


@compiled
def test_same_plan_on_the_pinned_stress_texts() -> None:
    groups = stress.random_groups()
    _assert_same_plan([t for texts in groups.values() for t, _ in texts])
    _assert_same_plan(list(stress.phone_edges()) + list(stress.octet_edges()))


PIECES = [
    "0",
    "00",
    "1",
    "2",
    "3",
    "9",
    "12",
    "123",
    "1234",
    "12345",
    "555",
    "0134",
    "978",
    "2026",
    "31",
    "19",
    " ",
    "  ",
    "-",
    ".",
    "/",
    "(",
    ")",
    ":",
    "::",
    "+",
    "#",
    ",",
    "|",
    "\t",
    "\n",
    "_",
    "=",
    "-X",
    "-x",
    "@",
    "A",
    "Z",
    "DE",
    "GB",
    "a",
    "x",
    "T",
    "e",
    "ab",
    "call ",
    "phone: ",
    "Order #",
    "SSN ",
    "card ",
    "ip ",
    "tel:",
    "v",
    "Chrome/",
    "\u20ac",
    "\u00a3",
    "\u00e9",
    "\u0660",
    "\u4e2d",
    "\U0001f600",
    "\x00",
]
"""What the shape tests turn on: digits in runs of every length that matters, each separator, letters (an IBAN's
capitals, the ``-X`` of an extension), cue words, and characters of every str width (the euro and pound signs are
in the phone test's set; an Arabic-Indic digit is a digit to ``str.isdigit`` but not to the patterns)."""

digit_runs = st.text("0123456789", min_size=1, max_size=20)
groups = st.builds(
    lambda runs, sep: sep.join(runs),
    st.lists(digit_runs, min_size=2, max_size=6),
    st.sampled_from([*" .-/:", ") ", " (", ". "]),
)
"""Digit runs joined by one separator: dotted quads and versions, phone groups, dates, SSN and card groups, IPv6-ish
runs (a cluster's shape comes from how its runs and separators alternate)."""
texts = st.lists(st.one_of(st.sampled_from(PIECES), digit_runs, groups), max_size=30).map("".join)


@compiled
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_same_plan_on_generated_texts(text: str) -> None:
    _assert_same_plan([text])


# --- each shape test alone -------------------------------------------------------------------------------------------

spans = st.tuples(texts, st.integers(0, 60), st.integers(0, 60))


def _span(text: str, a: int, b: int) -> tuple[int, int]:
    a = min(a, len(text))
    return a, min(len(text), max(a, b))


@compiled
@settings(max_examples=800, deadline=None)
@given(texts)
def test_clusters_are_the_cluster_pattern(text: str) -> None:
    assert _pii_clusters is not None
    classes = _classes(text)
    expected = [(m.start(), m.end(), m.lastindex) for m in pii_numbers._CLUSTER.finditer(classes)]
    assert _pii_clusters.clusters(text, classes) == expected


SHAPES: dict[str, Callable[[str, bytes, int, int], bool]] = {
    "ssn_shape": lambda t, c, a, b: pii_numbers._SSN_SHAPE_CLASSES.search(c, a, b) is not None,
    "card_shape": lambda t, c, a, b: pii_numbers._CARD_SHAPE.search(c, a, b) is not None,
    "dots": lambda t, c, a, b: pii_numbers._DOTS.fullmatch(t, a, b) is not None,
    "isbn": lambda t, c, a, b: pii_numbers._ISBN.fullmatch(t, a, b) is not None,
    "date": lambda t, c, a, b: pii_numbers._holds_date(t[a:b]),
    "edges": lambda t, c, a, b: pii_numbers._PHONE_EDGES.match(t, a) is not None,
    "punctuation": lambda t, c, a, b: pii_numbers._punctuation_not_national(t, c, a, b),
    "nanp": lambda t, c, a, b: pii_numbers._NANP.fullmatch(t, a, b) is not None,
    "trunk": lambda t, c, a, b: pii_numbers._TRUNK_SHAPE.fullmatch(t, a, b) is not None,
}
"""Each shape test of the compiled plan, by its name there, and the pattern or function it stands for."""


@compiled
@pytest.mark.parametrize("name", sorted(SHAPES))
@settings(max_examples=600, deadline=None)
@given(spans)
def test_shape_tests_are_their_patterns(name: str, span: tuple[str, int, int]) -> None:
    assert _pii_clusters is not None
    text, a, b = span
    a, b = _span(text, a, b)
    classes = _classes(text)
    assert _pii_clusters.shape(name, text, classes, a, b) is SHAPES[name](text, classes, a, b)


@compiled
@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("dots", "415.555.0134", True),
        ("dots", "1.415.555.0134", True),
        ("dots", "06.12.34.56.78", True),
        ("dots", "6.5.745.72", False),
        ("isbn", "978-0-306-40615-7", True),
        ("isbn", "9780-306-40615-7", True),
        ("isbn", "0-463-14944-0", True),
        ("isbn", "415-555-0134", False),
        ("date", "call 2026-11-04 now", True),
        ("date", "12/31/2026", False),
        ("date", "31/12/2026", True),
        ("date", "1-2-2026", True),
        ("date", "123/4/2020", False),
    ],
)
def test_shape_tests_on_known_shapes(name: str, text: str, expected: bool) -> None:
    """Anchors for the generated comparisons above: the shapes each pattern was written for."""
    assert _pii_clusters is not None
    assert _pii_clusters.shape(name, text, _classes(text), 0, len(text)) is expected
    assert SHAPES[name](text, _classes(text), 0, len(text)) is expected


@compiled
def test_bad_arguments_are_errors_not_reads_out_of_bounds() -> None:
    assert _pii_clusters is not None
    with pytest.raises(ValueError, match="one byte per character"):
        _pii_clusters.plan("415 555 0134", b"000", CONSTANTS)
    with pytest.raises(TypeError):
        _pii_clusters.plan("415 555 0134", "000 000 0000", CONSTANTS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="constants"):
        _pii_clusters.plan("415 555 0134", b"000 000 0000", ((), "", "x"))
    with pytest.raises(ValueError, match="span"):
        _pii_clusters.shape("dots", "12", b"00", 1, 3)
    with pytest.raises(ValueError, match="no shape test"):
        _pii_clusters.shape("nothing", "12", b"00", 0, 2)
    assert _pii_clusters.plan("", b"", CONSTANTS) == []


def test_the_python_plan_drives_the_same_findings() -> None:
    """``numbers_py`` on ``plan_py`` (what runs without the extension) finds what ``numbers`` finds, on the dense
    benchmark texts."""
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 300)
    for body in bench_pii.sized_bodies(records, 8 << 10)[:3]:
        for place in request_text.places(body):
            text = place.text
            used = pii_numbers.numbers(text, pii_context.Context(text))
            plan, pii_numbers.plan = pii_numbers.plan, pii_numbers.plan_py
            try:
                python = list(pii_numbers.numbers_py(text, pii_context.Context(text)))
            finally:
                pii_numbers.plan = plan
            assert used == python


# --- context: the compiled cue lookup ------------------------------------------------------------------------------

CUES = {"phone": pii_context.PHONE, "card": pii_context.CARD, "ssn": pii_context.SSN, "ip": pii_context.IP}
CUE_WORDS = sorted(
    {first + rest for cues in CUES.values() for first, words in zip("abcdefghijklmnopqrstuvwxyz", cues.table,
                                                                     strict=True) for rest, _ in words}
    | set(pii_context._UNIT_WORDS)
)
"""Every ASCII cue word of the four kinds, and the units."""
ascii_pieces = [p for p in PIECES if p.isascii()] + ["%", " %", "[", " (", "((((", " :- (", "    ", "\t\t\t\t", ":-"]
"""... and runs of what may stand between a candidate and the word after it (``_AFTER_SKIP``: up to three count)."""
cue_texts = st.lists(
    st.one_of(st.sampled_from(CUE_WORDS), st.sampled_from(ascii_pieces), digit_runs, groups,
              st.sampled_from(CUE_WORDS).map(str.upper), st.sampled_from(CUE_WORDS).map(str.title)),
    max_size=24,
).map("".join)
"""ASCII texts (the compiled lookup's case) dense in cue words, in every case, glued to digits, letters and separators
(a word counts only with no letter before or after it, and the nearest one wins)."""


mixed_texts = st.lists(st.one_of(cue_texts, st.sampled_from(["\u00e9", "t\u00e9l ", "\u20ac", "\u4e2d", "\U0001f600",
                                                               "\u0442\u0435\u043b "])), max_size=4).map("".join)
"""... and with characters of other scripts around them (the compiled lookup reads those windows with
``_pii_script.c``)."""


@compiled
@pytest.mark.parametrize("kind", sorted(CUES))
@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(cue_texts, mixed_texts), st.integers(0, 200), st.integers(0, 30), st.integers(0, 60),
       st.integers(0, 30))
def test_compiled_cue_window_is_the_python_one(kind: str, text: str, start: int, length: int, back: int,
                                               ahead: int) -> None:
    """Any window and any candidate span: what ``_pii_clusters.cue`` finds is what ``Context._window`` finds, and it
    leaves no window to ``_window`` (3), ASCII or not (``test_pii_script`` covers other scripts in depth) - but for
    an empty candidate at the start of a text that is not ASCII (no candidate is empty; ``_window`` reads the first
    character as the one before it there)."""
    assert _pii_clusters is not None
    cues = CUES[kind]
    start = min(start, len(text))
    end = min(len(text), start + length)
    lo, hi = max(0, start - back), min(len(text), end + ahead)
    ctx = pii_context.Context(text)
    found = _pii_clusters.cue(text, ctx.classes, start, end, lo, hi, cues.words, pii_context._UNIT_WORDS)
    if found == 3:
        assert end == 0 and not text.isascii()
        return
    expected = ctx._window(start, end, lo, hi, cues)
    assert found == (0 if expected is None else expected.value), (text, start, end, lo, hi)


@compiled
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(cue_texts, st.sampled_from([",", ";", "|", "\t", "\n", "\n", "phone,order,ip\n"])),
                max_size=8).map("".join), st.data())
def test_cue_lookups_are_the_same_with_and_without_the_compiled_window(text: str, data: st.DataObject) -> None:
    """Whole lookups (lines, table headers, keys) over the clusters of a text, compiled and not."""
    ctx_compiled, ctx_python = pii_context.Context(text, "phone"), pii_context.Context(text, "phone")
    spans = [(m.start(), m.end()) for m in re.finditer(r"[0-9][0-9 .\-]*", text)]
    for start, end in spans:
        for cues in CUES.values():
            compiled_cue = ctx_compiled.cue(start, end, cues)
            saved, pii_context._compiled_cue = pii_context._compiled_cue, None
            try:
                python_cue = ctx_python.cue(start, end, cues)
            finally:
                pii_context._compiled_cue = saved
            assert compiled_cue is python_cue, (text, start, end)


@compiled
def test_compiled_cue_refuses_what_it_cannot_read() -> None:
    assert _pii_clusters is not None
    table, units = pii_context.PHONE.words, pii_context._UNIT_WORDS
    with pytest.raises(ValueError, match="one byte per character"):
        _pii_clusters.cue("call 1234567", b"aaaa 000000", 5, 12, 0, 12, table, units)
    assert _pii_clusters.cue("tél 1234567", b"axa 0000000", 4, 11, 0, 11, table, units) == 1  # not ASCII: script
    no_script = _pii_clusters.words(pii_context.PHONE.table)  # compiled without one: left to _window
    assert _pii_clusters.cue("tél 1234567", b"axa 0000000", 4, 11, 0, 11, no_script, units) == 3
    assert _pii_clusters.cue("tél, call 1234567", b"axa, aaaa 0000000", 10, 17, 5, 17, table, units) == 1
    with pytest.raises(ValueError, match="lo <= start"):
        _pii_clusters.cue("call 1234567", b"aaaa 0000000", 5, 12, 6, 12, table, units)
    with pytest.raises(TypeError, match="words"):
        _pii_clusters.cue("call 1234567", b"aaaa 0000000", 5, 12, 0, 12, pii_context.PHONE.table, units)
    for bad in ((), pii_context.PHONE.table[:3], (((("all", 3),),) * 26), (((("all", 1), 2),) * 26)):
        with pytest.raises(TypeError, match="26 tuples"):
            _pii_clusters.words(bad)
    assert _pii_clusters.cue("call 1234567", b"aaaa 0000000", 5, 12, 0, 12, table, units) == 1
    assert _pii_clusters.cue("order 1234567", b"aaaaa 0000000", 6, 13, 0, 13, table, units) == 2
    assert _pii_clusters.cue("1234567 bytes", b"0000000 aaaaa", 0, 7, 0, 13, table, units) == 2
    assert _pii_clusters.cue("1234567 (mobile)", b"0000000 (aaaaaa)", 0, 7, 0, 16, table, units) == 1
    assert _pii_clusters.cue("recall 1234567", b"aaaaaa 0000000", 7, 14, 0, 14, table, units) == 0
    # '#' right before the candidate; `$` of that pattern also matches before a newline ending the window
    for window, expected in (("ref #", 2), ("# ", 2), ("#\n", 2), ("#\t", 2), ("#  ", 0), ("#x", 0)):
        ctx = pii_context.Context(window)
        end = len(window)
        assert _pii_clusters.cue(window, ctx.classes, end, end, 0, end, table, units) == expected
        assert ctx._window(len(window), len(window), 0, len(window), pii_context.PHONE) == (
            pii_context.Cue(expected) if expected else None)
    # at most three characters are skipped before the word after the candidate
    for text, expected in (("1234567(((mobile", 1), ("1234567((((mobile", 0), ("1234567 %", 2)):
        ctx = pii_context.Context(text)
        assert _pii_clusters.cue(text, ctx.classes, 0, 7, 0, len(text), table, units) == expected
        assert ctx._window(0, 7, 0, len(text), pii_context.PHONE) == (pii_context.Cue(expected) if expected
                                                                             else None)


# --- API keys: the long tokens ---------------------------------------------------------------------------------------

token_texts = st.lists(
    st.one_of(
        st.text("abcdefABCDEF0123456789_-./+", min_size=1, max_size=24),
        st.sampled_from([" ", "=", "\n", ": ", '"', "sk-", "AKIA", "ghp_", "e\u0301", "\u20ac", "\U0001f600"]),
    ),
    max_size=30,
).map("".join)


@compiled
@settings(max_examples=800, deadline=None)
@given(token_texts, st.sampled_from([None, pii_keys._SHAPED_FIRST, "", "a\U0001f600"]))
def test_long_tokens_are_the_python_walk(text: str, first: str | None) -> None:
    assert _pii_clusters is not None
    tokens = pii_context.Context(text).tokens
    assert _pii_clusters.long_tokens(text, tokens, first) == pii_keys.long_tokens_py(text, tokens, first)


@compiled
def test_long_tokens_refuses_what_it_cannot_read() -> None:
    assert _pii_clusters is not None
    with pytest.raises(ValueError, match="one byte per character"):
        _pii_clusters.long_tokens("abc", b"tt", None)
    with pytest.raises(TypeError, match="first"):
        _pii_clusters.long_tokens("abc", b"ttt", 5)  # type: ignore[arg-type]
    text = "key sk-" + "a1" * 12 + " and " + "b" * 15
    assert _pii_clusters.long_tokens(text, pii_context.Context(text).tokens, None) == [(4, 31)]


def test_the_router_says_at_start_when_detection_runs_without_the_compiled_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmroute.router import server

    monkeypatch.setattr(pii_numbers, "COMPILED", False)
    note = server.detector_build_note()
    assert note is not None and "not built" in note and "C compiler" in note
    monkeypatch.setattr(pii_numbers, "COMPILED", True)
    assert server.detector_build_note() is None


@compiled
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cue_texts)
def test_any_positive_word_is_the_pattern_search(text: str) -> None:
    """``Context.phone_may_be_positive``'s scan: a positive phone word starts in the text (no letter before it;
    what follows it does not matter), compiled and as ``PHONE.positive`` finds it."""
    assert _pii_clusters is not None
    lower = text.lower()
    assert _pii_clusters.any_word(lower, pii_context.PHONE.words) is pii_context.positive_word_py(lower)


@compiled
def test_any_word_refuses_what_it_cannot_read() -> None:
    assert _pii_clusters is not None
    with pytest.raises(ValueError, match="ASCII"):
        _pii_clusters.any_word("t\u00e9l", pii_context.PHONE.words)
    with pytest.raises(TypeError, match="words"):
        _pii_clusters.any_word("call", ())
    assert _pii_clusters.any_word("please callback", pii_context.PHONE.words)  # no letter after needed
    assert not _pii_clusters.any_word("recall", pii_context.PHONE.words)  # a letter before


def test_without_the_extension_detection_finds_the_same() -> None:
    """Where ``_pii_clusters`` is not built (no C compiler at install), every module falls back to its Python
    reference: a fresh interpreter that cannot import it finds on the stress texts exactly what this one finds."""
    script = textwrap.dedent(
        """
        import json, sys
        sys.modules["llmroute.core._pii_clusters"] = None  # any import of it raises ImportError
        from llmroute.core import pii, pii_context, pii_keys, pii_numbers
        from llmroute.router import server
        assert not pii_numbers.COMPILED and pii_numbers.plan is pii_numbers.plan_py
        assert pii_numbers._compiled_numbers is None and pii_keys._compiled_key_tokens is None
        assert pii_context.PHONE.words is None and pii._compiled_detect is None
        from llmroute.core import pii_net, request_text
        assert pii_net._compiled_emails is None and request_text._compiled_walk is None
        assert pii_context._compiled_cue is None and pii_keys.long_tokens is pii_keys.long_tokens_py
        assert server.detector_build_note() is not None
        texts = json.load(sys.stdin)
        json.dump([[list(f) for f in pii.detect(t, k)] for t, k in texts], sys.stdout)
        """
    )
    groups = stress.random_groups()
    texts = [tk for name in ("soup", "logs", "mutated", "benchmark") for tk in groups[name]]
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(texts), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    here = [[list(f) for f in pii.detect(t, k)] for t, k in texts]
    assert json.loads(proc.stdout) == here
    assert sum(map(len, here)) > 1000
