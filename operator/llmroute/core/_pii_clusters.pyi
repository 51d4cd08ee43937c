"""The PII detector's compiled part (``_pii_*.c``); each function mirrors the Python one its docstring names."""

from collections.abc import Callable
from typing import Any

def plan(text: str, classes: bytes, constants: object, /) -> list[tuple[int, int, int, int]]: ...
def clusters(text: str, classes: bytes, /) -> list[tuple[int, int, int]]: ...
def shape(name: str, text: str, classes: bytes, a: int, b: int, /) -> bool: ...
def cue(
    text: str,
    classes: bytes,
    start: int,
    end: int,
    lo: int,
    hi: int,
    words: object,
    units: tuple[str, ...],
    /,
) -> int: ...
def long_tokens(text: str, tokens: bytes, first: str | None, /) -> list[tuple[int, int]]: ...
def any_word(text: str, words: object, /) -> bool: ...
def words(table: tuple[tuple[tuple[str, int], ...], ...], script: object = None, /) -> object: ...
def script_chars(words: object, alt: int, k: int, text: str, /) -> bytes: ...
def numbers(
    text: str,
    classes: bytes,
    key: str,
    headers: dict[int, tuple[str, str] | None],
    ctx: object,
    hooks: tuple[object, ...],
    /,
) -> list[tuple[str, int, int, float]]: ...
def lookup(
    text: str,
    classes: bytes,
    key: str,
    headers: dict[int, tuple[str, str] | None],
    ctx: object,
    hooks: tuple[object, ...],
    start: int,
    end: int,
    which: int,
    /,
) -> int: ...
def key_tokens(
    text: str,
    tokens: bytes,
    assigned: Callable[[str, int, int], bool],
    random_looking: Callable[[str, bool], bool],
    /,
) -> list[tuple[str, int, int, float]]: ...
def key_check(name: str, text: str, a: int, b: int, /) -> int: ...
def detect_many(
    texts: list[str], keys: list[str], hooks: tuple[object, ...], resolved: bool = False, /
) -> list[list[Any] | tuple[()]]: ...  # (lists of hooks' Finding type)
def emails(text: str, not_tlds: frozenset[str], role: frozenset[str], /) -> list[tuple[str, int, int, float]]: ...
def walk(out: list[Any], body: dict[str, Any], hooks: tuple[object, ...], /) -> None: ...
def resolve(hits: list[tuple[str, int, int, float]], /) -> None: ...
