"""The compiled digit-cluster plan (``_pii_clusters.c``); ``pii_numbers.plan_py`` is what it mirrors."""

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
    table: tuple[tuple[tuple[str, int], ...], ...],
    units: tuple[str, ...],
    /,
) -> int: ...
def long_tokens(text: str, tokens: bytes, first: str | None, /) -> list[tuple[int, int]]: ...
