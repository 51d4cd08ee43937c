"""The compiled driver of the numeric types (``core/_pii_numbers.c``) and its whole context lookup
(``core/_pii_context.c``) are ``pii_numbers.numbers_py`` and ``Context.cue``: the same hits in the same order (types,
spans, confidences), the same cue for every candidate and kind, the same table headers remembered. Compared on the
benchmark corpus (with the keys its places carry), on every pinned stress text, and on generated texts made of what the
decisions turn on: cue words in every case, table rows under headers, keys, characters of other scripts.

``numbers_py`` runs here with the compiled cue window switched off as well, so the reference is Python end to end.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.core import pii, pii_context, pii_keys, pii_net, pii_numbers, request_text
from tests.benchmarks import bench_pii, pii_corpus
from tests.unit import test_pii_clusters as clusters
from tests.unit import test_pii_stress as stress

pytestmark = [pytest.mark.unit, clusters.compiled]

_pii_clusters: Any = clusters._pii_clusters
HOOKS = pii_numbers._HOOKS
KINDS = [pii_context.PHONE, pii_context.CARD, pii_context.SSN, pii_context.IP]
"""The cues in the order of the driver's ``CUES_*`` (and of ``_HOOKS``)."""


@contextmanager
def python_only() -> Iterator[None]:
    """The Python reference end to end: ``Context.cue`` without the compiled window."""
    saved, pii_context._compiled_cue = pii_context._compiled_cue, None
    try:
        yield
    finally:
        pii_context._compiled_cue = saved


def compiled_hits(text: str, key: str = "") -> list[pii_numbers.Hit]:
    ctx = pii_context.Context(text, key)
    hits: list[pii_numbers.Hit] = _pii_clusters.numbers(text, ctx.classes, ctx.key, ctx.headers, ctx, HOOKS)
    return hits


def python_hits(text: str, key: str = "") -> list[pii_numbers.Hit]:
    with python_only():
        return list(pii_numbers.numbers_py(text, pii_context.Context(text, key)))


def assert_same_hits(texts: list[tuple[str, str]]) -> int:
    """Each (text, key) gives the same hits both ways; how many there were."""
    found = 0
    for i, (text, key) in enumerate(texts):
        expected = python_hits(text, key)
        assert compiled_hits(text, key) == expected, f"text {i} (key {key!r}): {text[:120]!r}"
        found += len(expected)
    return found


@cache
def _corpus() -> list[tuple[str, str]]:
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 1500, pii_corpus.HELD_OUT_UNSEEN)
    records += pii_corpus.generate(pii_corpus.TUNE_SEED, 1500, pii_corpus.HELD_OUT_UNSEEN)
    bodies = [r.body for r in records] + [
        body
        for make in (bench_pii.log_bodies, bench_pii.sized_bodies)
        for body in make(pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 300), 8 << 10)[:2]
    ]
    return [(p.text, request_text.key_of(p)) for body in bodies for p in request_text.places(body)]


def test_the_driver_in_use_is_the_compiled_one() -> None:
    assert pii_numbers._compiled_numbers is _pii_clusters.numbers


def test_same_hits_on_the_corpus_and_the_benchmark_requests() -> None:
    texts = _corpus()
    assert sum(1 for _, key in texts if key) > 50  # tool-call arguments: keys read like column headers
    assert assert_same_hits(texts) > 2000


def test_same_hits_on_the_pinned_stress_texts() -> None:
    groups = stress.random_groups()
    assert assert_same_hits([tk for texts in groups.values() for tk in texts]) > 1000
    assert_same_hits([(t, "") for t in (*stress.phone_edges(), *stress.octet_edges())])


ROWS = st.lists(
    st.one_of(clusters.cue_texts, st.sampled_from([",", ";", "|", "\t", ", ", "\n", "\n", "\u00e9", "\u0660"])),
    max_size=8,
).map("".join)
HEADERS = st.sampled_from(
    ["phone,order,ip\n", "name;tel;card\n", "ssn|id|client_ip\n", "t\u00e9l\u00e9phone,r\u00e9f\n",
     "\u7535\u8bdd,\u8ba2\u5355\n", "a,b\n", "x" * 40 + ",phone\n", "", "mobile\tsku\tip\n"]
)
TABLES = st.lists(st.tuples(HEADERS, ROWS).map("".join), min_size=1, max_size=4).map("".join)
"""Texts of table rows under headers of every kind (cue words, other scripts, a cell too long to be a header, a
header that is a digit-free data row), cells glued to separators, digits in other scripts."""
KEYS = st.sampled_from(["", "phone", "order_id", "card_number", "client_ip", "t\u00e9l\u00e9phone", "ssn", "notes"])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(clusters.texts, clusters.cue_texts, clusters.mixed_texts, TABLES), KEYS)
def test_same_hits_on_generated_texts(text: str, key: str) -> None:
    assert_same_hits([(text, key)])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(TABLES, clusters.mixed_texts), KEYS)
def test_every_lookup_is_context_cue_and_remembers_the_same_headers(text: str, key: str) -> None:
    """Over the digit runs of a text, in order, for each kind of cue: the compiled lookup answers what
    ``Context.cue`` answers, and the two contexts end up with the same table headers remembered (the compiled one
    finds and stores them itself)."""
    compiled, python = pii_context.Context(text, key), pii_context.Context(text, key)
    for m in re.finditer(r"[0-9][0-9 .\-]*", text):
        for which, cues in enumerate(KINDS):
            found = _pii_clusters.lookup(text, compiled.classes, key, compiled.headers, compiled, HOOKS, m.start(),
                                         m.end(), which)
            with python_only():
                expected = python.cue(m.start(), m.end(), cues)
            assert found == expected.value, (text, m.span(), which)
    assert compiled.headers == python.headers


def test_lookups_read_headers_keys_and_other_scripts() -> None:
    """Anchors for the generated comparisons: a column header, a key, a header in another script, a header row
    remembered for the rows below it, and a row too far from its header's delimiter count."""
    def cue(text: str, at: str, which: int, key: str = "") -> int:
        ctx = pii_context.Context(text, key)
        start = text.index(at)
        found: int = _pii_clusters.lookup(text, ctx.classes, key, ctx.headers, ctx, HOOKS, start, start + len(at),
                                          which)
        return found

    csv = "name,phone,order\nAda,4155550134,77812345\nBob,4155550199,77812346\n"
    assert cue(csv, "4155550199", 0) == 1  # the phone column
    assert cue(csv, "77812346", 0) == 2  # the order column
    assert cue("4155550134", "4155550134", 0, key="mobile") == 1
    assert cue("4155550134", "4155550134", 0, key="order_id") == 2
    assert cue("t\u00e9l\u00e9phone;x\n4155550134;1\n", "4155550134", 0) == 1  # Python searches that header
    assert cue("a,b\n" + "1,2\n" * 3 + "4155550134,5\n", "4155550134", 0) == 0  # digits above: no header
    ctx = pii_context.Context(csv)
    start = csv.index("4155550199")
    _pii_clusters.lookup(csv, ctx.classes, "", ctx.headers, ctx, HOOKS, start, start + 10, 0)
    assert ctx.headers == {17: ("name,phone,order", ","), 41: ("name,phone,order", ",")}  # both data rows


def test_the_whole_detector_finds_the_same_through_either_driver() -> None:
    """``pii.detect`` (e-mail, keys, custom detectors and overlap resolution around the driver) on the dense
    benchmark requests, with the compiled driver and with ``numbers_py``."""
    texts = _corpus()[-400:]
    with_compiled = [pii.detect(t, k) for t, k in texts]
    saved, pii_numbers._compiled_numbers = pii_numbers._compiled_numbers, None
    try:
        with_python = [pii.detect(t, k) for t, k in texts]
    finally:
        pii_numbers._compiled_numbers = saved
    assert with_compiled == with_python
    assert sum(map(len, with_python)) > 100


def test_a_failing_hook_is_an_exception_not_a_crash() -> None:
    """What a Python hook raises comes out of ``numbers`` as that exception (nothing swallowed, nothing leaked)."""
    def broken(*args: object) -> float:
        raise RuntimeError("validation failed")

    hooks = (*HOOKS[:6], broken, *HOOKS[7:])
    text = "call me at 415-555-0134"
    ctx = pii_context.Context(text)
    with pytest.raises(RuntimeError, match="validation failed"):
        _pii_clusters.numbers(text, ctx.classes, "", ctx.headers, ctx, hooks)
    assert _pii_clusters.numbers(text, ctx.classes, "", ctx.headers, ctx, HOOKS) == [("phone", 11, 23, 0.95)]


def test_bad_arguments_are_errors_not_reads_out_of_bounds() -> None:
    text = "call me at 415-555-0134"
    ctx = pii_context.Context(text)
    with pytest.raises(TypeError, match="hooks"):
        _pii_clusters.numbers(text, ctx.classes, "", {}, ctx, HOOKS[:5])
    with pytest.raises(TypeError, match="hooks"):
        _pii_clusters.numbers(text, ctx.classes, "", {}, ctx, (*HOOKS[:4], (1, 2, 3, 4), *HOOKS[5:]))
    with pytest.raises(ValueError, match="one byte per character"):
        _pii_clusters.numbers(text, ctx.classes[:-1], "", {}, ctx, HOOKS)
    with pytest.raises(ValueError, match="span"):
        _pii_clusters.lookup(text, ctx.classes, "", {}, ctx, HOOKS, 11, 99, 0)
    with pytest.raises(ValueError, match="span"):
        _pii_clusters.lookup(text, ctx.classes, "", {}, ctx, HOOKS, 11, 23, 4)
    csv = "phone,x\n4155550134,1\n"
    bad = pii_context.Context(csv)
    with pytest.raises(TypeError, match="a table is"):
        _pii_clusters.lookup(csv, bad.classes, "", {8: ("phone,x", ",,")}, bad, HOOKS, 8, 18, 0)
    assert _pii_clusters.numbers("", b"", "", {}, pii_context.Context(""), HOOKS) == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("nanp", "415-555-0134", True),
        ("nanp", "+1 (415) 555-0134", True),
        ("nanp", "1.415.555.0134", True),
        ("nanp", "(415)555-0134", True),
        ("nanp", "+415-555-0134", False),
        ("nanp", "115-555-0134", False),
        ("nanp", "415-155-0134", False),
        ("trunk", "020 7946 0958", True),
        ("trunk", "(030) 12 34 56", True),
        ("trunk", "0-463-14944-0", False),
        ("trunk", "020", False),
    ],
)
def test_phone_shapes_on_known_numbers(name: str, text: str, expected: bool) -> None:
    assert _pii_clusters.shape(name, text, pii_context.Context(text).classes, 0, len(text)) is expected
    assert clusters.SHAPES[name](text, b"", 0, len(text)) is expected


def test_iban_countries_are_every_pair_of_capitals_iban_format_knows() -> None:
    """The driver calls ``iban_at`` only after two capitals that start some country's IBANs: every other pair is one
    ``iban_at`` turns away (``iban_format`` is None)."""
    capitals = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    known = [a + b for a in capitals for b in capitals if pii_numbers.iban_format.__wrapped__(a + b) is not None]
    countries = pii_numbers.IBAN_COUNTRIES
    assert [countries[i : i + 2] for i in range(0, len(countries), 2)] == known
    assert {"DE", "GB", "FR", "NL"} <= set(known) and "US" not in known


# --- the whole built-in pass over many texts (``core/_pii_detect.c``) -----------------------------------------------


@contextmanager
def all_python() -> Iterator[None]:
    """``builtin_hits_py`` with every compiled piece below it switched off too (cue window, driver, key walk)."""
    saved = (pii_numbers._compiled_numbers, pii_keys._compiled_key_tokens, pii_net._compiled_emails)
    pii_numbers._compiled_numbers, pii_keys._compiled_key_tokens, pii_net._compiled_emails = None, None, None
    try:
        with python_only():
            yield
    finally:
        pii_numbers._compiled_numbers, pii_keys._compiled_key_tokens, pii_net._compiled_emails = saved


def assert_same_builtin_hits(items: list[tuple[str, str]]) -> int:
    found = _pii_clusters.detect_many([t for t, _ in items], [k for _, k in items], pii._DETECT_HOOKS)
    with all_python():
        expected = [pii.builtin_hits_py(text, key) for text, key in items]
    for i, (hits, want) in enumerate(zip(found, expected, strict=True)):
        assert hits == (want or ()), f"text {i} (key {items[i][1]!r}): {items[i][0][:120]!r}"
    return sum(map(len, expected))


def test_the_pass_in_use_is_the_compiled_one() -> None:
    assert pii._compiled_detect is _pii_clusters.detect_many


def test_same_builtin_hits_on_the_corpus_and_the_stress_texts() -> None:
    assert assert_same_builtin_hits(_corpus()) > 2500
    groups = stress.random_groups()
    assert assert_same_builtin_hits([tk for texts in groups.values() for tk in texts]) > 1000


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(clusters.texts, clusters.mixed_texts, TABLES,
                                    st.sampled_from(["", "mail ada@example.org now", "-----BEGIN " + "PRIVATE KEY-----",
                                                     "token=9fK2mQ7xL4pW8nT3vB6yH1cR", "\u00e9\u0660@x.io"])),
                          KEYS), max_size=6))
def test_same_builtin_hits_on_generated_requests(items: list[tuple[str, str]]) -> None:
    """Several texts per call (the views buffer is reused and grows), e-mail, keys, PEM and numbers in each."""
    assert_same_builtin_hits(items)


def test_detect_many_is_detect_for_each() -> None:
    texts, keys = [t for t, _ in _corpus()[-300:]], [k for _, k in _corpus()[-300:]]
    found = pii.DEFAULT.detect_many(texts, keys)
    assert [list(f) for f in found] == [pii.detect(text, key) for text, key in zip(texts, keys, strict=True)]
    assert all(f == () for f in found if not f)  # nothing: the empty tuple, no list kept
    assert all(type(f) is pii.Finding for fs in found for f in fs)  # made in C, with the named tuple's type
    detector = pii.Detector([pii.CustomDetector("ticket", r"TCK-[0-9]{6}")])
    texts, keys = ["see TCK-123456 and call 415-555-0134", "", "TCK-000001", "nothing here"], ["", "", "x", ""]
    found = detector.detect_many(texts, keys)
    assert [list(f) for f in found] == [detector.detect(t, k) for t, k in zip(texts, keys, strict=True)]
    assert [f.type for f in found[0]] == ["ticket", "phone"] and found[3] == ()


def test_detect_many_refuses_what_it_cannot_read() -> None:
    with pytest.raises(TypeError, match="lists of str"):
        _pii_clusters.detect_many(["text"], [None], pii._DETECT_HOOKS)
    with pytest.raises(ValueError, match="one key per text"):
        _pii_clusters.detect_many(["text"], [], pii._DETECT_HOOKS)
    with pytest.raises(TypeError):
        _pii_clusters.detect_many(("text",), ("",), pii._DETECT_HOOKS)
    with pytest.raises(TypeError, match="hooks"):
        _pii_clusters.detect_many(["text"], [""], pii._DETECT_HOOKS[:3])
    assert _pii_clusters.detect_many([], [], pii._DETECT_HOOKS) == []


# --- e-mail addresses (``core/_pii_net.c``) ---------------------------------------------------------------------------

MAIL_PIECES = [
    "@", "@@", ".", "..", "-", "_", "+", "%", ":", "://", "/", " ", "\n", "a", "Z", "9", "ada", "example", "com", "org",
    "png", "js", "co", "uk", "x" * 30, "a-b", "-a", "a-", "noreply", "git", "Postmaster", "\u00e9", "\u4e2d",
    "\U0001f600", "\u2028",
]
"""What the e-mail checks turn on: local-part characters and the ones they drop, labels (hyphens at either end, too
long), TLDs (too short, too long, file extensions), role mailboxes in any case, ':' after the host, "://" before the
user, characters of other scripts (a non-ASCII space after ':' too)."""
mail_texts = st.lists(st.sampled_from(MAIL_PIECES), max_size=40).map("".join)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mail_texts)
def test_emails_are_the_python_ones(text: str) -> None:
    assert _pii_clusters.emails(text, pii_net._NOT_TLDS, pii_net._ROLE) == list(pii_net.emails_py(text))


def test_emails_on_the_corpus_and_known_addresses() -> None:
    texts = [t for t, _ in _corpus() if "@" in t]
    assert sum(len(list(pii_net.emails_py(t))) for t in texts) > 300
    for text in texts:
        assert _pii_clusters.emails(text, pii_net._NOT_TLDS, pii_net._ROLE) == list(pii_net.emails_py(text))
    deep = "a@" + "b." * 300 + "com"  # more labels than any real domain: the regex takes them all, so must this
    assert _pii_clusters.emails(deep, pii_net._NOT_TLDS, pii_net._ROLE) == list(pii_net.emails_py(deep)) != []


# --- IBANs (checked in the driver as ``iban_at`` checks them) ---------------------------------------------------------

ibans = st.builds(lambda seed: pii_corpus.iban(random.Random(seed)), st.integers(0, 10**6))
"""Valid IBANs of the corpus' countries, printed compact or in groups of four."""


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ibans, st.sampled_from(["", "IBAN ", "x", "_", "9", " ", "\u00e9"]),
       st.sampled_from(["", " ", "X", "x", "0", ".", " 12"]),
       st.sampled_from(["keep", "lower", "flip", "drop", "space"]), st.integers(0, 40))
def test_ibans_are_iban_at(iban: str, before: str, after: str, change: str, at: int) -> None:
    """A valid IBAN, or one with a character changed, lowercased, dropped or a space doubled, between what may stand
    around it: the driver finds what ``numbers_py`` (``iban_at``) finds."""
    at = min(at, len(iban) - 1)
    if change == "lower":
        iban = iban.lower()
    elif change == "flip":
        iban = iban[:at] + ("7" if iban[at] != "7" else "8") + iban[at + 1 :]
    elif change == "drop":
        iban = iban[:at] + iban[at + 1 :]
    elif change == "space":
        iban = iban[:at] + " " + iban[at:]
    assert_same_hits([(before + iban + after, "")])


def test_bbans_are_the_registry_lengths() -> None:
    countries = pii_numbers.IBAN_COUNTRIES
    for i, bban in enumerate(pii_numbers.IBAN_BBANS):
        fmt = pii_numbers.iban_format(countries[2 * i : 2 * i + 2])
        assert fmt is not None and fmt[0] == 4 + len(bban) and set(bban) <= set("nac")


def test_detect_places_reads_each_place_as_its_text_and_key() -> None:
    """The compiled pass reads a Place's text and key itself (``place_key``): the same as ``detect_many`` of the
    lists, with and without custom detectors, on corpus bodies with tool-call arguments (keys) in them."""
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 400)
    found = [p for r in records for p in request_text.places(r.body)]
    assert any(request_text.key_of(p) for p in found)
    texts, keys = [p.text for p in found], [request_text.key_of(p) for p in found]
    for detector in (pii.DEFAULT, pii.Detector([pii.CustomDetector("ticket", r"TCK-[0-9]{6}")])):
        assert detector.detect_places(found) == detector.detect_many(texts, keys)
    with pytest.raises(TypeError, match="a Place is"):
        _pii_clusters.detect_many([("text",)], None, pii._DETECT_HOOKS)
    with pytest.raises(TypeError, match="a Place is"):
        _pii_clusters.detect_many([((), "text", False)], None, pii._DETECT_HOOKS)
    with pytest.raises(TypeError, match="keys"):
        _pii_clusters.detect_many(["text"], "", pii._DETECT_HOOKS)


hit_lists = st.lists(
    st.tuples(st.sampled_from(["phone", "email", "us_ssn"]), st.integers(0, 30), st.integers(0, 12),
              st.sampled_from([0.8, 0.9, 0.95, 0.97])).map(lambda h: (h[0], h[1], h[1] + h[2], h[3])),
    max_size=12,
)
"""Hits that overlap, nest, share starts, lengths and confidences, and are empty (a length of 0)."""


@settings(max_examples=3000, deadline=None)
@given(hit_lists)
def test_compiled_resolve_is_the_python_one(hits: list[tuple[str, int, int, float]]) -> None:
    """Overlaps resolved in C (``detect_many`` with ``resolved``) as ``pii._resolve`` resolves them: the same hits,
    the same order (both sorts stable)."""
    found = list(hits)
    _pii_clusters.resolve(found)
    expected = list(pii._resolve(list(hits))) if len(hits) > 1 else hits
    assert found == expected
    assert all(a is b for a, b in zip(found, expected, strict=True))  # the same objects, as the Python one keeps


def test_detect_many_resolves_when_asked() -> None:
    texts = ["call 415-555-0134 or mail ada@example.org", "SSN 078-05-1121, card 4111 1111 1111 1111", ""]
    raw = _pii_clusters.detect_many(texts, ["", "", ""], pii._DETECT_HOOKS)
    resolved = _pii_clusters.detect_many(texts, ["", "", ""], pii._DETECT_HOOKS, True)
    assert resolved == [list(pii._resolve(list(h))) if len(h) > 1 else h for h in raw]
    with pytest.raises(TypeError, match="a hit is"):
        _pii_clusters.resolve([("phone", 1, 2)])
