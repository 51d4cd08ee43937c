"""PII detection: what kinds of personal data a text appears to contain, without ever repeating the data.

Used by ``llmroute explain --text`` to warn when a sample request looks like personal data but is sent under a class
that allows providers personal data must not reach. Detection is deliberately conservative and explainable: each
kind is a pattern plus, where one exists, a checksum (Luhn for card numbers, ISO 7064 mod 97 for IBANs), so a random
number is not reported as a card. Findings carry the kind and position only; nothing here returns or logs the
matched text. Pure; the same detector is the base for the route's optional redaction.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One detected item: its kind and where it is (``start``/``end`` offsets into the text)."""

    kind: str
    start: int
    end: int


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: str) -> bool:
    digits = re.sub(r"[ -]", "", match)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _iban(match: str) -> bool:
    s = match.replace(" ", "").upper()
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _ssn(match: str) -> bool:
    area, group, serial = match.split("-")
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _ipv4(match: str) -> bool:
    return all(int(part) <= 255 for part in match.split("."))


_KINDS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), None),
    ("iban", re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), _iban),
    ("credit_card", re.compile(r"\b(?:[0-9][ -]?){12,18}[0-9]\b"), _card),
    ("us_ssn", re.compile(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"), _ssn),
    ("phone", re.compile(r"(?<![\w+(])(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\)|[0-9]{3})[ .-]?[0-9]{3}[ .-][0-9]{4}\b"),
     None),
    ("ipv4", re.compile(r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b"), _ipv4),
)
"""Kinds in priority order: a span claimed by an earlier kind is not reported again by a later one."""


def detect(text: str) -> tuple[Finding, ...]:
    """Every non-overlapping finding in ``text``, in order of position."""
    found: list[Finding] = []
    for kind, pattern, valid in _KINDS:
        for m in pattern.finditer(text):
            if valid is not None and not valid(m.group()):
                continue
            if any(m.start() < f.end and f.start < m.end() for f in found):
                continue
            found.append(Finding(kind, m.start(), m.end()))
    return tuple(sorted(found, key=lambda f: f.start))


def summarise(findings: tuple[Finding, ...]) -> str:
    """``"2 email, 1 us_ssn"``, or ``"none"``; counts and kinds only, never the data."""
    counts = Counter(f.kind for f in findings)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"
