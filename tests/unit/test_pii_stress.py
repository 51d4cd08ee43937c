"""The detector's findings on texts built the ways that stress its C-level prefilters are pinned: fragments of the
benchmark corpus, digit and separator soup around cue words, access-log lines, real findings mutated one character
at a time (shape edges: a digit more or less, a separator changed), the latency cases whole, and two exhaustive
sweeps where the prefilters decide (the characters around phone-shaped clusters; IPv4 first and private second
octets). The pinned findings were produced by the detector as it was before the prefilters, so a difference means a
prefilter rejects too much (widen it) or detection changed on purpose (review, then regenerate with
``LLMROUTE_UPDATE_GOLDEN=1 pytest tests/unit/test_pii_stress.py``). The texts are generated from fixed seeds; the
random groups are pinned finding by finding (a failure shows the text's group and number), the exhaustive sweeps by
a digest of every finding (tens of thousands of texts).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator
from functools import cache

import pytest

from llmroute.core import pii, request_text
from tests.benchmarks import bench_pii, pii_corpus
from tests.conftest import ROOT

pytestmark = pytest.mark.unit
GOLDEN = ROOT / "tests" / "unit" / "golden" / "pii-stress.json"
SEED = 20261204

KEYS = ["", "phone", "order_id", "card", "ssn", "ip", "api_key", "notes"]
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
SOUP = "0123456789 -.()/:+#,|\n\tTZxXAEabf_="
EDGE_CHARS = ["", " ", "+", "(", ":", "a", "/", "-", ".", "_", "€", "é", "#", "\n", "1"]
Texts = list[tuple[str, str]]


@cache
def _corpus_texts() -> Texts:
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 600, pii_corpus.HELD_OUT_UNSEEN)
    return [(p.text, request_text.key_of(p)) for r in records for p in request_text.places(r.body)]


def fragments(rng: random.Random, n: int = 400) -> Texts:
    texts = _corpus_texts()
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 4)):
            text = rng.choice(texts)[0]
            lo = rng.randint(0, len(text))
            parts.append(text[lo : lo + rng.randint(0, 400)])
        out.append((rng.choice(["", " ", "\n", ", "]).join(parts), rng.choice(KEYS)))
    return out


def soup(rng: random.Random, n: int = 600) -> Texts:
    def part() -> str:
        kind = rng.randrange(3)
        if kind == 0:
            return "".join(rng.choice(SOUP) for _ in range(rng.randint(0, 40)))
        return rng.choice(CUES) if kind == 1 else str(rng.randint(0, 10**19))

    return [("".join(part() for _ in range(rng.randint(0, 12))), rng.choice(KEYS)) for _ in range(n)]


def logs(rng: random.Random, n: int = 200) -> Texts:
    return [("".join(bench_pii.log_line(rng) for _ in range(rng.randint(1, 12))), "") for _ in range(n)]


def mutated(rng: random.Random, n: int = 600) -> Texts:
    """A real finding with its surroundings, changed at up to three places in or right around it."""
    found = [(t, f.start, f.end) for t, k in _corpus_texts() for f in pii.detect(t, k)]
    out = []
    for _ in range(n):
        text, start, end = rng.choice(found)
        lo, hi = max(0, start - 30), min(len(text), end + 30)
        chars = list(text[lo:hi])
        for _ in range(rng.randint(1, 3)):
            if not chars:
                break
            at = rng.randint(max(0, start - lo - 3), max(max(0, start - lo - 3), min(len(chars) - 1, end - lo + 2)))
            edit = rng.choice(["digit", "separator", "delete", "insert", "letter"])
            new = rng.choice("0123456789" if edit in ("digit", "insert") else " -./()+:_AZaz")
            if edit == "delete":
                del chars[min(at, len(chars) - 1)]
            elif edit == "insert":
                chars.insert(at, new)
            else:
                chars[min(at, len(chars) - 1)] = new
        out.append(("".join(chars), rng.choice(KEYS)))
    return out


def benchmark_requests() -> Texts:
    """The latency cases the prefilters were written for, whole."""
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 600, pii_corpus.HELD_OUT_UNSEEN)
    return [
        (place.text, request_text.key_of(place))
        for make in (bench_pii.log_bodies, bench_pii.sized_bodies)
        for body in make(records, 64 << 10)[:3]
        for place in request_text.places(body)
    ]


def phone_edges() -> Iterator[str]:
    """Every prefix of up to three of the characters the phone prefilter treats specially (or not), around
    national, international and NANP clusters, and the characters that end a number or extend it."""
    clusters = [
        "415 555 0134",
        "(415) 555-0134",
        "4155550134",
        "20 7946 0958",
        "0044 20 7946 0958",
        "415.555.0134",
        "123-45-6789",
    ]
    for cluster in clusters:
        for a in EDGE_CHARS:
            for b in EDGE_CHARS:
                for c in EDGE_CHARS:
                    yield f"call {a}{b}{c}{cluster}"
        for prefix in ("", "+", "(", "(+", "/"):
            for suffix in ("", " ", "x", "-X", "-1", ".", ")", " 12"):
                yield f"call {prefix}{cluster}{suffix}"


def octet_edges() -> Iterator[str]:
    """Every first octet (and a few over 255), the second octets at the edges of 172.16/12, 192.168/16 and
    169.254/16, leading zeros, and a quad inside a longer cluster."""
    for a in [*range(260), 300, 999]:
        for b in (0, 15, 16, 31, 32, 168, 254, 255, 256):
            yield from (f"ip {a}.{b}.7.9", f"{a}.{b}.07.9", f"555 {a}.{b}.1.200 x", f"host {a}.{b}.3.4/24")


def random_groups() -> dict[str, Texts]:
    rng = random.Random(SEED)
    return {
        "fragments": fragments(rng),
        "soup": soup(rng),
        "logs": logs(rng),
        "mutated": mutated(rng),
        "benchmark": benchmark_requests(),
    }


def findings(text: str, key: str = "") -> list[list[object]]:
    return [[f.type, f.start, f.end] for f in pii.detect(text, key)]


def digest(texts: Iterator[str]) -> dict[str, object]:
    h, count, total = hashlib.sha256(), 0, 0
    for text in texts:
        found = findings(text)
        h.update(json.dumps(found).encode() + b"\n")
        count, total = count + 1, total + len(found)
    return {"texts": count, "findings": total, "sha256": h.hexdigest()}


def current() -> dict[str, object]:
    pinned: dict[str, object] = {name: [findings(t, k) for t, k in texts] for name, texts in random_groups().items()}
    pinned["phone_edges"] = digest(phone_edges())
    pinned["octet_edges"] = digest(octet_edges())
    return pinned


def test_findings_on_prefilter_stress_texts_are_pinned() -> None:
    now = current()
    if os.environ.get("LLMROUTE_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(now, separators=(",", ":")) + "\n")
    pinned = json.loads(GOLDEN.read_text())
    assert set(now) == set(pinned)
    for group, texts in random_groups().items():
        assert len(pinned[group]) == len(texts), group
        for i, ((text, key), was) in enumerate(zip(texts, pinned[group], strict=True)):
            got = now[group][i]  # type: ignore[index]
            assert got == was, f"{group}[{i}] (key {key!r}, {len(text)} chars): {got} != pinned {was}"
    for sweep in ("phone_edges", "octet_edges"):
        assert now[sweep] == pinned[sweep], sweep
