"""The detector's faster forms against the plain ones they replace (issue #11): each must answer exactly as the plain
form does, on every input, so no finding changes (``test_pii_stress`` pins the findings themselves).

- cue lookups in an ASCII text search its lowercased copy between offsets, where they lowercased a slice after a
  stand-in for the character before it; what follows a candidate is one match (``Cues.after``), where it was a skip
  loop, a cue match and a unit match;
- Luhn sums the bytes of digit strings; an IBAN's end is one pattern per length, where it was a loop per character;
- ``numbers`` tests a national phone candidate's shape before calling ``_phone`` (``_punctuation_not_national``,
  ``_national``), so the findings of phone-shaped texts through ``detect`` must be those of ``phone_at``.
"""

from __future__ import annotations

import random
import string

import pytest

from llmroute.core import pii_context, pii_numbers
from llmroute.core.pii_context import _AFTER_SKIP, _LETTER, _UNITS_ASCII, Context

pytestmark = pytest.mark.unit

CUES = ("PHONE", "CARD", "SSN", "IP")


def _ascii_texts(n: int, seed: int) -> list[str]:
    """ASCII text of cue words, units, numbers and the characters between them, in several cases."""
    rng = random.Random(seed)
    words = [
        "phone",
        "Tel:",
        "call",
        "order",
        "ID",
        "sku",
        "card",
        "visa",
        "SSN",
        "ip",
        "client",
        "version",
        "v",
        "bytes",
        "ms",
        "%",
        "s",
        "mobile",
        "fax",
        "no",
        "x",
    ]
    pieces = [*words, " ", "  ", "\t", "(", "[", ":", "-", "#", ".", "_", "a", "Z", "\n", ",", "415 555 0134", "42"]
    texts = []
    for _ in range(n):
        parts = [rng.choice(pieces) for _ in range(rng.randint(1, 14))]
        texts.append("".join(rng.choice((p, p.upper(), p.title())) for p in parts))
    return texts


def test_cue_search_in_the_lowercased_text_equals_the_search_in_a_lowercased_slice() -> None:
    """Before a candidate: ``ascii.finditer(lower, lo, start)`` gives the nearest cue's kind as the search in
    ``stand-in + text[lo:start].lower()`` did (the look-behind sees the real character before ``lo``)."""
    checked = 0
    for text in _ascii_texts(250, 1):
        lower = Context(text).lower()
        assert lower == text.lower()
        for name in CUES:
            cues = getattr(pii_context, name)
            for lo in range(len(text)):
                for start in range(lo, min(len(text), lo + 24) + 1):
                    before = "a" if lo and _LETTER.match(text, lo - 1) else " "
                    slice_last = fast_last = None
                    for slice_last in cues.ascii.finditer(before + text[lo:start].lower(), 1):  # noqa: B007
                        pass
                    for fast_last in cues.ascii.finditer(lower, lo, start):  # noqa: B007
                        pass
                    assert (slice_last and slice_last.lastgroup) == (fast_last and fast_last.lastgroup), (name, text)
                    checked += slice_last is not None
    assert checked > 5_000


def test_what_follows_a_candidate_is_one_match_as_it_was_three_steps() -> None:
    """After a candidate: ``Cues.after`` on the lowercased text says POSITIVE, NEGATIVE (a unit) or nothing exactly
    as skipping ``_AFTER_SKIP`` (at most three), then ``ascii.match`` (positive counts) and then ``_UNITS_ASCII``
    did on a lowercased slice after a stand-in."""
    seen = set()
    for text in _ascii_texts(250, 2):
        lower = text.lower()
        for name in CUES:
            cues = getattr(pii_context, name)
            for end in range(1, len(text) + 1):
                for hi in range(end, min(len(text), end + 16) + 1):
                    j, skip_to = end, min(hi, end + 3)
                    while j < skip_to and text[j] in _AFTER_SKIP:
                        j += 1
                    after = text[j:hi].lower()
                    following = cues.ascii.match(("a" if _LETTER.match(text, j - 1) else " ") + after, 1)
                    expected: str | None = "unit" if _UNITS_ASCII.match(after) else None
                    if following is not None and following.lastgroup and following.lastgroup[0] == "p":
                        expected = "pos"
                    m = cues.after.match(lower, end, hi)
                    assert (m and m.lastgroup) == expected, (name, text, end, hi)
                    seen.add(expected)
    assert seen == {"pos", "unit", None}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_luhn_is_the_textbook_checksum() -> None:
    rng = random.Random(3)
    for n in range(1, 26):
        for _ in range(400):
            digits = "".join(rng.choice(string.digits) for _ in range(n))
            assert pii_numbers.luhn(digits) == _luhn(digits), digits
    assert pii_numbers.luhn("4111111111111111") and not pii_numbers.luhn("4111111111111112")


def _iban_end(text: str, start: int, length: int) -> int | None:
    """The loop ``_iban_end`` was: characters counted one by one, a single space between two of them skipped."""
    count, i, n = 0, start, len(text)
    while i < n and count < length:
        ch = text[i]
        if ch == " " and count and text[i - 1] != " " and i + 1 < n and text[i + 1] != " ":
            i += 1
            continue
        if not ("0" <= ch <= "9" or "A" <= ch <= "Z"):
            return None
        count += 1
        i += 1
    if count < length or (i < n and text[i].isascii() and text[i].isalnum()):
        return None
    return i


def test_iban_end_is_where_the_character_loop_ends() -> None:
    rng = random.Random(4)
    rare = "az_-.é\u00a0\n"
    ends = 0
    for _ in range(60_000):
        text = "".join(
            rng.choice(rare) if rng.random() < 0.08 else rng.choice("0123456789AB  ") for _ in range(rng.randint(0, 40))
        )
        start, length = rng.randint(0, len(text)), rng.randint(1, 34)
        expected = _iban_end(text, start, length)
        assert pii_numbers._iban_end(text, start, length) == expected, (text, start, length)
        ends += expected is not None
    assert ends > 500


@pytest.mark.parametrize("key", ["", "phone", "order_id"])
def test_phone_candidates_found_by_the_cluster_pass_are_phone_ats(key: str) -> None:
    """``numbers`` decides a national candidate's shape itself and calls ``_national`` (or ``_phone``) instead of
    ``phone_at`` when ``phone_at`` would try one candidate: for clusters in every shape, before and after every kind
    of character, the phones it reports are those ``phone_at`` reports on the same clusters."""
    rng = random.Random(5)
    groups = ["415", "555", "0134", "20", "7946", "0958", "0044", "06", "12", "34", "978", "1", "2019", "07", "28"]
    seps = [" ", "-", ".", "/", "(", ")", ") ", " ("]
    edges = ["", " ", "+", "(", "(+", ":", "a", "/", "#", "call ", "order ", "tel:", "\n", "x,phone\n1,"]
    ends = ["", " ", ".", ")", "x", "-X", " 12", " items", "\n"]
    numbers = ["(415) 555-0134", "415.555.0134", "020 7946 0958", "44 20 7946 0958", "030 12345678", "06 12 34 56 78"]
    checked = phones = 0
    for _ in range(4_000):
        if rng.random() < 0.4:
            cluster = rng.choice(numbers)
        else:
            cluster = rng.choice(groups)
            cluster += "".join(rng.choice(seps) + rng.choice(groups) for _ in range(rng.randint(1, 5)))
        text = rng.choice(edges) + cluster + rng.choice(ends)
        ctx = Context(text, key)
        got = [h for h in pii_numbers.numbers(text, ctx) if h[0] == "phone"]
        expected = []
        for m in pii_numbers._CLUSTER.finditer(ctx.classes):
            hit = pii_numbers.phone_at(text, Context(text, key), *m.span())
            if hit is not None and m.lastindex in (2, 3):  # (no phone is in the others)
                expected.append(hit)
        if not any(h[0] != "phone" for h in pii_numbers.numbers(text, ctx)):  # (another type may take the cluster)
            assert got == expected, (text, key)
            checked += 1
            phones += bool(got)
    assert checked > 2_000 and phones > 200


def test_vendor_key_shapes_start_with_the_listed_characters() -> None:
    """``keys`` skips a token whose first character is not in ``_SHAPED_FIRST`` when no key-like name is in the
    text: the characters any match of ``_SHAPED`` can start with, read from its parsed pattern, are those."""
    from re import _constants as c  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]

    from llmroute.core import pii_keys

    def first(items: list[tuple[object, object]]) -> set[str]:
        op, arg = items[0]
        if op is c.LITERAL:
            return {chr(arg)}  # type: ignore[arg-type]
        if op is c.IN:
            chars: set[str] = set()
            for kind, value in arg:  # type: ignore[attr-defined]
                assert kind in (c.LITERAL, c.RANGE), kind
                chars |= {chr(value)} if kind is c.LITERAL else set(map(chr, range(value[0], value[1] + 1)))
            return chars
        if op is c.BRANCH:
            return set().union(*(first(list(b)) for b in arg[1]))  # type: ignore[index]
        if op is c.SUBPATTERN:
            return first(list(arg[-1]))  # type: ignore[index]
        raise AssertionError(f"unexpected start {op}")

    assert first(list(_parser.parse(pii_keys._SHAPED.pattern))) == set(pii_keys._SHAPED_FIRST)


def test_resolving_hits_that_overlap_nowhere_keeps_them_all_in_order() -> None:
    """``pii._resolve`` returns hits that overlap nowhere sorted by start without the general bookkeeping: on random
    hit lists (disjoint, touching, overlapping, nested, equal, empty spans), it answers as the general way."""
    from llmroute.core import pii

    rng = random.Random(6)
    shortcut = 0
    for _ in range(20_000):
        hits = []
        for _ in range(rng.randint(2, 6)):
            start = rng.randint(0, 30)
            hits.append((rng.choice(["phone", "email", "x"]), start, start + rng.choice([0, 1, 3, 5, 10]), 0.9))
        if rng.random() < 0.5:
            hits = [(t, s + 40 * i, e + 40 * i, c) for i, (t, s, e, c) in enumerate(hits)]  # mostly disjoint
        got = list(pii._resolve(list(hits)))
        assert got == pii.resolve_overlapping(list(hits)), hits
        shortcut += len(got) == len(hits)
    assert shortcut > 5_000


def test_phone_edges_hold_after_every_character_not_tested() -> None:
    """``numbers`` runs ``_PHONE_EDGES`` only after a character in ``_EDGE_TESTED``: after any other (and at the
    start of a text) it matches, whatever stands before that character."""
    for code in [*range(0x3000), 0xFF08, 0xFF0B, 0x2028, 0x1F600]:
        ch = chr(code)
        for before in ("", " ", ":", "(", "+", "a", "::"):
            text = before + ch + "4155550134"
            matched = pii_numbers._PHONE_EDGES.match(text, len(before) + 1) is not None
            assert matched or ch in pii_numbers._EDGE_TESTED, (before, ch)
    assert pii_numbers._PHONE_EDGES.match("4155550134", 0) is not None


def test_phone_edges_fail_after_every_character_never_before_a_phone() -> None:
    """``numbers`` skips ``_PHONE_EDGES`` after a character in ``_NEVER_BEFORE``: it would not match there, whatever
    stands before that character."""
    for ch in pii_numbers._NEVER_BEFORE:
        for before in ("", " ", ":", "(", "+", "a", "::", "(+", "+("):
            text = before + ch + "4155550134"
            assert pii_numbers._PHONE_EDGES.match(text, len(before) + 1) is None, (before, ch)
            assert pii_numbers.phone_at(text, pii_context.Context(text), len(before) + 1, len(text)) is None


def test_key_name_search_in_the_lowercased_text_equals_the_case_insensitive_one() -> None:
    """``_assigned`` with the lowercased text (``_ASSIGNED_WORDS``, then ``_ASSIGNED_ASCII``) says what it says on
    the text (``_ASSIGNED``, case-insensitive), for every window of ASCII text made of key names and assignments."""
    from llmroute.core import pii_keys

    rng = random.Random(8)
    names = ["api_key", "API-KEY", "apikey", "Secret", "token", "Access_Key", "Authorization", "bearer", "Credentials"]
    names += ["passwd", "Password", "private-key", "session_key", "auth", "AccountKey", "sig", "x", "my", "Key"]
    glue = ["", " ", "=", ": ", " = ", '"', "'", "=>", ":=", "\t", "Bearer ", "Basic ", "TOKEN ", "_", "-", "1", "\n"]
    found = 0
    for _ in range(1_500):
        text = "".join(rng.choice(names) + rng.choice(glue) for _ in range(rng.randint(1, 5)))
        lower = text.lower()
        for start in range(1, len(text) + 1):
            lo = max(0, start - pii_keys._ASSIGNED_REACH)
            expected = pii_keys._ASSIGNED.search(text, lo, start) is not None
            assert pii_keys._assigned(text, lo, start, lower) == expected, (text, lo, start)
            assert pii_keys._assigned(text, lo, start) == expected, (text, lo, start)
            found += expected
    assert found > 2_000


def test_maybe_public_v4_matches_are_the_ipv4_matches_that_can_be_public() -> None:
    """``ipv4_candidates`` walks ``_MAYBE_PUBLIC_V4``'s matches instead of ``_IPV4``'s: in dotted text of every shape,
    each of its matches is an ``_IPV4`` match (same span), and each ``_IPV4`` match without a leading zero, of octets up
    to 255, in a public range, is one of its matches."""
    from llmroute.core import pii_net

    rng = random.Random(9)
    octets = ["0", "1", "9", "10", "01", "007", "100", "127", "169", "172", "192", "224", "254", "255", "256", "999"]
    octets += ["16", "31", "32", "168", "64", "198", "203", "1000"]
    seps = [".", ".", ".", "..", " ", "-", "/", ":", "a"]
    edges = ["", " ", "v", "=", ".", "-", "/", "1", "(", "=="]
    public = 0
    for _ in range(20_000):
        if rng.random() < 0.7:  # a dotted quad
            quad = ".".join(rng.choice(octets) for _ in range(4))
        else:
            quad = rng.choice(octets) + "".join(rng.choice(seps) + rng.choice(octets) for _ in range(rng.randint(2, 5)))
        text = rng.choice(edges) + quad + rng.choice(["", " ", ".", ".5", "/24", "x", "-"])
        maybe = [m.span() for m in pii_net._MAYBE_PUBLIC_V4.finditer(text)]
        plain = {m.span(): m.group() for m in pii_net._IPV4.finditer(text)}
        assert set(maybe) <= set(plain), text
        for span, found in plain.items():
            octet = list(map(int, found.split(".")))
            if pii_net._LEADING_ZERO.search(found) is None and max(octet) <= 255 and pii_net.public_v4(*octet):
                assert span in maybe, text
                public += 1
    assert public > 1_000
