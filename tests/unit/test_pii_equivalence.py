"""The detector finds exactly what the reference implementation (``tests/unit/pii_reference``: the passes before the
C-level prefilters) finds, on random texts built the ways that stress a prefilter: fragments of the benchmark corpus,
digit and separator soup around cue words, access-log lines, and real findings mutated one character at a time
(shape edges: a digit more or less, a separator changed). A difference means a prefilter rejects too much: widen it.
"""

from __future__ import annotations

import random
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute.core import pii, request_text
from tests.benchmarks import bench_pii, pii_corpus
from tests.unit import pii_reference


@cache
def _corpus_texts() -> tuple[tuple[str, str], ...]:
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 600, pii_corpus.HELD_OUT_UNSEEN)
    return tuple((p.text, request_text.key_of(p)) for r in records for p in request_text.places(r.body))


@cache
def _findings() -> tuple[tuple[str, int, int], ...]:
    """(text, start, end) of every finding in the corpus texts: the material for mutations."""
    return tuple((text, f.start, f.end) for text, key in _corpus_texts() for f in pii.detect(text, key))


def _same(text: str, key: str = "") -> None:
    assert pii.detect(text, key) == pii_reference.detect(text, key)


KEYS = st.sampled_from(["", "phone", "order_id", "card", "ssn", "ip", "api_key", "notes"])

CUES = [
    "call ",
    "phone: ",
    "tel:",
    "Order #",
    "SKU ",
    "ref ",
    "card ",
    "SSN ",
    "IBAN ",
    "ip=",
    "client ",
    "version ",
    "Chrome/",
    "v",
    "api_key=",
    "token: ",
    "Bearer ",
    " bytes",
    " ms",
    "phone,order,ip\n",
    "电话",
    "版本",
]
SOUP = st.text(alphabet="0123456789 -.()/:+#,|\n\tTZxXAEabf_=", max_size=40)


@settings(max_examples=400, deadline=None)
@given(st.data(), KEYS)
def test_corpus_fragments(data: st.DataObject, key: str) -> None:
    texts = _corpus_texts()
    parts = []
    for _ in range(data.draw(st.integers(1, 4))):
        text = texts[data.draw(st.integers(0, len(texts) - 1))][0]
        lo = data.draw(st.integers(0, len(text)))
        parts.append(text[lo : lo + data.draw(st.integers(0, 400))])
    _same(data.draw(st.sampled_from(["", " ", "\n", ", "])).join(parts), key)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(SOUP, st.sampled_from(CUES), st.integers(0, 10**19).map(str)), max_size=12), KEYS)
def test_digit_and_separator_soup(parts: list[str], key: str) -> None:
    _same("".join(parts), key)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 12))
def test_log_lines(seed: int, lines: int) -> None:
    rng = random.Random(seed)
    _same("".join(bench_pii.log_line(rng) for _ in range(lines)))


@settings(max_examples=600, deadline=None)
@given(st.data(), KEYS)
def test_mutated_findings(data: st.DataObject, key: str) -> None:
    """A real finding with its surroundings, changed at up to three places in or right around it."""
    findings = _findings()
    text, start, end = findings[data.draw(st.integers(0, len(findings) - 1))]
    lo, hi = max(0, start - 30), min(len(text), end + 30)
    chars = list(text[lo:hi])
    for _ in range(data.draw(st.integers(1, 3))):
        if not chars:
            break
        at = data.draw(st.integers(max(0, start - lo - 3), min(len(chars) - 1, end - lo + 2)))
        edit = data.draw(st.sampled_from(["digit", "separator", "delete", "insert", "letter"]))
        new = data.draw(st.sampled_from("0123456789" if edit in ("digit", "insert") else " -./()+:_AZaz"))
        if edit == "delete":
            del chars[at]
        elif edit == "insert":
            chars.insert(at, new)
        else:
            chars[at] = new
    _same("".join(chars), key)


def test_access_logs_and_dense_requests_of_the_benchmark() -> None:
    """The latency cases the prefilters were written for, whole (the corpus itself is pinned in ``test_pii``)."""
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 600, pii_corpus.HELD_OUT_UNSEEN)
    for make in (bench_pii.log_bodies, bench_pii.sized_bodies):
        for body in make(records, 64 << 10)[:3]:
            for place in request_text.places(body):
                _same(place.text, request_text.key_of(place))


EDGE_CHARS = ["", " ", "+", "(", ":", "a", "/", "-", ".", "_", "€", "é", "#", "\n", "1"]


def test_every_short_prefix_and_suffix_around_phone_shaped_clusters() -> None:
    """Exhaustive where the phone prefilter decides (the characters before and after a cluster): every prefix of up
    to three of the characters ``phone_at`` treats specially (or not), around national, international and NANP
    clusters, followed by the characters that end a number or extend it."""
    clusters = [
        "415 555 0134",
        "(415) 555-0134",
        "4155550134",
        "20 7946 0958",
        "0044 20 7946 0958",
        "415.555.0134",
        "123-45-6789",
    ]
    suffixes = ["", " ", "x", "-X", "-1", ".", ")", " 12"]
    for cluster in clusters:
        for a in EDGE_CHARS:
            for b in EDGE_CHARS:
                for c in EDGE_CHARS:
                    _same(f"call {a}{b}{c}{cluster}")
        for prefix in ("", "+", "(", "(+", "/"):
            for suffix in suffixes:
                _same(f"call {prefix}{cluster}{suffix}")


def test_every_first_octet_and_the_private_second_octets() -> None:
    """Exhaustive where the IPv4 prefilter decides: every first octet (and a few over 255), the second octets at the
    edges of 172.16/12, 192.168/16 and 169.254/16, leading zeros, and a quad inside a longer cluster."""
    for a in [*range(260), 300, 999]:
        for b in (0, 15, 16, 31, 32, 168, 254, 255, 256):
            for text in (f"ip {a}.{b}.7.9", f"{a}.{b}.07.9", f"555 {a}.{b}.1.200 x", f"host {a}.{b}.3.4/24"):
                _same(text)
