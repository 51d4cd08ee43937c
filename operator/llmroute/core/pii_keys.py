"""The ``api_key`` type: credentials pasted into prompts, by shape or by the name they are assigned to.

Two ways to recognise one. Issued keys have a vendor prefix and a fixed alphabet (OpenAI ``sk-``/``sk-proj-``,
Anthropic ``sk-ant-api03-``, AWS ``AKIA``/``ASIA``, GitHub ``ghp_``/``github_pat_``, Slack ``xoxb-``/``xoxp-``,
Google ``AIza``, Stripe ``sk_live_``/``rk_live_``, Hugging Face ``hf_``, GitLab ``glpat-``, npm ``npm_``, SendGrid
``SG.``, JWTs, PEM private keys). Generic secrets have no shape, so they count only when a key-like name is
assigned them (``api_key = "…"``, ``Authorization: Bearer …``, ``"client_secret": "…"``) and the value looks
random (letters and digits, enough distinct characters and entropy). Either way placeholders are not keys: ``sk-...``,
``YOUR_API_KEY``, ``ghp_XXXX…``, ``${TOKEN}``, ``<token>``, AWS's documented ``AKIAIOSFODNN7EXAMPLE``. Pure; spans only.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

from llmroute.core.pii_context import Context

Hit = tuple[str, int, int, float]

_SHAPED = re.compile(
    r"sk-(?:proj-|ant-(?:api|admin)[0-9]{2}-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"
    r"|(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{36,251}"
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|xox[abposre]-[A-Za-z0-9\-]{10,}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|[sr]k_(?:live|test)_[0-9A-Za-z]{16,}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|glpat-[A-Za-z0-9_\-]{20,}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}"
    r"|-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
)
"""Vendor key shapes; each starts with a literal, so the regex engine skips text that cannot start one."""
_SHAPED_FIRST = "sAgxrhnSe-"
"""The characters ``_SHAPED`` can start with (a test checks): a token starting otherwise is no vendor key."""

_ASSIGNED = re.compile(
    r"(?<![A-Za-z])(?:api[_\-]?key|apikey|secret|token|access[_\-]?key|authorization|bearer|credentials?|"
    r"passw(?:or)?d|private[_\-]?key|session[_\-]?key|auth|account[_\-]?key|sig)"
    r"[A-Za-z0-9_\-]{0,24}[\"']?[ \t]*(?::|=|=>|:=)?[ \t]*[\"']?(?:(?:Bearer|Basic|token)[ \t]+)?\Z",
    re.IGNORECASE,
)
"""A key-like name and an assignment, right before a value: ``api_key = "``, ``Authorization: Bearer ``."""
_ASSIGNED_ASCII = re.compile(_ASSIGNED.pattern.replace("Bearer|Basic", "bearer|basic"))
"""``_ASSIGNED`` for lowercased ASCII text: the same matches without case folding (its letters are lowercase but for
those two words, and its classes hold both cases)."""
_ASSIGNED_REACH = 56
_ASSIGNED_WORDS = re.compile(r"key|secret|token|auth|bearer|credential|passw|sig")
"""What every name ``_ASSIGNED`` accepts holds, lowercased: where an ASCII window holds none of them, ``_ASSIGNED``
cannot match, and this plain search skips ahead to the characters that start one (several times faster)."""
_LONG = b"t" * 16
"""Keys are tokens of 16 or more characters; the bytes search for that many token characters in a row is fast."""
_PRIVATE_KEY = "PRIVATE KEY-----"

_REFERENCE = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*(?:\.[A-Za-z_$][A-Za-z0-9_]*)+")
"""A dotted name (``settings.STRIPE_KEY``, ``os.environ``): a reference to the secret, not the secret."""
_WORD = re.compile(r"[A-Za-z0-9_\-]")
_PLACEHOLDER = re.compile(
    r"xxxx|\.\.\.|example|your|here|placeholder|dummy|fake|redacted|changeme|sample|<|>|\$\{|\{\{|\*\*\*"
)
"""Searched in the lowercased value: keys and the tokens that may be keys are ASCII, where that is the same as a
case-insensitive search (four ``x`` or ``X`` in a row, "Example"), and the engine can skip to the characters that
start a word instead of trying each word case-insensitively at every position."""


def keys(text: str, ctx: Context) -> list[Hit]:
    """Every vendor-shaped key and every random-looking value assigned to a key-like name, plus PEM private keys.

    A list, not a generator: most texts hold no token of 16 characters and no PEM header, and for them this returns
    after two searches without setting up a generator."""
    tokens = ctx.tokens
    pos = tokens.find(_LONG)
    at = text.find(_PRIVATE_KEY)
    if pos == -1 and at == -1:
        return []
    if pos == -1:
        hits: list[Hit] = []
    elif _compiled_key_tokens is not None:
        hits = _compiled_key_tokens(text, tokens, _assigned, _random_looking)
    else:
        hits = key_tokens_py(text, ctx)
    if at != -1:
        hits.extend(pem_keys(text))
    return hits


def pem_keys(text: str) -> list[Hit]:
    """The PEM private keys in ``text`` (their ``-----BEGIN ... PRIVATE KEY-----`` header)."""
    hits: list[Hit] = []
    at = text.find(_PRIVATE_KEY)
    while at != -1:
        m = _SHAPED.match(text, text.rfind("-----BEGIN", max(0, at - 40), at))
        if m is not None and m.end() == at + len(_PRIVATE_KEY):
            hits.append(("api_key", m.start(), m.end(), 0.97))
        at = text.find(_PRIVATE_KEY, at + 1)
    return hits


def key_tokens_py(text: str, ctx: Context) -> list[Hit]:
    """The keys among the text's long tokens: vendor shapes, and random-looking values assigned to a key-like name.
    ``_pii_clusters.key_tokens`` (compiled) finds the same, calling ``_assigned`` and ``_random_looking`` where
    their patterns and float sums decide (a test compares the two)."""
    lower = ctx.lower()
    named = not lower or _ASSIGNED_WORDS.search(lower) is not None  # else no window can hold a key-like name
    hits: list[Hit] = []
    for start, end in long_tokens(text, ctx.tokens, None if named else _SHAPED_FIRST):
        hit = _token(text, start, end, named, lower)
        if hit is not None:
            hits.append(hit)
    return hits


def long_tokens_py(text: str, tokens: bytes, first: str | None) -> list[tuple[int, int]]:
    """The tokens of 16 characters or more (runs of ``t`` in ``Context.tokens``), as (start, end); with ``first``,
    only those starting with one of its characters. A key lies within its token (``_SHAPED``'s alphabets and a
    named value are token characters), so the tokens after a key are the same whatever it is. ``_pii_clusters``'s
    ``long_tokens`` (compiled) returns the same, and is used when it is built (a test compares the two)."""
    spans = []
    pos = tokens.find(_LONG)
    while pos != -1:
        end = tokens.find(b" ", pos)
        end = len(text) if end == -1 else end
        if first is None or text[pos] in first:
            spans.append((pos, end))
        pos = tokens.find(_LONG, end)
    return spans


_compiled_key_tokens: Callable[[str, bytes, Callable[..., bool], Callable[..., bool]], list[Hit]] | None
try:
    from llmroute.core._pii_clusters import key_tokens as _compiled_key_tokens
    from llmroute.core._pii_clusters import long_tokens
except ImportError:  # not built
    long_tokens = long_tokens_py
    _compiled_key_tokens = None


def _token(text: str, start: int, end: int, named: bool = True, lower: str = "") -> Hit | None:
    """The key in the token ``text[start:end]`` (a run of letters, digits, ``_-.+/``), if it is one; ``named``:
    False when the text is ASCII and holds none of ``_ASSIGNED_WORDS`` (then no name is assigned any token);
    ``lower``: as ``_assigned`` takes it."""
    m = _SHAPED.match(text, start)
    if m is not None and not m.group().startswith("-----"):
        value = m.group()
        if _placeholder(value) or not (value.startswith("eyJ") or _random_looking(value, shaped=True)):
            return None
        return ("api_key", start, m.end(), 0.97)
    if not named or not _assigned(text, max(0, start - _ASSIGNED_REACH), start, lower):
        return None  # first: one C-level search rejects most tokens (hex ids, paths, hashes), cheaper than entropy
    value = text[start:end].rstrip(".")
    if not _random_looking(value, shaped=False) or _placeholder(value) or _REFERENCE.fullmatch(value):
        return None
    return ("api_key", start, start + len(value), 0.85)


def _assigned(text: str, lo: int, start: int, lower: str = "") -> bool:
    """A key-like name is assigned the value at ``start`` (``_ASSIGNED`` in ``text[lo:start]``); ``lower``: the text
    lowercased when it is ASCII (``Context.lower``), searched between the same offsets."""
    if lower:
        return _ASSIGNED_WORDS.search(lower, lo, start) is not None and (
            _ASSIGNED_ASCII.search(lower, lo, start) is not None
        )
    window = text[lo:start]
    if window.isascii() and _ASSIGNED_WORDS.search(window.lower()) is None:
        return False  # (non-ASCII text: a long s or a Kelvin sign matches case-insensitively, not lowercased)
    return _ASSIGNED.search(text, lo, start) is not None


_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"[0-9]")
"""A letter, a digit: values are ASCII (token characters, vendor alphabets), where these are ``str.isalpha`` and
``str.isdigit``, found in one regex scan instead of a Python loop over the characters."""


def _placeholder(value: str) -> bool:
    return _PLACEHOLDER.search(value.lower()) is not None


def _random_looking(value: str, shaped: bool) -> bool:
    """Many distinct characters and high entropy, letters mixed with digits (or, for a vendor shape, with both cases):
    not a word, a name, a constant or a number."""
    if len(value) < 16 or _LETTER.search(value) is None:
        return False
    if _DIGIT.search(value) is None and not (
        shaped and (value.startswith(("AKIA", "ASIA")) or not (value.islower() or value.isupper()))
    ):
        return False
    distinct = set(value)
    if len(distinct) < 10:
        return False
    n = len(value)
    if max(map(value.count, distinct)) * 8 <= n:
        return True  # no character is more than an eighth of it: entropy >= -log2(1/8) = 3, by > 0.19 bits here
    counts = Counter(value)
    entropy = -sum(c / n * math.log2(c / n) for c in counts.values())
    return entropy >= 3.0
