"""Fuzz the PII detector's compiled part against its Python references, under AddressSanitizer and UBSan (on demand;
not collected by pytest). ``tests/fuzz/pii-native.sh SECONDS [SEED]`` builds ``_pii_*.c`` with the sanitizers
into a temporary folder and runs this with the sanitizer runtime preloaded; run alone, this uses the module that
``pip install -e .`` built (no sanitizers: differences only).

Each generated text (up to 80 pieces: digits, separators, cue words, card/SSN/address shapes, version pins, characters
of every str width, NUL) goes through every compiled function with arbitrary spans and windows: ``plan`` against
``pii_numbers.plan_py``, ``numbers`` (the driver) against ``pii_numbers.numbers_py``, ``lookup`` against ``Context.cue``
(with headers and keys), ``detect_many`` against ``pii.builtin_hits_py``, ``long_tokens`` against
``pii_keys.long_tokens_py``, ``emails`` against ``pii_net.emails_py``, ``walk`` (the body walk, on a body made of the
text) against ``request_text._walk``, ``key_tokens`` against ``pii_keys.key_tokens_py``, ``cue`` against
``Context._window`` (texts in any script: ``_pii_script.c``), ``any_word`` against
``pii_context.positive_word_py``, and the test hooks. A difference stops the run with the text; the sanitizers stop it
on a memory error or undefined behaviour.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import time
from types import ModuleType

from llmroute.core import pii, pii_context, pii_keys, pii_net, pii_numbers, request_text

PIECES = [
    *"0123456789 -.()/:+#,|\n\tTZxXAEabf_=%[",
    "\u20ac", "\u00a3", "\u00e9", "\u0660", "\u4e2d", "\U0001f600", "\x00",
    "call ", "order ", "mobile", "bytes", "(+", "00", "sk-", "4111 1111 1111 1111", "4111-1111-1111-1111",
    "378282246310005", "123-45-6789", "123 45 6789", "8.8.8.8", "34.1.2.3", "192.168.1.1", "172.20.0.1", "==", "@v",
    "/24", "/32", ".5", "1", "22", "333", "4444", "phone,order;ip\n", "t\u00e9l,x\n", "+44 20 7946 0958", "DE89",
    "415-555-0134", "(415) 555-0134", "020 7946 0958", "2001:db8::1", "GB82WEST12345698765432",
    "sk-proj-", "AKIA", "ghp_", "eyJ", ".eyJ", "token=", "api_key: ", "9fK2mQ7xL4pW8nT3vB6yH1cR", "xxxx", "\u017f",
    "\u212a", "settings.", "ada@example.com", "@", ".org", "://x@", "noreply@", "@a.b.c.png",
    "\u0422\u0435\u043b\u0435\u0444\u043e\u043d ", "\u0422\u0415\u041b", "\u0437\u0430\u043a\u0430\u0437 ",
    "\u7535\u8bdd", "\u8ba2\u5355", "T\u00c9L ", "\u0130", "\u0131", "\u1c80", "\u2116", "\u0436", "\u00b5", "\u3002",
]
KEYS = ["", "phone", "order_id", "t\u00e9l\u00e9phone", "ssn"]
CUES = [pii_context.PHONE, pii_context.CARD, pii_context.SSN, pii_context.IP]
SHAPES = ["ssn_shape", "card_shape", "dots", "isbn", "date", "edges", "punctuation", "nanp", "trunk"]


def load(path: str | None) -> ModuleType:
    if path is None:
        from llmroute.core import _pii_clusters

        return _pii_clusters
    spec = importlib.util.spec_from_file_location("_pii_clusters", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one(m: ModuleType, rng: random.Random) -> None:
    t = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 80)))
    key = rng.choice(KEYS)
    ctx = pii_context.Context(t, key)
    assert m.plan(t, ctx.classes, pii_numbers.PLAN_CONSTANTS) == pii_numbers.plan_py(t, ctx.classes), t
    hooks = (*pii_numbers._HOOKS[:3], tuple(m.words(c.table, c.script) for c in CUES), *pii_numbers._HOOKS[4:])
    hits = m.numbers(t, ctx.classes, key, ctx.headers, ctx, hooks)
    assert hits == list(pii_numbers.numbers_py(t, pii_context.Context(t, key))), (t, key)
    compiled, reference = pii_context.Context(t, key), pii_context.Context(t, key)  # (the same lookups in order:
    for _ in range(3):  # what a lookup finds may depend on the headers remembered by the ones before)
        s = rng.randint(0, len(t))
        e, which = rng.randint(s, len(t)), rng.randrange(4)
        got = m.lookup(t, ctx.classes, key, compiled.headers, compiled, hooks, s, e, which)
        assert got == reference.cue(s, e, CUES[which]).value, (t, key, s, e, which)
    for first in (None, pii_keys._SHAPED_FIRST):
        assert m.long_tokens(t, ctx.tokens, first) == pii_keys.long_tokens_py(t, ctx.tokens, first), t
    detect_hooks = (*pii._DETECT_HOOKS[:2], hooks, *pii._DETECT_HOOKS[3:])
    assert m.detect_many([t, t[: len(t) // 2]], [key, ""], detect_hooks) == [
        pii.builtin_hits_py(t, key) or (), pii.builtin_hits_py(t[: len(t) // 2], "") or ()], (t, key)
    hits = pii.builtin_hits_py(t, key)
    assert m.detect_many([t], [key], detect_hooks, True) == [(list(pii._resolve(hits)) if len(hits) > 1 else hits)
                                                             or ()], (t, key)
    assert m.emails(t, pii_net._NOT_TLDS, pii_net._ROLE) == list(pii_net.emails_py(t)), t
    body = {"messages": [{"role": "user", "content": t}, {"content": [{"type": "text", "text": t}], "reasoning": t},
                         {"tool_calls": [{"function": {"arguments": t}}]}, t], "prompt": [t, 1]}
    walked: list[object] = []
    m.walk(walked, body, request_text._WALK_HOOKS)
    expected: list[object] = []
    request_text._walk(expected, body)
    assert walked == expected, t
    keys = m.key_tokens(t, ctx.tokens, pii_keys._assigned, pii_keys._random_looking)
    assert keys == pii_keys.key_tokens_py(t, pii_context.Context(t)), t
    for name in ("shaped", "random", "random_shaped", "reference", "placeholder"):
        a = rng.randint(0, len(t))
        m.key_check(name, t, a, rng.randint(a, len(t)))
    lower = ctx.lower()
    for _ in range(5):
        s = rng.randint(0, len(t))
        e = rng.randint(s, len(t))
        lo, hi = rng.randint(0, s), rng.randint(e, len(t))
        cues = rng.choice(CUES)
        got = m.cue(t, ctx.classes, s, e, lo, hi, m.words(cues.table, cues.script), pii_context._UNIT_WORDS)
        if got == 3:  # (an empty candidate at the start of a text that is not ASCII: left to _window)
            assert e == 0 and not t.isascii(), t
            continue
        expected = ctx._window(s, e, lo, hi, cues)
        assert got == (0 if expected is None else expected.value), (t, s, e, lo, hi)
    if lower:
        assert m.any_word(lower, m.words(pii_context.PHONE.table)) is pii_context.positive_word_py(lower), t
    for name in SHAPES:
        a = rng.randint(0, len(t))
        m.shape(name, t, ctx.classes, a, rng.randint(a, len(t)))
    m.clusters(t, ctx.classes)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    m = load(sys.argv[3] if len(sys.argv) > 3 else None)
    deadline, n = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        one(m, rng)
        n += 1
    print(f"{n:,} texts: no difference")


if __name__ == "__main__":
    main()
