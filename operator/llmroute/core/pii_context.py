"""Context for the PII detector: the words around a candidate that say what a number is.

A ten-digit string is a phone number after "call me at" and an order number after "Order #"; the same holds for
card-shaped and SSN-shaped digits. This module owns those cue words (English plus the languages prompts commonly
arrive in) and the two places a cue can be: on the candidate's line just before it (the nearest cue wins, so "order
number" is an order and "phone number" a phone) or, in a delimited table, in the header of the candidate's column.
Pure string work; it never returns or records the text it looks at.
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

WINDOW = 40
"""How far before a candidate (same line) a cue word may stand."""

AFTER = 16
"""How far after a candidate a positive cue may stand ("+44 20 7946 0958 (mobile)")."""


_compiled_words: Callable[[tuple[tuple[tuple[str, int], ...], ...], object], object] | None
try:
    from llmroute.core._pii_clusters import words as _compiled_words
except ImportError:  # not built: every lookup runs in Python
    _compiled_words = None


class Cue(Enum):
    """What the context says about a candidate."""

    NONE = 0
    POSITIVE = 1
    NEGATIVE = 2


_LETTER_RANGES = (("A", "Z"), ("a", "z"), ("\u00c0", "\u024f"), ("\u0400", "\u04ff"))
_LETTERS = "".join(f"{low}-{high}" for low, high in _LETTER_RANGES)
"""Latin and Cyrillic letters: what a cue word must not be glued to (CJK text has no spaces, so it may be)."""


def _cues(words: str, cjk: str = "") -> str:
    """Alternation of ``words`` (matched on word boundaries) and ``cjk`` (matched anywhere: no spaces in CJK)."""
    latin = rf"(?<![{_LETTERS}])(?:{_by_first_letter(words)})(?![{_LETTERS}])"
    return f"{latin}|{_by_first_letter(cjk)}" if cjk else latin


def _by_first_letter(words: str) -> str:
    """``words`` (an alternation of plain words) regrouped by first character, order kept within each group.

    The same language: at any position only the words starting with that character can match (no two first
    characters are case variants of each other), and they are tried in their original order. But the engine tests
    a few dozen first characters instead of every word (~150, case-insensitively), which made cue lookups the
    largest cost on number-dense text."""
    return "|".join(f"{first}(?:{'|'.join(rests)})" for first, rests in _first_letter_groups(words).items())


def _first_letter_groups(words: str) -> dict[str, list[str]]:
    """``words`` by first character (first seen first), each group the rests of its words in their order: the order
    in which ``_by_first_letter``'s pattern tries them."""
    groups: dict[str, list[str]] = {}
    for word in words.split("|"):
        if _SPECIAL.intersection(word):
            raise ValueError(f"cue word {word!r} holds a character patterns read specially")
        groups.setdefault(word[0], []).append(word[1:])
    return groups


_SPECIAL = frozenset("\\.^$*+?{}[]()|")
"""What a cue word must not hold: the words go into patterns unescaped, and ``_script`` reads them as literals."""


_NEGATIVE_COMMON = (
    r"order|orders|ord|invoice|inv|ref|reference|tracking|track|ticket|case|sku|part|po|acct|account|"
    r"transaction|txn|confirmation|booking|isbn|imei|serial|id|ids|lot|batch|build|version|ver|routing|aba|patent|"
    r"ean|upc|gtin|waybill|awb|parcel|shipment|ts|timestamp|pid|bytes|amount|total|sum|bestellung|"
    r"bestellnummer|rechnung|sendungsnummer|sendung|commande|facture|pedido|factura|ordine|encomenda|заказ|счёт|"
    r"count|size|offset|epoch|seed|port|code|kundennummer|nº|n°|zip|postal|postcode|plz|fedex|ups|usps|dhl|waybill"
)
_NEGATIVE_CJK = r"订单|单号|注文|发票|運送|快递|版本"


_AFTER_SKIP = " \t([:-"
"""What may stand between a candidate and a cue word right after it ("+44 20 7946 0958 (mobile)", "… bytes")."""
_UNIT_WORDS = (
    "bytes", "b", "kb", "mb", "gb", "kib", "mib", "ms", "s", "units", "items", "points", "pts", "rows", "records",
    "times", "tokens", "km", "kg", "usd", "eur", "req",
)
_UNITS = re.compile(rf"(?:{'|'.join(_UNIT_WORDS)})(?![{_LETTERS}])|%", re.IGNORECASE)
"""A unit right after a number makes it a quantity ("648155623 bytes")."""
_UNITS_ASCII = re.compile(_UNITS.pattern.replace(f"[{_LETTERS}]", "[a-z]"))
"""``_UNITS`` for lowercased ASCII text (the same matches, without case folding)."""


Matcher = int | tuple[int, ...]
"""One character of a cue word as an IGNORECASE pattern tests it: an uncased character itself, or a cased one's
lowercase and the characters ``re._casefix`` lists for it (a text character matches when its lowercase is one)."""
Alternative = tuple[int, bool, bool, tuple[Matcher, ...]]
"""(1 positive, 2 negative or 3 a unit; no letter before it; no letter after it; its characters)."""


@dataclass(frozen=True, slots=True)
class Cues:
    """Positive and negative cue words: ``pattern`` (``lastgroup`` says which kind matched), and ``ascii``, the same
    search for ASCII text that has been lowercased (``lastgroup`` starts with ``p`` or ``n``).

    ``pattern`` matches case-insensitively, and Python's engine then compares each character through case folding
    and tries every word's first letter at every position: a 40-character window took 5-10 us, the largest cost of a
    lookup on number-dense text. ``ascii`` holds the Latin words that are ASCII, lowercased, each group of words led
    by its first letter (so the engine skips to positions holding one, and tests plain characters), with the positive
    words before the negative ones of the same letter as ``pattern`` tries them. On lowercased ASCII text it finds the
    same cues as ``pattern`` on the original (a word with another character matches no ASCII text: checked by a
    test), in a few microseconds. ``positive``: ``ascii``'s positive words without "no letter after", so that where
    it finds nothing in a lowercased ASCII text, no window, cell or cut of that text holds a positive cue."""

    pattern: re.Pattern[str]
    ascii: re.Pattern[str]
    positive: re.Pattern[str]
    after: re.Pattern[str]
    """What may follow a candidate in lowercased ASCII text, in one match: the characters ``_AFTER_SKIP`` (up to three,
    all of them, as ``cue`` skips them), then a positive word (``lastgroup`` ``pos``: where ``ascii`` matches a word
    and it is positive, since it tries a letter's positive words first) or else a unit (``unit``)."""
    table: tuple[tuple[tuple[str, int], ...], ...]
    """``ascii``'s words for the compiled lookups: for each letter a-z, the words starting with it as (rest of the
    word, 1 positive or 2 negative), in the order ``ascii`` tries them (compiled into ``words``)."""
    script: tuple[tuple[Alternative, ...], bytes] | None
    """``pattern`` and ``_UNITS`` described for the compiled search in windows that are not ASCII (``_script``)."""
    words: object
    """``table`` and ``script`` compiled once for the compiled part (``_pii_clusters.words``), which reads only that;
    None where it is not built."""


def _either(positive: tuple[str, str], negative: tuple[str, str]) -> Cues:
    """Cues from (Latin words, CJK words) on each side."""
    pattern = re.compile(f"(?P<pos>{_cues(*positive)})|(?P<neg>{_cues(*negative)})", re.IGNORECASE)
    skip = f"[{re.escape(_AFTER_SKIP)}]{{0,3}}+"  # possessive: all of them, as ``cue`` skips them
    after = re.compile(f"{skip}(?:(?P<pos>{_ascii_cues(positive[0], '').pattern})|(?P<unit>{_UNITS_ASCII.pattern}))")
    ascii_words = _ascii_groups(positive[0], negative[0])
    table = tuple(
        tuple((rest, side + 1) for side, rests in enumerate(ascii_words.get(letter, ((), ()))) for rest in rests)
        for letter in string.ascii_lowercase
    )
    script = _script(positive, negative)
    words = _compiled_words(table, script) if _compiled_words is not None else None
    return Cues(
        pattern,
        _ascii_cues(positive[0], negative[0]),
        _ascii_cues(positive[0], "", loose=True),
        after,
        table,
        script,
        words,
    )


def _ascii_groups(positive: str, negative: str) -> dict[str, tuple[list[str], list[str]]]:
    """``positive`` and ``negative`` words (Latin, lower case) that are ASCII, by first letter: (positive rests,
    negative rests), each in their order."""
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for side, words in enumerate((positive, negative)):
        for word in words.split("|") if words else ():
            if word.isascii():
                if not "a" <= word[0] <= "z":
                    raise ValueError(f"cue word {word!r} does not start with a lowercase letter")
                groups.setdefault(word[0], ([], []))[side].append(word[1:])
    return groups


def _ascii_cues(positive: str, negative: str, loose: bool = False) -> re.Pattern[str]:
    """``positive`` and ``negative`` words (Latin, lower case) that are ASCII, for lowercased ASCII text: led by their
    first letter, then "no letter before that letter", then the rests (positive first), then "no letter after"
    (unless ``loose``)."""
    branches = []
    for first, (pos, neg) in _ascii_groups(positive, negative).items():
        kinds = [
            f"(?P<{kind}_{first}>{'|'.join(map(re.escape, rests))})"
            for kind, rests in (("p", pos), ("n", neg))
            if rests
        ]
        branches.append(f"{first}(?<![a-z].)(?:{'|'.join(kinds)})")
    return re.compile(f"(?:{'|'.join(branches)})" + ("" if loose else "(?![a-z])"))


_LETTER = re.compile(f"[{_LETTERS}]", re.IGNORECASE)
"""A character the Latin cues must not follow, as ``pattern``'s look-behind sees it."""


def _re_case_rules() -> tuple[Callable[[int], bool], Callable[[int], int], dict[int, tuple[int, ...]]] | None:
    """How CPython's ``re`` compares characters under IGNORECASE: ``_sre``'s ``unicode_iscased`` and
    ``unicode_tolower`` and ``re._casefix``'s extra cases (private modules, imported by name: they have no stubs);
    None on a Python without them."""
    try:
        sre, casefix = importlib.import_module("_sre"), importlib.import_module("re._casefix")
        return sre.unicode_iscased, sre.unicode_tolower, casefix._EXTRA_CASES
    except (ImportError, AttributeError):  # pragma: no cover - another implementation or version of ``re``
        return None


_CASE_RULES = _re_case_rules() if _compiled_words is not None else None
"""Read once, where the compiled part that needs them (``_script``) is built."""


def _letter_bits(rules: tuple[Callable[[int], bool], Callable[[int], int], dict[int, tuple[int, ...]]]) -> bytes:
    """The look-arounds' letter class (``_LETTER_RANGES``) as ``re`` compiles it under IGNORECASE - each character
    lowered, with its extra cases - as a bitmap of lowercases (all of them below U+10000: an IndexError would say
    otherwise)."""
    _, tolower, cases = rules
    bits = bytearray(0x10000 // 8)
    for low, high in _LETTER_RANGES:
        for cp in range(ord(low), ord(high) + 1):
            lo = tolower(cp)
            for c in (lo, *cases.get(lo, ())):
                bits[c >> 3] |= 1 << (c & 7)
    return bytes(bits)


_LETTER_BITS = _letter_bits(_CASE_RULES) if _CASE_RULES is not None else b""


def _script(positive: tuple[str, str], negative: tuple[str, str]) -> tuple[tuple[Alternative, ...], bytes] | None:
    """``Cues.pattern`` and ``_UNITS`` as the compiled window search reads them (``_pii_script.c``), for windows
    that are not ASCII: the alternatives in the order the pattern tries them (each side's Latin words with their
    look-arounds, grouped as ``_by_first_letter`` groups them, then its CJK words; then the units), and the letter
    class of the look-arounds (``_LETTER_BITS``).

    Characters are read as CPython's ``re`` compiles them (``_CASE_RULES``); where this Python lacks those, or the
    compiled part is not built, None (a compiled lookup then leaves such windows to ``Context._window``). A test
    compares every character and the letter class with ``re`` over every code point."""
    if _CASE_RULES is None:
        return None
    iscased, tolower, cases = _CASE_RULES

    def matcher(ch: str) -> Matcher:
        lo = tolower(ord(ch))
        return (lo, *cases.get(lo, ())) if iscased(ord(ch)) else ord(ch)

    alternatives: list[Alternative] = []
    for kind, (latin, cjk) in ((1, positive), (2, negative)):
        for words, bounded in ((latin, True), (cjk, False)):
            for first, rests in _first_letter_groups(words).items() if words else ():
                alternatives.extend((kind, bounded, bounded, tuple(map(matcher, first + rest))) for rest in rests)
    alternatives.extend((3, False, True, tuple(map(matcher, unit))) for unit in _UNIT_WORDS)
    alternatives.append((3, False, False, (matcher("%"),)))
    return tuple(alternatives), _LETTER_BITS


PHONE = _either(
    (
        r"phone|phones|telephone|tel|tél|mobile|mob|cell|cellphone|call|calls|called|fax|whatsapp|text me|sms|"
        r"contact|contacto|kontakt|contatto|my number|my no|best number|phone number|mobile number|cell number|"
        r"t:|m:|p:|rückruf|mi número|mi numero|mon numéro|meine nummer|meu número|"
        r"mio numero|reach me|reach|dial|ph|hotline|helpline|callback|telefon|telefonnummer|"
        r"handy|mobil|"
        r"rufnummer|erreichbar|téléphone|telephone|portable|appelez|appeler|joindre|teléfono|telefono|móvil|movil|"
        r"celular|llámame|llamar|cellulare|telefone|contato|telefoonnummer|bel|gsm|телефон|тел|мобильный|"
        r"फ़ोन|फोन|मोबाइल",
        r"电话|電話|手机|携帯|联系方式|連絡先|연락처|전화|휴대폰",
    ),
    (_NEGATIVE_COMMON, _NEGATIVE_CJK),
)
"""Phone cues against order-number cues: which of the two is nearest decides."""

CARD = _either(
    (
        r"card|cards|visa|mastercard|master card|amex|american express|discover|diners|jcb|unionpay|credit|debit|"
        r"cc|ccn|pan|karte|kartennummer|kreditkarte|carte|tarjeta|cartão|cartao|carta|payment|pay|paid|charged|"
        r"charge|billing|кредитная|карта",
        r"卡号|信用卡|カード",
    ),
    (_NEGATIVE_COMMON, _NEGATIVE_CJK),
)

SSN = _either(
    (r"ssn|ssns|social security|social|ss#|ss|tin|taxpayer|itin|tax_id|tax id", ""),
    (_NEGATIVE_COMMON + r"|model|zip|phone|tel|fax", _NEGATIVE_CJK),
)

IP = _either(
    (
        r"ip|ips|ipv4|ipv6|addr|address|remote_addr|remote|client|client_ip|host|src|dst|peer|"
        r"forwarded|x-forwarded-for|login|logged|connect|connected|connection|server|origin|visitor|user_ip|"
        r"last_seen_from|ip_address|adresse|dirección|endereço|indirizzo",
        r"地址",
    ),
    (
        r"version|ver|v|release|build|firmware|fw|oid|sdk|chrome|firefox|safari|patch|update|upgrade|mask|"
        r"netmask|subnet|wildcard|gateway|dns|resolver|attribute|arc|versión|versão|versione",
        r"版本|バージョン",
    ),
)


_IMMEDIATE_NEGATIVE = re.compile(r"[#№][ \t]?$")
"""A number right after ``#`` is a reference ("Order #4155550134", "#112-...")."""
_LINE_LOOKBACK = 4096
"""A line longer than this before the candidate is prose, not a table row: its start is not looked for further."""
_PHONE_SCAN_MAX = 4096
_DELIMITERS = ",;\t|"
_HEADER_CELL_MAX = 32


def _table(mapping: dict[str, str], default: str) -> bytes:
    table = bytearray(default.encode() * 256)
    for chars, to in mapping.items():
        for ch in chars:
            table[ord(ch)] = ord(to)
    return bytes(table)


_CLASS_TABLE = _table(
    {
        string.digits: "0",
        string.ascii_letters: "a",
        " ": " ",
        "(": "(",
        ")": ")",
        ".": ".",
        "/": "/",
        "-": "-",
        ":": ":",
    },
    "x",
)
_TOKEN_TABLE = _table({string.digits + string.ascii_letters + "_-.+/!#$%^&*~": "t"}, " ")


_compiled_cue: Callable[[str, bytes, int, int, int, int, object, tuple[str, ...]], int] | None
try:
    from llmroute.core._pii_clusters import cue as _compiled_cue
except ImportError:  # not built: ``Context._window`` does the same in Python
    _compiled_cue = None

def positive_word_py(lower: str) -> bool:
    """A positive phone word starts in ``lower`` (an ASCII text lowercased): ``PHONE.positive`` finds one.
    ``_pii_clusters.any_word`` answers the same from ``PHONE.words`` (a test compares the two)."""
    return PHONE.positive.search(lower) is not None


try:
    from llmroute.core._pii_clusters import any_word as _any_word

    def _positive_word(lower: str) -> bool:
        return _any_word(lower, PHONE.words)
except ImportError:  # not built
    _positive_word = positive_word_py

_UNSEEN = ("", "")
"""What ``Context.headers`` answers for a row not looked at yet (by identity)."""


class Context:
    """The cues around candidates in one text; remembers table headers so a big CSV is walked once.

    ``key``: the name the whole text is the value of (a JSON key in tool-call arguments), read like a column header.
    """

    def __init__(self, text: str, key: str = "") -> None:
        self.text = text
        self.key = key
        self.headers: dict[int, tuple[str, str] | None] = {}
        """Row start -> (header row, delimiter) of the table it belongs to, or None (filled by ``_table``; the
        compiled lookup, ``_pii_clusters.lookup``, reads and fills the same)."""
        self._phone_positive: bool | None = None
        ascii_text = text.encode("ascii", "replace")  # one byte per character; both views are always used
        self.classes: bytes = ascii_text.translate(_CLASS_TABLE)
        """One byte per character: ``0`` a digit, ``a`` an ASCII letter, `` ().-/:`` themselves, ``x`` the rest.

        Scanning these with patterns that start with a literal is several times faster than character classes
        over the text, and offsets are the same (non-ASCII characters each become one byte). Computed here rather
        than on first use: every detection reads it, and a ``cached_property`` costs more than the translation on
        the short texts a request is mostly made of."""
        self.tokens: bytes = ascii_text.translate(_TOKEN_TABLE)
        """One byte per character: ``t`` for what keys and passwords are made of (letters, digits, ``_-.+/``,
        ``!#$%^&*~``), a space otherwise (``=`` too: it ends a name and starts its value)."""
        self._lower: str | None = None

    def lower(self) -> str:
        """The text lowercased when it is ASCII (same length, so the same offsets), else ``""``; made on first use.

        Lookups search it between offsets (``pattern.search(lower, lo, hi)``) instead of lowercasing a slice each:
        a pattern's look-behind then sees the real character before ``lo`` (lowercased), which is what the stand-in
        that a slice needs says of it, and ``hi`` ends the string for a look-ahead as the slice's end did."""
        lower = self._lower
        if lower is None:
            lower = self._lower = self.text.lower() if self.text.isascii() else ""
        return lower

    def phone(self, start: int, end: int) -> Cue:
        return self.cue(start, end, PHONE)

    def phone_may_be_positive(self) -> bool:
        """False when no lookup in this text can find a positive phone cue: the text and its key are ASCII and hold
        none of the words (``Cues.positive``), before or after any candidate, in any header. Looked for once, in a
        text of at most ``_PHONE_SCAN_MAX`` characters (beyond that, True: one lookup costs less than the scan)."""
        if self._phone_positive is None:
            text, key = self.text, self.key  # (the text lowercased whole: ``lower``, as the lookups read it)
            self._phone_positive = not (
                text.isascii()
                and len(text) <= _PHONE_SCAN_MAX
                and not _positive_word(self._lower if self._lower is not None else self.lower())
                and (not key or (key.isascii() and len(key) <= _PHONE_SCAN_MAX and not _positive_word(key.lower())))
            )
        return self._phone_positive

    def card(self, start: int, end: int) -> Cue:
        return self.cue(start, end, CARD)

    def ssn(self, start: int, end: int) -> Cue:
        return self.cue(start, end, SSN)

    def ip(self, start: int, end: int) -> Cue:
        return self.cue(start, end, IP)

    def cue(self, start: int, end: int, cues: Cues) -> Cue:
        """The nearest cue before the candidate, else a positive cue or a unit right after it, else its column header
        or key.

        Before the candidate, the window stays on its line, in its cell when the line is a table row, and after the
        last digit (a cue before another number belongs to that number: "SKU 656-65-8749 and 5378…")."""
        text, classes = self.text, self.classes  # (conditional expressions below: cheaper than ``max``/``min``)
        line_start = text.rfind("\n", start - _LINE_LOOKBACK if start > _LINE_LOOKBACK else 0, start) + 1
        table: tuple[str, str] | None = None
        if line_start:  # (a row at the text's start has no row above it to be its header: ``_table``)
            table = self.headers.get(line_start, _UNSEEN)
            if table is _UNSEEN:
                table = self._table(line_start)
        lo = start - WINDOW if start - WINDOW > line_start else line_start
        hi = end + AFTER if end + AFTER < len(text) else len(text)
        if table is not None:  # the window stays in the candidate's cell (delimiters are single characters)
            delimiter = table[1]
            lo = max(lo, text.rfind(delimiter, lo, start) + 1)
            cell_end = text.find(delimiter, end, hi)
            hi = hi if cell_end < 0 else cell_end
        # the window and what follows it: compiled (3: no extension, or no ``_script`` here), else ``_window``
        kind = _compiled_cue(text, classes, start, end, lo, hi, cues.words, _UNIT_WORDS) if _compiled_cue else 3
        if kind == 3:
            found_cue = self._window(start, end, lo, hi, cues)
            if found_cue is not None:
                return found_cue
        elif kind:
            return Cue.POSITIVE if kind == 1 else Cue.NEGATIVE
        label = self.key if table is None else _cell(table, text.count(table[1], line_start, start))
        return Cue(label_cue(label, cues)) if label else Cue.NONE

    def _window(self, start: int, end: int, lo: int, hi: int, cues: Cues) -> Cue | None:
        """``cue`` in the window ``lo:start`` and what follows the candidate up to ``hi``; None: nothing there (the
        header or key decides). ``_pii_clusters.cue`` answers the same where these are ASCII (its tests compare the
        two), and this runs where they are not (or without the extension)."""
        text, classes, pattern, lower = self.text, self.classes, cues.pattern, self.lower()
        digit = classes.rfind(b"0", lo, start)
        if digit >= lo:
            lo = digit + 1
        if classes.find(b"a", lo, start) >= 0 or classes.find(b"x", lo, start) >= 0:
            # Every cue word and ``#``/``№`` holds a letter or a symbol (class ``a`` or ``x``): a window of digits,
            # spaces and ``().-/:`` alone (40% of them in number-dense text) cannot hold one, so skip the scan.
            last = None
            if lower:  # an ASCII text: searched lowercased (``Context.lower``)
                for last in cues.ascii.finditer(lower, lo, start):  # noqa: B007 - the nearest cue counts
                    pass
                if last is not None:
                    return Cue.POSITIVE if last.lastgroup[0] == "p" else Cue.NEGATIVE  # type: ignore[index]
            elif (window := text[lo:start]).isascii():  # lowercased, after a stand-in for the character before it
                before = "a" if lo and _LETTER.match(text, lo - 1) else " "  # (``pattern`` sees it)
                for last in cues.ascii.finditer(before + window.lower(), 1):  # noqa: B007
                    pass
                if last is not None:
                    return Cue.POSITIVE if last.lastgroup[0] == "p" else Cue.NEGATIVE  # type: ignore[index]
            else:
                for last in pattern.finditer(text, lo, start):  # noqa: B007
                    pass
                if last is not None:
                    return _kind(last)
            if _IMMEDIATE_NEGATIVE.search(text, max(lo, start - 2), start):
                return Cue.NEGATIVE
        if lower:  # the skip, a positive cue and a unit in one match (``Cues.after``)
            following = cues.after.match(lower, end, hi)
            if following is not None:
                return Cue.POSITIVE if following.lastgroup == "pos" else Cue.NEGATIVE
        else:
            j, skip_to = end, min(hi, end + 3)
            while j < skip_to and text[j] in _AFTER_SKIP:
                j += 1
            if (after := text[j:hi]).isascii():  # as before the candidate: after a stand-in for the character before
                after = after.lower()
                following = cues.ascii.match(("a" if _LETTER.match(text, j - 1) else " ") + after, 1)
                if following is not None and following.lastgroup[0] == "p":  # type: ignore[index]
                    return Cue.POSITIVE
                if _UNITS_ASCII.match(after):
                    return Cue.NEGATIVE
            else:
                following = pattern.match(text, j, hi)
                if following is not None and following.lastgroup == "pos":
                    return Cue.POSITIVE
                if _UNITS.match(text, j, hi):
                    return Cue.NEGATIVE
        return None

    def _table(self, row_start: int) -> tuple[str, str] | None:
        """The header row and delimiter of the delimited table whose row starts at ``row_start``, if it is one (not
        looked up yet: ``cue`` looks in ``headers`` first)."""
        text, headers = self.text, self.headers
        row_end = text.find("\n", row_start)
        row_end = row_end if row_end >= 0 else len(text)
        count = text.count
        counts = (
            count(",", row_start, row_end),
            count(";", row_start, row_end),
            count("\t", row_start, row_end),
            count("|", row_start, row_end),
        )  # as ``_DELIMITERS``
        cells = max(counts)
        if not cells or not row_start:  # no delimiter: not a table row; or no row above to be its header
            headers[row_start] = None
            return None
        delimiter = _DELIMITERS[counts.index(cells)]  # the most frequent, the first of ``_DELIMITERS`` on a tie
        visited = [row_start]
        found: tuple[str, str] | None = None
        pos = row_start
        while pos > 0:
            prev_start = text.rfind("\n", 0, pos - 1) + 1
            cached = headers.get(prev_start, _UNSEEN)
            if cached is not _UNSEEN:
                found = cached if cached is not None and cached[1] == delimiter else None
                break
            if text.count(delimiter, prev_start, pos - 1) != cells:
                break
            if self.classes.find(b"0", prev_start, pos - 1) < 0:  # the bytes first: one C call
                prev = text[prev_start : pos - 1]
                if prev.isascii() or not any(ch.isdigit() for ch in prev):  # no digit: the header (if cells fit)
                    if all(len(c) <= _HEADER_CELL_MAX for c in prev.split(delimiter)):
                        found = (prev, delimiter)
                    break
            visited.append(prev_start)
            pos = prev_start
        for v in visited:
            self.headers[v] = found
        return found


def label_cue(label: str, cues: Cues) -> int:
    """The first cue word in a column header's cell or a key (``Cue`` values: 0 none, 1 positive, 2 negative). The
    compiled lookup searches an ASCII label itself (``Cues.table``, the same words) and calls this for any other."""
    found = cues.pattern.search(label)
    return 0 if found is None else 1 if found.lastgroup == "pos" else 2


def _cell(table: tuple[str, str], column: int) -> str:
    cells = table[0].split(table[1])
    return cells[column] if column < len(cells) else ""


def _kind(m: re.Match[str]) -> Cue:
    return Cue.POSITIVE if m.lastgroup == "pos" else Cue.NEGATIVE
