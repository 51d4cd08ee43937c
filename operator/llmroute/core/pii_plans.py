"""Phone numbers against the numbering plans of ``phonenumbers``, with its answers and fewer of its steps.

Three parts, each giving exactly what ``phonenumbers`` gives for the inputs it takes (``tests/unit/test_pii_plans.py``
compares them with it on generated, random and example numbers and on every number the stress texts validate):

- ``valid_in``: ``is_valid_number(parse(number, region))`` for the strings ``pii_numbers`` validates (a ``+`` and
  digits, or digits, with `` -.()/``), following ``parse`` step by step with its own helpers but without the steps
  that cannot apply to them (RFC 3966, extensions, letters, non-ASCII digits): 4-10 us where ``phonenumbers`` takes
  15-27 us (phone validation was a sixth of dense text's detection time). None for any other string.
- ``valid``/``is_valid_number``: ``is_valid_number`` without testing a number's types twice (once to find its region
  among those sharing a country code, once to validate it there) and with the descriptions compiled once.
- ``may_be_valid``: which plans cannot accept a national-format number, decided without parsing it. A national
  number next to a phone cue counts as a phone when one of the 34 plans ``pii_numbers`` tries accepts it (``any`` over
  the regions, in order); for a number none accepts that was 34 parses (~0.5 ms with ``phonenumbers``, ~0.14 ms with
  ``valid_in``) and is now one parse in the few regions this lets through (~0.06 ms for "7 920 625": 5 of 34). It is
  False only where ``valid_in`` is False, which is what keeps the ``any`` the same boolean.

Why ``may_be_valid`` holds, for a candidate of ASCII digits and `` -.()/`` only (``digits``; else: parse it),
following ``phonenumbers.parse`` and ``is_valid_number`` (pinned in pyproject; the private functions used here are
that version's, so an upgrade is checked by the tests, which compare the shortcut with the plain loop region by
region):

- No ``+``, no letters (vanity numbers), no extension (each extension form needs a letter, ``#``, ``~``, ``,`` or
  ``;``): what ``parse`` reads is the candidate's digits, ``d``. Where the region's international prefix (IDD)
  matches the start of ``d``, the number is read as international: not modelled, the region is parsed.
- Otherwise the national number is ``d`` or ``d`` with the region's national prefix stripped (the region's
  ``national_prefix_for_parsing`` and transform rule, ``_maybe_strip_national_prefix_carrier_code``), or, when ``d``
  starts with the region's country code, the rest stripped the same way, then stripped again with the metadata of
  the country code's main region (what ``parse`` uses after it extracted a code): every branch ``parse`` may take is
  in ``nationals``, whichever it takes.
- ``is_valid_number`` then tests the national number against one region of that country code, and first against
  that region's general description (its possible lengths and pattern): a number that matches no general
  description of the regions sharing the code is valid in none of them.
- The national prefix steps only shorten a number, or lengthen it by the literal digits of a transform rule
  (``_grows``), so a candidate with fewer digits than ``_Plan.shortest`` is ruled out before any of that is run.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import phonenumbers
from phonenumbers import phonenumberutil

_strip = phonenumberutil._maybe_strip_national_prefix_carrier_code
"""(number, metadata) -> (carrier code, national number, stripped?): ``parse``'s own national-prefix step."""

_SEPARATORS = str.maketrans("", "", " -.()/")
_ALLOWED = frozenset("0123456789 -.()/")


def digits(candidate: str) -> str | None:
    """The digits ``parse`` reads from ``candidate`` when it holds only ASCII digits and `` -.()/`` (and a digit),
    else None (then nothing here applies: parse it)."""
    if not _ALLOWED.issuperset(candidate):
        return None
    found = candidate.translate(_SEPARATORS)
    return found or None


Desc = tuple[frozenset[int] | None, re.Pattern[str]]
"""A general description: its possible lengths (None: any) and its national number pattern."""


class _Plan:
    """What ``may_be_valid`` reads of one region's metadata, gathered once."""

    __slots__ = ("cc", "descs", "idd", "main", "metadata", "shortest")

    def __init__(self, region: str) -> None:
        metadata: Any = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
        if metadata is None:
            raise ValueError(f"no numbering plan for region {region!r}")
        self.metadata: Any = metadata
        prefix = metadata.international_prefix
        self.idd: re.Pattern[str] | None = re.compile(prefix) if prefix is not None else None  # ("": every number)
        self.cc = str(metadata.country_code)
        main = phonenumbers.region_code_for_country_code(metadata.country_code)
        self.main: Any = (
            metadata
            if main == region
            else phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(metadata.country_code, main)
        )
        descs: list[Desc] = []
        for other in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(metadata.country_code, ()):
            md = phonenumbers.PhoneMetadata.metadata_for_region(other, None)
            desc = md.general_desc if md is not None else None
            if desc is None or not desc.national_number_pattern:
                continue  # (``_match_national_number`` is False for it: no number is valid there)
            lengths = frozenset(desc.possible_length) if desc.possible_length else None
            descs.append((lengths, re.compile(desc.national_number_pattern)))
        self.descs = tuple(descs)
        grown = (_grows(metadata), _grows(self.main))
        self.shortest = (
            0
            if not descs or None in grown or any(lengths is None for lengths, _ in descs)
            else min(min(lengths) for lengths, _ in descs if lengths is not None) - sum(g for g in grown if g)
        )
        """Fewer digits than this: every national number ``parse`` may make of them (``nationals``, which the national
        prefix steps only shorten, or lengthen by what ``_grows`` says, once with each metadata) is shorter than every
        possible length of the regions sharing the code."""


def _grows(metadata: Any) -> int | None:
    """How many digits the national prefix step can add to a number (its transform rule's literal digits: the one
    group it refers to is part of what it replaces), or None for a rule of another form (then no length is ruled
    out)."""
    rule = metadata.national_prefix_transform_rule
    if not rule:
        return 0
    literal = re.sub(r"\\[0-9]", "", rule)
    if len(re.findall(r"\\[0-9]", rule)) > 1 or not (literal.isdigit() or not literal):
        return None
    return len(literal)


@cache  # (one per region tried: bounded)
def _plan(region: str) -> _Plan:
    return _Plan(region)


def may_be_valid(digits: str, region: str) -> bool:
    """False only when ``valid_in(candidate, region)`` is False for every candidate whose ``digits`` these are (the
    module docstring says why); True: parse it to know."""
    plan = _plan(region)
    if plan.idd is not None and plan.idd.match(digits):
        return True  # read as international: not modelled
    if len(digits) < plan.shortest:
        return False
    metadata = plan.metadata
    nationals = [digits, _strip(digits, metadata)[1]]
    if digits.startswith(plan.cc):
        rest = _strip(digits[len(plan.cc) :], metadata)[1]
        nationals += (rest, _strip(rest, plan.main)[1])
    return any(
        (lengths is None or len(national) in lengths) and pattern.fullmatch(national) is not None
        for national in nationals
        for lengths, pattern in plan.descs
    )


# --- validity ------------------------------------------------------------------------------------------------------


class _Types:
    """What ``is_valid_number`` reads of one region's metadata: its country code, leading digits, and the general
    description and the type descriptions that make a number of a known type, each as (possible lengths or None,
    pattern)."""

    __slots__ = ("cc", "general", "known", "leading")

    def __init__(self, metadata: Any) -> None:
        self.cc: int = metadata.country_code
        self.leading = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
        self.general = _desc(metadata.general_desc)
        kinds = [metadata.fixed_line]  # (the types most numbers are first: the order does not change the answer)
        if not metadata.same_mobile_and_fixed_line_pattern:
            kinds.append(metadata.mobile)
        kinds += (
            metadata.premium_rate,
            metadata.toll_free,
            metadata.shared_cost,
            metadata.voip,
            metadata.personal_number,
            metadata.pager,
            metadata.uan,
            metadata.voicemail,
        )
        self.known = tuple(d for d in map(_desc, kinds) if d is not None)

    def valid(self, nsn: str) -> bool:
        """``_number_type_helper(nsn, metadata) != UNKNOWN``: the general description and one of the types match
        (which one, that function's order decides; whether one does, it does not)."""
        general, n = self.general, len(nsn)
        if general is None or (general[0] is not None and n not in general[0]) or general[1].fullmatch(nsn) is None:
            return False
        for lengths, pattern in self.known:
            if (lengths is None or n in lengths) and pattern.fullmatch(nsn) is not None:
                return True
        return False


def _desc(desc: Any) -> Desc | None:
    """``desc`` as ``_is_number_matching_desc`` reads it, or None where it matches nothing (no description, or no
    pattern: ``_match_national_number`` is False for it)."""
    if desc is None or not desc.national_number_pattern:
        return None
    return (frozenset(desc.possible_length) if desc.possible_length else None, re.compile(desc.national_number_pattern))


@cache  # (one per region a number was validated in: bounded by the metadata)
def _types(region: str) -> _Types | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
    return None if metadata is None else _Types(metadata)


def is_valid_number(number: phonenumbers.PhoneNumber) -> bool:
    """``phonenumbers.is_valid_number(number)``: ``valid`` of its country code and national significant number."""
    cc = number.country_code
    return cc is not None and valid(cc, phonenumbers.national_significant_number(number))


def valid(cc: int, nsn: str) -> bool:
    """``is_valid_number`` of the number with country code ``cc`` and national significant number ``nsn``: the
    region of the number (``region_code_for_number``: the only one of its country code, else the first whose leading
    digits start it or that it is valid in), then the number valid in that region's plan; without testing the type
    descriptions twice, nor all of them in order."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if not regions:
        return False
    if len(regions) == 1:
        region = regions[0]
        if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
            types = _non_geo(cc)
            return types is not None and types.valid(nsn)
    else:
        for region in regions:
            types = _types(region)
            if types is None:
                continue
            if types.leading is not None:
                if types.leading.match(nsn):
                    break
            elif types.valid(nsn):
                return types.cc == cc  # (``is_valid_number_for_region`` on the same metadata)
        else:
            return False
    types = _types(region)
    return types is not None and types.cc == cc and types.valid(nsn)


@cache  # (one per non-geographic code a number was validated under: bounded by the metadata)
def _non_geo(cc: int) -> _Types | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_nongeo_region(cc, None)
    return None if metadata is None else _Types(metadata)


# --- parsing -------------------------------------------------------------------------------------------------------

_extract_country_code = phonenumberutil._extract_country_code
_test_number_length = phonenumberutil._test_number_length
_match_national_number = phonenumberutil._match_national_number
_NOT_STRIPPED = frozenset(
    {
        phonenumberutil.ValidationResult.TOO_SHORT,
        phonenumberutil.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
        phonenumberutil.ValidationResult.INVALID_LENGTH,
    }
)
_TOO_LONG = phonenumberutil.ValidationResult.TOO_LONG
_PUNCTUATION = " -.()/"


def viable(national: str, digits: str) -> bool:
    """``_is_viable_phone_number(national)`` for a string of ASCII digits and `` -.()/`` after at most a leading ``+``
    (``digits``: its digits). Its pattern, matched whole, is two digits, or plus signs and then three digits or more
    each after any punctuation, then any punctuation, letters and digits: on such a string, two digits alone or three
    digits or more. A regex match less per validation."""
    return len(digits) >= 3 or (len(digits) == 2 and national == digits)


def valid_in(number: str, region: str | None) -> bool | None:
    """``is_valid_number(parse(number, region))`` (False where ``parse`` raises) for the numbers ``pii_numbers``
    validates: ``+`` and then ASCII digits and `` -.()/`` with no region, or ASCII digits and `` -.()/`` in a region
    (None for anything else, and for a national number that starts with the region's international prefix: call
    ``phonenumbers``).

    ``parse``'s steps on such a string, in its order, with its own helpers where a step depends on the metadata, and
    without what cannot apply to it: no RFC 3966 parts, no extension (each form needs a letter, ``#``, ``~``, ``,`` or
    ``;``), no letters to convert, and digits that normalise to themselves; then ``valid`` on the country code and
    the national number (``national_significant_number`` gives back the digits ``parse`` kept, leading zeros
    included). ``tests/unit/test_pii_plans.py`` compares it with ``phonenumbers`` on generated and random numbers."""
    if region is None:
        if number[:1] != "+" or not _ALLOWED.issuperset(number[1:]):
            return None
    elif region not in phonenumbers.SUPPORTED_REGIONS or not _ALLOWED.issuperset(number):
        return None
    end = len(number.rstrip(_PUNCTUATION))  # ``_extract_possible_number``: from the first ``+`` or digit to the
    national = number[: end if end > 1 else 0] if region is None else number[:end].lstrip(_PUNCTUATION)  # last digit
    digits = national.translate(_SEPARATORS).lstrip("+")  # ``_normalize``
    if not viable(national, digits):
        return False
    if region is None:  # ``_maybe_extract_country_code`` after a plus
        if len(digits) <= 2:
            return False
        cc, national = _extract_country_code(digits)
        if cc == 0:
            return False
        metadata: Any = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            cc, phonenumbers.region_code_for_country_code(cc)
        )
    else:
        plan = _plan(region)
        if plan.idd is not None and plan.idd.match(digits):
            return None  # (an international prefix: not modelled)
        metadata = plan.metadata
        cc, national = metadata.country_code, digits
        if digits.startswith(plan.cc):  # the region's own country code written without a plus
            rest = _strip(digits[len(plan.cc) :], metadata)[1]
            general = metadata.general_desc
            if (
                not _match_national_number(digits, general, False) and _match_national_number(rest, general, False)
            ) or _test_number_length(digits, metadata) == _TOO_LONG:
                national = rest
                if phonenumbers.region_code_for_country_code(cc) != region:
                    metadata = plan.main
    if len(national) < 2:
        return False
    stripped = _strip(national, metadata)[1]
    if _test_number_length(stripped, metadata) not in _NOT_STRIPPED:
        national = stripped
    return 2 <= len(national) <= 17 and valid(cc, national)
