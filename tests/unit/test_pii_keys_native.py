"""The compiled API-key walk (``core/_pii_keys.c``: ``key_tokens``) is ``pii_keys.key_tokens_py``: the same hits on
the benchmark corpus, the pinned stress texts and generated texts made of what its checks turn on (vendor prefixes
and alphabets, key-like names and assignments, placeholders, dotted references, repeated characters, characters of
other scripts in the window, including the ones that match ASCII letters case-insensitively). Each check is also
compared alone with the pattern or function it stands for (``key_check``), so a mismatch names the piece."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.core import pii_context, pii_keys
from tests.unit import test_pii_clusters as clusters
from tests.unit import test_pii_driver as driver
from tests.unit import test_pii_stress as stress

pytestmark = [pytest.mark.unit, clusters.compiled]

_pii_clusters: Any = clusters._pii_clusters


def compiled_keys(text: str) -> list[tuple[str, int, int, float]]:
    tokens = pii_context.Context(text).tokens
    found: list[tuple[str, int, int, float]] = _pii_clusters.key_tokens(
        text, tokens, pii_keys._assigned, pii_keys._random_looking
    )
    return found


def assert_same_keys(texts: list[str]) -> int:
    found = 0
    for i, text in enumerate(texts):
        expected = pii_keys.key_tokens_py(text, pii_context.Context(text))
        assert compiled_keys(text) == expected, f"text {i}: {text[:160]!r}"
        found += len(expected)
    return found


def test_the_walk_in_use_is_the_compiled_one() -> None:
    assert pii_keys._compiled_key_tokens is _pii_clusters.key_tokens


def test_same_keys_on_the_corpus_and_the_stress_texts() -> None:
    texts = [t for t, _ in driver._corpus()]
    texts += [t for group in stress.random_groups().values() for t, _ in group]
    assert assert_same_keys(texts) > 100


ALPHABET = "abcdefABCDEFXYZ0123456789_-./+$"
KEY_PIECES = [
    "sk-", "sk-proj-", "sk-ant-api03-", "sk_live_", "rk_test_", "AKIA", "ASIA", "AIza", "ghp_", "gho_", "github_pat_",
    "xoxb-", "xoxp-", "hf_", "glpat-", "npm_", "SG.", "eyJ", ".eyJ", "-----BEGIN ", "api_key", "API_KEY", "secret",
    "Authorization: Bearer ", "token=", "password: ", "\"client_secret\": \"", "sig=", "auth ", " = ", "=", ": ", "'",
    '"', " ", "\n", "\t", "xxxx", "XXXX", "...", "example", "YOUR_", "here", "changeme", "settings.", "os.environ.",
    "$", "***", "\u017f", "\u212a", "\u0130", "\u0131", "\u00e9", "\u4e2d", "\U0001f600", "AKIAIOSFODNN7EXAMPLE",
]
"""Vendor prefixes, names and assignments in several cases, placeholders, references, and the non-ASCII characters
that case-insensitive matching folds to ASCII letters (long s, Kelvin sign, dotted and dotless i)."""
runs = st.text(ALPHABET, min_size=1, max_size=60)
key_texts = st.lists(st.one_of(st.sampled_from(KEY_PIECES), runs), max_size=16).map("".join)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key_texts)
def test_same_keys_on_generated_texts(text: str) -> None:
    assert_same_keys([text])


@settings(max_examples=1500, deadline=None)
@given(key_texts, st.integers(0, 80))
def test_vendor_shapes_are_the_shaped_pattern(text: str, at: int) -> None:
    """``key_check("shaped")`` is ``_SHAPED.match`` wherever that does not match its private-key branch."""
    at = min(at, len(text))
    m = pii_keys._SHAPED.match(text, at)
    if m is not None and m.group().startswith("-----"):
        return
    assert _pii_clusters.key_check("shaped", text, at, at) == (-1 if m is None else m.end())


@settings(max_examples=1500, deadline=None)
@given(st.one_of(runs, key_texts), st.booleans())
def test_random_looking_is_the_python_one_where_it_decides(value: str, shaped: bool) -> None:
    found = _pii_clusters.key_check("random_shaped" if shaped else "random", value, 0, len(value))
    if found == 2:  # the entropy (or a character outside ASCII): the Python function decides
        return
    assert bool(found) is pii_keys._random_looking(value, shaped)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(runs, key_texts))
def test_references_and_placeholders_are_their_patterns(value: str) -> None:
    assert bool(_pii_clusters.key_check("reference", value, 0, len(value))) is (
        pii_keys._REFERENCE.fullmatch(value) is not None)
    assert bool(_pii_clusters.key_check("placeholder", value, 0, len(value))) is pii_keys._placeholder(value)


VALUE = "9fK2mQ7xL4pW8nT3vB6yH1cR"
"""24 characters, 22 distinct, letters of both cases and digits: random-looking (built here, not a real key)."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-proj-" + VALUE, [("api_key", 4, 36, 0.97)]),
        ("AKIAIOSFODNN7EXAMPLE", []),  # AWS's documented example: a placeholder
        ("token=" + VALUE, [("api_key", 6, 30, 0.85)]),
        ("x = settings.STRIPE_SECRET_KEY.value", []),  # a reference to the secret
        ("password: aaaaaaaaaaaaaaaaaaaa1", []),  # one character repeated: not random
        ("secret: " + "ab" * 12 + "0", []),  # three characters: not random either
        ("t\u00e9l token=" + VALUE, [("api_key", 10, 34, 0.85)]),  # a window that is not ASCII: Python decides
    ],
)
def test_known_keys(text: str, expected: list[tuple[str, int, int, float]]) -> None:
    assert compiled_keys(text) == expected == pii_keys.key_tokens_py(text, pii_context.Context(text))


def test_python_hooks_are_called_only_where_they_decide() -> None:
    """An ASCII window without a key-like word never reaches ``_assigned``; a value whose characters are spread out
    never reaches ``_random_looking``."""
    calls: list[str] = []

    def assigned(*args: object) -> bool:
        calls.append("assigned")
        return bool(pii_keys._assigned(*args))  # type: ignore[arg-type]

    def random_looking(*args: object) -> bool:
        calls.append("random")
        return bool(pii_keys._random_looking(*args))  # type: ignore[arg-type]

    text = "token list: 0123456789abcdefABCDEF and id 0123456789abcdefABCDEF"
    tokens = pii_context.Context(text).tokens
    assert _pii_clusters.key_tokens(text, tokens, assigned, random_looking) == []
    assert calls == ["assigned", "assigned"]  # both windows (56 characters back) hold "token": the pattern decides
    calls.clear()
    text = "the id is 0123456789abcdefABCDEF, and " + "q" * 20 + " token=aaaaaaaaaaaaaaaab1c2d3e4f5g6"
    tokens = pii_context.Context(text).tokens
    _pii_clusters.key_tokens(text, tokens, assigned, random_looking)
    assert calls == ["assigned", "random"]  # only the assigned value; its "a" is over an eighth of it: the entropy


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="one byte per character"):
        _pii_clusters.key_tokens("abc", b"tt", pii_keys._assigned, pii_keys._random_looking)
    with pytest.raises(ValueError, match="span"):
        _pii_clusters.key_check("random", "abc", 2, 5)
    with pytest.raises(ValueError, match="no key check"):
        _pii_clusters.key_check("nothing", "abc", 0, 3)
