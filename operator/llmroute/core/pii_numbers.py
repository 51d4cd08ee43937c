"""The numeric PII types: card numbers, US SSNs, IBANs and phone numbers, each found by a cheap pattern and kept
only when it validates and its context does not say it is something else.

Validation is what separates data from look-alikes: Luhn plus the issuer ranges for cards (a test number with a bad
checksum or a 13-digit millisecond timestamp is no card), the SSA's ranges for SSNs, mod 97 plus the country's BBAN
shape for IBANs (the rules and registry of ``python-stdnum``, applied here without its per-call string cleaning and
lookups, which cost more than the rest of a cluster's checks; tests compare the two), and the numbering plans in
``phonenumbers`` for phones. Candidates come from one pass over the text's digit clusters, each sent only to the
types its shape allows, and only when the shape that type's pattern needs is in the cluster (checked on
``Context.classes``, bytes, with look-arounds that every match of the real pattern satisfies, so the shortcut never
drops a finding): that pass is ``plan`` - the checks each cluster needs, with the card, SSN and IPv4 candidates whose
patterns and checksums hold - compiled in ``_pii_clusters.c`` where it is built and ``plan_py`` where it is not (the
same items: tests compare them), and ``numbers`` runs those checks that read context or validate (``numbers_py``; the
compiled driver, ``_pii_clusters.numbers``, where it is built). Parsing a phone
number is slow (15-27 us in ``phonenumbers``, 4-10 us in ``pii_plans``, which follows its steps for the strings this
module validates and falls back to it for any other), so it runs only on candidates that the shape checks and the
context let through, a national number is parsed only in the regions whose plan may accept it
(``pii_plans.may_be_valid``), and nothing is cached across texts (a cache would keep numbers in memory;
``phonenumbers`` keeps the patterns of its metadata compiled, ``enable_pattern_cache``). Context (``pii_context``)
turns away order, tracking and reference numbers and is what a bare national number needs before it counts as a
phone. Pure; values are never returned or kept, only spans.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from functools import lru_cache

import phonenumbers
from stdnum import numdb

from llmroute.core import pii_context, pii_net, pii_plans
from llmroute.core.pii_context import CARD, IP, PHONE, SSN, Context, Cue

Hit = tuple[str, int, int, float]
"""(type, start, end, confidence): what a finder reports."""
Item3 = tuple[int, int, int]
"""(start, end, a flag): a candidate whose shape and checksum hold, before its context is read."""

phonenumbers.enable_pattern_cache()  # (metadata patterns only: bounded, and no number is kept)

# --- cards ---------------------------------------------------------------------------------------------------------

_CARD = re.compile(
    r"[0-9](?<![0-9A-Za-z_./\-][0-9])"
    r"(?:[0-9]{12,18}|[0-9]{3}([ -])(?:[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{3})?|[0-9]{6}\1[0-9]{4,5}"
    r"|[0-9]{4}\1[0-9]{4}\1[0-9]{1,3}))"
    r"(?![0-9A-Za-z_]|[.\-/][0-9])"
)
"""Contiguous 13-19 digits, or grouped as printed: 4-4-4-4(-3), 4-6-4/5 (Amex, Diners), 4-4-4-1..3."""


_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")
"""Each digit doubled, less 9 when that is over 9: what Luhn adds for every second digit from the right."""


def luhn(digits: str) -> bool:
    """The Luhn checksum of ``digits`` (ASCII digits) holds; slices and C-level sums, not a loop per digit: the sum of
    a digit string's bytes is the sum of its digits plus 48 for each."""
    total = sum(digits[-1::-2].encode()) + sum(digits[-2::-2].translate(_LUHN_DOUBLED).encode())
    return (total - 48 * len(digits)) % 10 == 0


def issuer_ok(digits: str) -> bool:
    """The number starts like a card of its length from a scheme that issues that length (IIN ranges)."""
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if (
        2200 <= four <= 2204
        or 3528 <= four <= 3589
        or two == 62
        or four == 6011
        or two == 65
        or 644 <= int(digits[:3]) <= 649
    ):
        return 16 <= n <= 19
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if two == 50 or 56 <= two <= 69:
        return 12 <= n <= 19
    return False


_CARD_SHAPE = re.compile(
    rb"(?<!0)0(?:0{12,18}|000([ -])(?:0{4}(?:\1)0{4}(?:\1)0{4}(?:(?:\1)0{3})?|0{6}(?:\1)0{4,5}"
    rb"|0{4}(?:\1)0{4}(?:\1)0{1,3}))(?!0)"
)
"""``_CARD`` over the character classes with its look-arounds reduced to "no digit before/after": whatever ``_CARD``
matches in a span, this matches in the same span of ``Context.classes``, so a cluster it misses holds no card."""


def card_candidates(text: str, lo: int, hi: int) -> list[Item3]:
    """The card numbers in ``text[lo:hi]`` before their context is read: ``_CARD`` matches whose digits pass Luhn and
    an issuer's range and are not one digit repeated, as (start, end, 1 if printed in groups else 0)."""
    found: list[Item3] = []
    for m in _CARD.finditer(text, lo, hi):
        digits = m.group().replace(" ", "").replace("-", "")
        if luhn(digits) and issuer_ok(digits) and digits.count(digits[0]) != len(digits):
            found.append((m.start(), m.end(), int(m.group(1) is not None)))
    return found


# --- US SSNs -------------------------------------------------------------------------------------------------------

_SSN = re.compile(
    r"[0-9](?<![0-9A-Za-z_./:+\-][0-9])[0-9]{2}(?:([- ])[0-9]{2}\1[0-9]{4}|[0-9]{6})"
    r"(?![0-9A-Za-z_]|[./:\-][0-9])"
)
"""123-45-6789 (on its own), or 123 45 6789 / 123456789 (only with an SSN cue)."""
_SSN_SHAPE_CLASSES = re.compile(rb"(?<!0)000(?:([- ])00\1|00)0000(?!0)")
"""``_SSN`` over the character classes, look-arounds reduced to "no digit before/after" (as ``_CARD_SHAPE``)."""


_SSN_NEVER_ISSUED = frozenset({"078051120", "457555462", "219099999"})
"""Numbers the SSA voided after they were printed on sample cards and in ads (python-stdnum's blacklist)."""


def ssn_valid(digits: str) -> bool:
    """``digits`` (nine ASCII digits) could be an issued SSN: python-stdnum's ``us.ssn.is_valid`` on them, without
    its string cleaning and regex (a test compares the two): no area 000, 666 or 9xx, no group 00, no serial 0000,
    not a voided number."""
    return not (
        digits[0] == "9"
        or digits[:3] in ("000", "666")
        or digits[3:5] == "00"
        or digits[5:] == "0000"
        or digits in _SSN_NEVER_ISSUED
    )


def ssn_candidates(text: str, lo: int, hi: int) -> list[Item3]:
    """The SSNs in ``text[lo:hi]`` before their context is read: ``_SSN`` matches that could be issued, as (start,
    end, 1 if written with dashes else 0)."""
    found: list[Item3] = []
    for m in _SSN.finditer(text, lo, hi):
        if ssn_valid(m.group().replace("-", "").replace(" ", "")):
            found.append((m.start(), m.end(), int(m.group(1) == "-")))
    return found


# --- IBANs ---------------------------------------------------------------------------------------------------------

_IBAN_DB = numdb.get("iban")
_STRUCT = re.compile(r"(\d+)!?([nac])")
_STRUCT_CHARS = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Za-z0-9]"}
_IBAN_BASE10 = {ord(ch): str(i) for i, ch in enumerate(string.ascii_uppercase, 10)}
"""Letters to 10..35, as ISO 13616 (and python-stdnum's ``mod_97_10`` check) reads them."""


def _bban_groups(country: str) -> list[tuple[str, str]] | None:
    """``country``'s BBAN (the part after the check digits) as python-stdnum's registry writes it: (count, class)
    groups, ``n`` digits, ``a`` capitals, ``c`` either; None: not an IBAN country."""
    info = _IBAN_DB.info(country)
    bban = info[0][1].get("bban") if info and len(info[0][0]) == 2 else None
    return _STRUCT.findall(bban) if bban else None


@lru_cache(maxsize=128)
def iban_format(country: str) -> tuple[int, re.Pattern[str]] | None:
    """The IBAN length for ``country`` and the pattern of its BBAN, from python-stdnum's registry; None: not an IBAN
    country."""
    groups = _bban_groups(country)
    if groups is None:
        return None
    return (4 + sum(int(n) for n, _ in groups), re.compile("".join(f"{_STRUCT_CHARS[k]}{{{n}}}" for n, k in groups)))


def iban_at(text: str, start: int) -> Hit | None:
    """The IBAN starting at ``start`` (two capital letters, two check digits), if one validates there: the length
    and BBAN format of its country and mod 97, which is python-stdnum's ``iban.is_valid`` without the country's
    own extra checks (as before), its string cleaning and its per-call lookups (a test compares the two)."""
    if start > 0 and text[start - 1].isascii() and (text[start - 1].isalnum() or text[start - 1] == "_"):
        return None
    fmt = iban_format(text[start : start + 2])
    end = _iban_end(text, start, fmt[0]) if fmt is not None else None
    if end is None or fmt is None:
        return None
    compact = text[start:end].replace(" ", "")
    if fmt[1].fullmatch(compact, 4) is None or int((compact[4:] + compact[:4]).translate(_IBAN_BASE10)) % 97 != 1:
        return None
    return ("iban", start, end, 0.97)


IBAN_COUNTRIES = "".join(sorted(p[1] for p in _IBAN_DB.prefixes if _bban_groups(p[1])))
"""The countries whose IBANs ``iban_at`` validates (``iban_format`` is not None), two letters each: elsewhere it
finds none (a test checks every pair of capitals)."""


IBAN_BBANS = tuple(
    "".join(kind * int(n) for n, kind in _bban_groups(IBAN_COUNTRIES[i : i + 2]) or ())
    for i in range(0, len(IBAN_COUNTRIES), 2)
)
"""Each of ``IBAN_COUNTRIES``' BBANs as one class letter per character (``_bban_groups`` spelt out), in that order:
what the compiled driver checks an IBAN against, as ``iban_format``'s pattern does."""


def _iban_end(text: str, start: int, length: int) -> int | None:
    """Where an IBAN of ``length`` characters starting at ``start`` ends (single spaces between groups allowed)."""
    m = _iban_span(length).match(text, start)
    return None if m is None else m.end()


@lru_cache(maxsize=64)
def _iban_span(length: int) -> re.Pattern[str]:
    """``length`` digits or capitals, each after the first optionally after one space, and then no ASCII letter or
    digit: one path through the text at most (a space must be followed by a character it counts), so the match ends
    where reading character by character, skipping single spaces between characters, would."""
    return re.compile(f"[0-9A-Z](?: ?[0-9A-Z]){{{length - 1}}}(?![A-Za-z0-9])")


# --- phones --------------------------------------------------------------------------------------------------------

_NANP = re.compile(r"(?:\+?1[-. ]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[-. ])[2-9][0-9]{2}[-. ][0-9]{4}")
_DOTS = re.compile(r"[0-9]{3}\.[0-9]{3}\.[0-9]{4}|1\.[0-9]{3}\.[0-9]{3}\.[0-9]{4}|[0-9]{2}(?:\.[0-9]{2}){3,4}")
"""Dots the way phone numbers use them (415.555.0134, 06.12.34.56.78); any other dotted run is a version, an
address, a decimal or a date."""
_ISBN = re.compile(r"97[89]-?[0-9]{1,5}-[0-9]{1,7}-[0-9]{1,7}-[0-9]|[0-9]{1,5}-[0-9]{1,7}-[0-9]{1,7}-[0-9]")
"""Hyphenated ISBN-13 and ISBN-10 (group-publisher-title-check), whose single check digit no phone plan ends in."""
_DATE = re.compile(
    r"(?<![0-9])(?:[0-9]{4}([-/.])[01]?[0-9]\1[0-3]?[0-9]|[0-3]?[0-9]([-/.])[01]?[0-9]\2[0-9]{4})(?![0-9])"
)


def _holds_date(candidate: str) -> bool:
    """``_DATE`` is in ``candidate`` (which needs two of ``-/.``, looked for first: most clusters have none)."""
    return ("-" in candidate or "/" in candidate or "." in candidate) and _DATE.search(candidate) is not None


_REGIONS = (
    "US",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "NL",
    "IN",
    "BR",
    "MX",
    "JP",
    "CN",
    "AU",
    "CA",
    "SG",
    "ZA",
    "SE",
    "PL",
    "CH",
    "IE",
    "NG",
    "AT",
    "BE",
    "PT",
    "DK",
    "NO",
    "FI",
    "RU",
    "KR",
    "TR",
    "AR",
    "CO",
    "PH",
    "ID",
)
"""Where a national-format number is tried, in this order, when its context says it is a phone."""
_TRUNK_REGIONS = ("GB", "DE", "FR", "ES", "IT", "NL", "AU", "JP", "CH", "AT", "BE", "SE", "IE", "IN", "ZA", "BR")
"""Regions whose national numbers start with a trunk 0: "020 7946 0958" is a phone without any cue."""


def valid_in(number: str, region: str | None) -> bool:
    """``number`` (digits and separators, or +international) is a valid number in ``region``'s plan: parsed and
    validated by ``pii_plans`` (what ``phonenumbers`` would say, without its steps that cannot apply to such a
    number), or by ``phonenumbers`` where that does not model the number."""
    found = pii_plans.valid_in(number, region)
    if found is not None:
        return found
    try:
        return pii_plans.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


_WORD_ASCII = frozenset(string.ascii_letters + string.digits + "_")
_PHONE_BEFORE = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_+-./@#$€£%^&*")
"""A phone number does not follow these (a longer token, a price, a path, a reference)."""


def phone_at(text: str, ctx: Context, start: int, end: int) -> Hit | None:
    """The phone number in the digit cluster ``start:end`` (with a ``+`` or ``(`` before it), if it is one."""
    if start > 0 and text[start - 1] in "+(":
        start -= 1
        if start > 0 and text[start - 1] == "(" and text[start] == "+":
            start -= 1  # "(+44) 20 7946 0958"
    if start > 0 and (text[start - 1] in _PHONE_BEFORE or text[max(0, start - 2) : start] == "::"):
        return None  # "tel:+1…" is a phone, "arn:aws:iam::004751573971" an account
    if end < len(text) and (text[end] in _WORD_ASCII or text[end : end + 2] in ("-X", "-x")):
        return None
    candidate = text[start:end]
    for _ in range(2):
        conf = _phone(ctx, start, end, candidate)
        if conf:
            return ("phone", start, end, conf)
        if " " not in candidate[-4:]:
            return None  # (what the test below needs, in one step)
        cut = candidate.rstrip("0123456789").rstrip(" -.()/\u00a0")
        if not 0 < len(candidate) - len(cut) <= 3 or " " not in candidate[len(cut) - 1 : len(cut) + 1]:
            return None  # only "415 555 0134 2 items": a short group after a space, not a longer number's tail
        candidate, end = cut, start + len(cut)
    return None


_NOT_BEFORE = "[0-9A-Za-z_+\\-./@#$€£%^&*]"  # ``_PHONE_BEFORE`` as a character class
_PHONE_EDGES = re.compile(
    rf"(?<![(+])(?<!{_NOT_BEFORE})(?<!::)"
    rf"|(?<=\()(?<!{_NOT_BEFORE}\()(?<!::\()"
    rf"|(?<=\+)(?<![(]\+)(?<!{_NOT_BEFORE}\+)(?<!::\+)"
    rf"|(?<=\(\+)(?<!{_NOT_BEFORE}\(\+)(?<!::\(\+)"
)
"""Matched at a digit cluster's start: true exactly where ``phone_at``'s test of what comes before the number (after
it takes in a ``+``, ``(`` or ``(+`` before the digits) lets it through. One C-level match instead of that Python
for every cluster: paths, versions and ids (``/orders/1245465``, ``Chrome/124.0.1034.188``) stop here."""

_NEVER_BEFORE = _PHONE_BEFORE - {"+"}
"""Where the character before a cluster is one of these, ``_PHONE_EDGES`` does not match: each of its branches needs
the character before to be none of ``_PHONE_BEFORE`` (the first) or ``(`` or ``+`` (the others), so it is not run
(``/orders/1245465``, ``Chrome/124.0.1034.188``, ``id=35bf99``)."""
_EDGE_TESTED = frozenset(_PHONE_BEFORE | set("(+:"))
"""Where the character before a cluster is none of these (or there is none), ``_PHONE_EDGES`` matches: its first
branch holds (not after ``(``, ``+``, ``_PHONE_BEFORE`` or ``::``), so it is not run."""

_SSN_SHAPE = re.compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}")
_TRUNK_SHAPE = re.compile(r"\(?0[0-9]*\)?(?:[ \-][0-9]{2,})+")
"""A national number after a trunk 0, in groups of two or more digits (not an ISBN's 0-463-14944-0)."""


def _phone(ctx: Context, start: int, end: int, candidate: str) -> float:
    """Confidence that ``candidate`` (at ``start:end``) is a phone number, 0 if it is not."""
    digits = ctx.classes.count(b"0", start, end)  # ``candidate`` is ``text[start:end]``
    if not 7 <= digits <= 17 or "/" in candidate or candidate.count("(") != candidate.count(")"):
        return 0.0
    international = candidate[0] == "+" or candidate.startswith(("00", "(+"))
    if international:
        if digits > 16 - (candidate[0] != "0"):
            return 0.0
        cue = ctx.phone(start, end)
        if cue is Cue.NEGATIVE:
            return 0.0
        number = (
            "+" + candidate[2:]
            if candidate[0] == "0"
            else candidate.replace("(+", "+", 1).replace(")", "", 1)
            if candidate[0] == "("
            else candidate
        )
        return (0.97 if cue is Cue.POSITIVE else 0.9) if valid_in(number, None) else 0.0
    if digits > 12 or ("-" in candidate and (_SSN_SHAPE.fullmatch(candidate) or _ISBN.fullmatch(candidate))):
        return 0.0  # (a national number holding a date never gets here: ``numbers`` looks for one first)
    if "." in candidate and not _DOTS.fullmatch(candidate):
        return 0.0
    return _national(ctx, start, end, candidate, digits)


def _national(ctx: Context, start: int, end: int, candidate: str, digits: int) -> float:
    """``_phone`` of a national ``candidate`` of ``digits`` digits whose shape it let through (at most 12 digits, no
    ``/``, balanced parentheses, no SSN or ISBN shape, dots only as phone numbers use them)."""
    nanp = _NANP.fullmatch(candidate) is not None
    trunk = 8 <= digits <= 12 and _TRUNK_SHAPE.fullmatch(candidate) is not None
    if not (nanp or trunk) and not ctx.phone_may_be_positive():
        return 0.0  # only a positive cue makes a phone of a number of another shape, and the text has none (its
        # scan of the text comes last: it costs more than the shape tests)
    cue = ctx.cue(start, end, PHONE)
    if cue is Cue.NEGATIVE:
        return 0.0
    return _validated(candidate, nanp, trunk, cue is Cue.POSITIVE)


def _validated(candidate: str, nanp: bool, trunk: bool, positive: bool) -> float:
    """``_national``'s answer once the shape and the cue are known: ``nanp``, ``candidate`` is written as a North
    American number; ``trunk``, as a national number after a trunk 0 (8-12 digits); ``positive``, its cue says phone
    (a negative cue never gets here). Where none of the three holds the answer is 0 without validating."""
    if nanp and valid_in(candidate, "US"):
        return 0.95 if positive else 0.8
    if positive:
        return 0.75 if valid_in_any(candidate, _REGIONS) else 0.0
    if trunk:
        return 0.7 if valid_in_any(candidate, _TRUNK_REGIONS) else 0.0
    return 0.0


def valid_in_any(candidate: str, regions: tuple[str, ...]) -> bool:
    """``any(valid_in(candidate, r) for r in regions)``, parsing only in the regions whose plan may accept the
    number (``pii_plans.may_be_valid``: False only where ``valid_in`` is)."""
    found = pii_plans.digits(candidate)
    if found is None:
        return any(valid_in(candidate, r) for r in regions)
    return any(pii_plans.may_be_valid(found, r) and valid_in(candidate, r) for r in regions)


# --- the pass ------------------------------------------------------------------------------------------------------

_CLUSTER = re.compile(
    rb"0(?:([0a]{3}:[0a:]{2,})"
    rb"|((?<!00)(?:0|[ .()/\-]0|\) 0| \(0){6,}+)"
    rb"|(0{0,2}\.0{1,3}\.0{1,3}\.0{1,3})"
    rb"|((?<=aa0)0))"
)
"""Over the text's character classes (digit 0, letter a): an IPv6-looking run, a cluster of seven or more digits
with phone/card separators, a short dotted quad, or two digits after two letters (an IBAN's head). The pattern
starts with a literal, so the regex engine jumps from digit to digit instead of trying every position.

The seven-digit branch is written for speed and matches exactly what its greedy form (an optional separator and a
digit, six times or more) did: at most one of its steps fits at any character, so taking them possessively (no
backtracking) ends where the greedy form did; and it is not tried inside a run of digits (``(?<!00)``), where it
cannot match when it failed one digit earlier (the other branches that end inside a run, a dotted quad and an
IBAN's head, are only tried where it failed).

Each branch is a group, so ``lastindex`` says which one matched: 1 the IPv6-looking run (the only one that holds a
``:`` or can end in a letter), 3 the short dotted quad, 4 the IBAN head (two digits: nothing else to look for)."""


PLAN_IPV6, PLAN_IBAN, PLAN_IPV4, PLAN_SSN, PLAN_CARD, PLAN_NATIONAL, PLAN_INTERNATIONAL, PLAN_PHONE_AT = range(8)
"""The checks a digit cluster may need, in ``plan_py``'s items (the compiled plan uses the same numbers)."""

Item = tuple[int, int, int, int]
"""(kind, a, b, c): the check ``kind`` at ``a:b``; ``c``: the digits of a ``PLAN_NATIONAL`` candidate, and for a
``PLAN_IBAN`` head (at ``a``) how many of the items after it belong to its cluster (skipped when the IBAN validates)."""


def numbers_py(text: str, ctx: Context) -> Iterator[Hit]:
    """Every card, SSN, IBAN, phone and IP address: the checks ``plan`` says each digit cluster needs, in order.

    The plan decides on shapes alone (what a cluster may be, from its characters and those around it); what it
    yields here validates a candidate and reads its context. ``_pii_clusters.numbers`` (compiled) returns the same
    hits in the same order, calling the functions this calls for what validates with a library (the tests compare
    the two); ``numbers`` is that one where it is built."""
    items = iter(plan(text, ctx.classes, PLAN_CONSTANTS))
    for kind, a, b, c in items:
        if kind == PLAN_NATIONAL:
            conf = _national(ctx, a, b, text[a:b], c)
            if conf:
                yield ("phone", a, b, conf)
        elif kind == PLAN_IPV4:  # c: both first octets below 10 (only a positive cue makes that an address)
            cue = ctx.cue(a, b, IP)
            if not (cue is Cue.NEGATIVE or (c and cue is not Cue.POSITIVE)):
                yield ("ip_address", a, b, 0.95 if cue is Cue.POSITIVE else 0.85)
        elif kind == PLAN_SSN:  # c: written with dashes (enough without a cue)
            cue = ctx.cue(a, b, SSN)
            if cue is Cue.POSITIVE:
                yield ("us_ssn", a, b, 0.95)
            elif cue is Cue.NONE and c:
                yield ("us_ssn", a, b, 0.8)
        elif kind == PLAN_CARD:  # c: printed in groups
            cue = ctx.cue(a, b, CARD)
            if cue is not Cue.NEGATIVE:
                yield ("credit_card", a, b, 0.99 if cue is Cue.POSITIVE else 0.9 if c else 0.8)
        elif kind == PLAN_INTERNATIONAL:
            conf = _phone(ctx, a, b, text[a:b])
            if conf:
                yield ("phone", a, b, conf)
        elif kind == PLAN_PHONE_AT:
            phone = phone_at(text, ctx, a, b)
            if phone is not None:
                yield phone
        elif kind == PLAN_IBAN:
            hit = iban_at(text, a)
            if hit is not None:
                yield hit
                for _ in range(b):  # the rest of the cluster is not looked at (an IBAN holds no other number)
                    next(items)
        else:  # PLAN_IPV6
            yield from pii_net.ipv6_at(text, a, b)


def plan_py(text: str, classes: bytes, constants: object = None) -> list[Item]:
    """The checks each digit cluster of ``text`` needs (``classes``: ``Context.classes``), in order: one pass over
    the clusters, each sent to what its shape allows. ``_pii_clusters.plan`` (C) returns the same items, and is used
    when it is built; this is the reference it is tested against and what runs without it. ``constants``: what the
    compiled plan is given of the tables this reads from its modules (``PLAN_CONSTANTS``); unused here."""
    items: list[Item] = []
    for m in _CLUSTER.finditer(classes):
        start, end = m.span()
        branch = m.lastindex
        if branch == 1:  # holds a ``:`` (or ends in a letter): only an IPv6 address may start here
            if text[start] in "23":
                items.append((PLAN_IPV6, start, end, 0))
            continue
        iban = -1
        if start >= 2 and "A" <= text[start - 2] <= "Z" and "A" <= text[start - 1] <= "Z":
            iban = len(items)
            items.append((PLAN_IBAN, start - 2, 0, 0))
        _cluster(items, text, classes, start, end, branch)
        if iban >= 0:
            items[iban] = (PLAN_IBAN, start - 2, len(items) - iban - 1, 0)
    return items


def _cluster(items: list[Item], text: str, classes: bytes, start: int, end: int, branch: int | None) -> None:
    """``plan_py``'s items for the cluster ``start:end`` (not an IPv6-looking run), after any IBAN head."""
    n, count, find = len(text), classes.count, classes.find
    if branch == 4:  # two digits after two letters: an IBAN's head or nothing
        return
    if branch == 3 or count(b".", start, end) == 3:
        items.extend((PLAN_IPV4, *found) for found in pii_net.ipv4_candidates(text, start, min(n, end + 2)))
    digits = count(b"0", start, end)
    if digits < 7:
        return
    if digits >= 9 and _SSN_SHAPE_CLASSES.search(classes, start, end + 2):
        items.extend((PLAN_SSN, *found) for found in ssn_candidates(text, start, min(n, end + 2)))
    if digits >= 12 and _CARD_SHAPE.search(classes, start, end + 2):
        items.extend((PLAN_CARD, *found) for found in card_candidates(text, start, min(n, end + 2)))
    before = text[start - 1] if start else ""
    if digits > 20 or before in _NEVER_BEFORE:
        return  # (``phone_at`` would turn it away on the characters around it, whatever the digits)
    if before in _EDGE_TESTED and _PHONE_EDGES.match(text, start) is None:
        return
    if end < n and (text[end] in _WORD_ASCII or text[end : end + 2] in ("-X", "-x")):
        return
    one_try = find(b" ", end - 4, end) < 0  # ``phone_at`` cuts a last group after a space in the last four
    # characters and tries again; without one it tries only the cluster (with a ``+``, ``(`` or ``(+`` before it),
    # which is what this tries then, without its checks of the characters around it (done above)
    if before != "+" and (before == "(" or text[start : start + 2] != "00"):  # national, as ``_phone`` decides
        if one_try:
            if digits > 12:
                return  # (``_not_national``)
            if before == "(":
                start -= 1
            elif _PUNCTUATED.search(classes, start, end) is None:  # digits and spaces: no date, no other shape
                items.append((PLAN_NATIONAL, start, end, digits))
                return
            if not (
                (find(b".", start, end) >= 0 and _DOTS.fullmatch(text, start, end) is None)  # (first: IP
                or _holds_date(text[start + (before == "(") : end])  # addresses, versions and decimals)
                or _punctuation_not_national(text, classes, start, end)
            ):
                items.append((PLAN_NATIONAL, start, end, digits))
            return  # (else a date, below, or ``_phone`` would turn it away on its shape alone)
        if digits > 15 or _holds_date(text[start:end]):
            return  # more digits than any phone number has, even after ``phone_at`` cuts a short last group, or a
            # national number holding a date (as ``phone_at``'s candidate does: it adds no digit before this text),
            # which is no phone, and cutting its last group keeps the date (it follows ``-/.``, not a space)
    elif one_try:  # international: after a ``+`` (or ``(+``), or starting with ``00``
        if before == "+":
            start -= 2 if start > 1 and text[start - 2] == "(" else 1
        items.append((PLAN_INTERNATIONAL, start, end, 0))
        return
    items.append((PLAN_PHONE_AT, start, end, 0))


_PUNCTUATED = re.compile(rb"[./()\-]")
"""What ``_punctuation_not_national`` and a date need one of: most clusters have none."""

_compiled_plan: Callable[[str, bytes, object], list[Item]] | None
try:
    from llmroute.core._pii_clusters import plan as _compiled_plan
except ImportError:  # not built (no C compiler where it was installed): the same plan in Python
    _compiled_plan = None

PLAN_CONSTANTS = (pii_net._NOT_PUBLIC_V4, "".join(sorted(pii_net._PINS)), tuple(sorted(_SSN_NEVER_ISSUED)))
"""The tables the compiled plan reads: ranges that hold no public IPv4 address, version pins, voided SSNs."""

_HOOKS = (
    PLAN_CONSTANTS,
    pii_context._UNIT_WORDS,
    (PHONE, CARD, SSN, IP),
    (PHONE.words, CARD.words, SSN.words, IP.words),
    ("phone", "credit_card", "us_ssn", "ip_address", "iban"),
    pii_context.label_cue,
    _validated,
    valid_in,
    IBAN_COUNTRIES,
    IBAN_BBANS,
    pii_net.ipv6_at,
)
"""What the compiled driver is given: the plan's constants, the unit words, the cues it looks up (in the order of its
``CUES_*``) with their compiled word tables, the type names of its hits, the Python functions it calls where
``numbers_py`` does (a label that is not ASCII, a national number's and an international number's validation), the
countries an IBAN may start with and their BBANs (it checks IBANs as ``iban_at`` does), and the IPv6 check."""

_Headers = dict[int, tuple[str, str] | None]
_compiled_numbers: Callable[[str, bytes, str, _Headers, object, tuple[object, ...]], list[Hit]] | None
try:
    from llmroute.core._pii_clusters import numbers as _compiled_numbers
except ImportError:  # not built
    _compiled_numbers = None


def numbers(text: str, ctx: Context) -> list[Hit]:
    """``numbers_py``'s hits, from the compiled driver where it is built (one call per text, no Python per item but
    the validations)."""
    if _compiled_numbers is not None:
        return _compiled_numbers(text, ctx.classes, ctx.key, ctx.headers, ctx, _HOOKS)
    return list(numbers_py(text, ctx))
COMPILED = _compiled_plan is not None
"""Whether ``plan`` is the compiled one (``_pii_clusters.c``); CI fails when it is not built
(``tests/unit/test_pii_clusters.py``)."""
plan: Callable[[str, bytes, object], list[Item]] = _compiled_plan if _compiled_plan is not None else plan_py
"""The checks each digit cluster of a text needs: the compiled plan when it is built, else ``plan_py``."""


def _punctuation_not_national(text: str, classes: bytes, start: int, end: int) -> bool:
    """``_phone`` returns 0 for the national candidate ``text[start:end]`` of at most 12 digits on its shape alone,
    before any context, when it holds ``_PUNCTUATED`` (without, it does not on shape): the same tests on the character
    classes (a match of these patterns has no look-around, so on ``text`` between offsets it is the match on the
    slice)."""
    return (
        (classes.find(b".", start, end) >= 0 and _DOTS.fullmatch(text, start, end) is None)
        or classes.find(b"/", start, end) >= 0
        or classes.count(b"(", start, end) != classes.count(b")", start, end)
        or (
            classes.find(b"-", start, end) >= 0
            and (_SSN_SHAPE.fullmatch(text, start, end) is not None or _ISBN.fullmatch(text, start, end) is not None)
        )
    )
