"""Which numbering plans cannot accept a national-format number, decided without parsing it.

A national number next to a phone cue counts as a phone when one of the plans ``pii_numbers`` tries accepts it:
``any(valid_in(candidate, r) for r in regions)``, a ``phonenumbers.parse`` and ``is_valid_number`` per region (~25 us
each, 34 regions for a number none accepts: ~0.85 ms for one such candidate). This module owns the shortcut that
skips a region whose plan cannot accept the number, so that ``pii_numbers`` parses only where one may: ``may_be_valid``
is False only where ``valid_in`` is False, which is what keeps the ``any`` the same boolean.

Why it holds, for a candidate of ASCII digits and `` -.()/`` only (``digits``; anything else is parsed as before),
following ``phonenumbers.parse`` and ``is_valid_number`` (pinned in pyproject; the private functions used here are
that version's, and ``tests/unit/test_pii_plans.py`` compares the shortcut with the plain loop on generated numbers
and on every candidate the stress texts produce):

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

    __slots__ = ("cc", "descs", "idd", "main", "metadata")

    def __init__(self, region: str) -> None:
        metadata: Any = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
        if metadata is None:
            raise ValueError(f"no numbering plan for region {region!r}")
        self.metadata: Any = metadata
        prefix = metadata.international_prefix
        self.idd: re.Pattern[str] | None = re.compile(prefix) if prefix else None
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


@cache  # (one per region tried: bounded)
def _plan(region: str) -> _Plan:
    return _Plan(region)


def may_be_valid(digits: str, region: str) -> bool:
    """False only when ``valid_in(candidate, region)`` is False for every candidate whose ``digits`` these are (the
    module docstring says why); True: parse it to know."""
    plan = _plan(region)
    if plan.idd is not None and plan.idd.match(digits):
        return True  # read as international: not modelled
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
