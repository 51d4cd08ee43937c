"""PII detection benchmark: accuracy on a labelled corpus and latency by request size, llmroute's detector against
Microsoft Presidio's pattern recognizers. Run on demand (about a minute; Presidio's rows take longer):

    python tests/benchmarks/bench_pii.py [--records 4000] [--half held-out|tune] [--errors N]

Corpus: ``tests/benchmarks/pii_corpus.py`` (synthetic, seeded). The detector was tuned on the ``tune`` half
(seed 1); the reported numbers are the ``held-out`` half (seed 3), which nothing was tuned on, and 30% of whose
records come from the families in ``pii_corpus.unseen_record`` (phrasings, formats and look-alikes written after
the first round of tuning; the first held-out half, seed 2, saw them first: ``results/pii_first_held_out.json``).
Per request: recall =
requests holding personal data that got at least one finding; precision = requests with a finding that hold some.
Per type: recall = labelled values with an overlapping finding of that type; precision = findings of that type that
overlap a labelled value of that type. Both detectors scan the same places (``request_text.places``).

Latency: chat requests of 1 KB, 8 KB, 64 KB and 1 MB built from corpus texts (conversations, and dense: records back to
back) or a pasted access log (``log_line``), timed end to end (walk the body, detect in every place: for llmroute the
router's own call, ``request_text.scan``, every place in one ``detect_many``), p50/p99 over repeated runs, single
thread, in CPU time (``time.process_time``: the machine these numbers come from is shared, and wall time there mostly
measures the neighbours). ``--floor``: where the time of dense 8 KB requests goes, and the part no detector built like
this one can avoid (see ``floor``; writes ``results/pii_floor.json``).

Presidio (``pip install presidio-analyzer``; not a project dependency): its EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD,
US_SSN, IBAN_CODE and IP_ADDRESS pattern recognizers called directly (its NER and context boosting need a spaCy
model that cannot be fetched here; it has no API-key recognizer), at its default score threshold (0) and at 0.5.
Its row is skipped with a message when the package is missing.

Writes ``tests/benchmarks/results/pii.json`` and prints a table. ``--errors N`` prints up to N misses and false
alarms of the chosen half (synthetic values; for tuning on the tune half only).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llmroute.core import pii, request_text
from tests.benchmarks import pii_corpus

RESULTS = Path(__file__).parent / "results" / "pii.json"
FLOOR_RESULTS = Path(__file__).parent / "results" / "pii_floor.json"
SIZES = {"1KB": 1 << 10, "8KB": 8 << 10, "64KB": 64 << 10, "1MB": 1 << 20}
Spans = list[tuple[str, int, int]]
DetectFn = Callable[[str, str], Spans]
"""(text, JSON key or "") -> (type, start, end) of each finding."""


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0


@dataclass
class Accuracy:
    request: Tally = field(default_factory=Tally)
    request_no_keys: Tally = field(default_factory=Tally)
    labels: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    findings: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_kind: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        types = sorted(set(self.labels) | set(self.findings))
        return {
            "request": {
                "recall": self.request.recall(),
                "precision": self.request.precision(),
                "positives": self.request.tp + self.request.fn,
                "flagged": self.request.tp + self.request.fp,
            },
            "request_without_api_key_records": {
                "recall": self.request_no_keys.recall(),
                "precision": self.request_no_keys.precision(),
            },
            "per_type": {
                t: {
                    "recall": self.labels[t].recall(),
                    "precision": self.findings[t].precision(),
                    "labelled": self.labels[t].tp + self.labels[t].fn,
                    "found": self.findings[t].tp + self.findings[t].fp,
                }
                for t in types
            },
            "request_by_kind": {
                k: {"recall": v.recall(), "precision": v.precision()} for k, v in sorted(self.by_kind.items())
            },
        }


def ours(text: str, key: str) -> Spans:
    return [(f.type, f.start, f.end) for f in pii.detect(text, key)]


def evaluate(records: Iterable[pii_corpus.Record], detect: DetectFn, keep_errors: int = 0) -> Accuracy:
    acc = Accuracy()
    for r in records:
        placed = [(p, detect(p.text, request_text.key_of(p))) for p in request_text.places(r.body)]
        flagged = any(found for _, found in placed)
        positive = bool(r.labels)
        _tally_request(acc.request, positive, flagged)
        _tally_request(acc.by_kind[r.kind], positive, flagged)
        if not any(t == "api_key" for t, _ in r.labels):
            flagged_no_keys = any(t != "api_key" for _, found in placed for t, _, _ in found)
            _tally_request(acc.request_no_keys, positive and bool(r.labels), flagged_no_keys)
        _tally_values(acc, r, placed, keep_errors)
    return acc


def _tally_request(t: Tally, positive: bool, flagged: bool) -> None:
    if positive and flagged:
        t.tp += 1
    elif positive:
        t.fn += 1
    elif flagged:
        t.fp += 1


def _tally_values(
    acc: Accuracy, r: pii_corpus.Record, placed: list[tuple[request_text.Place, Spans]], keep_errors: int
) -> None:
    labelled: list[tuple[int, str, int, int]] = []  # (place index, type, start, end)
    for kind, value in set(r.labels):
        for i, (place, _) in enumerate(placed):
            at = place.text.find(value)
            while at != -1:
                labelled.append((i, kind, at, at + len(value)))
                at = place.text.find(value, at + 1)
    for kind, value in set(r.labels):
        spans = [s for s in labelled if s[1] == kind and placed[s[0]][0].text[s[2] : s[3]] == value]
        hit = any(t == kind and f_start < s[3] and s[2] < f_end for s in spans for t, f_start, f_end in placed[s[0]][1])
        acc.labels[kind].tp += hit
        acc.labels[kind].fn += not hit
        if not hit and len(acc.errors) < keep_errors:
            acc.errors.append(f"MISS {kind:<11} {r.id} {r.kind:<12} {_around(r, value)!r}")
    for i, (place, found) in enumerate(placed):
        for t, start, end in found:
            ok = any(s[0] == i and s[1] == t and start < s[3] and s[2] < end for s in labelled)
            acc.findings[t].tp += ok
            acc.findings[t].fp += not ok
            if not ok and len(acc.errors) < keep_errors:
                ctx = place.text[max(0, start - 30) : end + 10]
                acc.errors.append(f"FALSE {t:<11} {r.id} {r.kind:<12} {place.text[start:end]!r} in {ctx!r}")


def _around(r: pii_corpus.Record, value: str) -> str:
    for p in request_text.places(r.body):
        at = p.text.find(value)
        if at != -1:
            return p.text[max(0, at - 30) : at + len(value) + 10]
    return f"(not located) {value}"


# --- Presidio ------------------------------------------------------------------------------------------------------

PRESIDIO_TYPES = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "credit_card",
    "US_SSN": "us_ssn",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip_address",
}


def presidio(threshold: float) -> DetectFn | None:
    """Presidio's pattern recognizers for our types, called directly (no NLP engine), or None when not installed."""
    try:
        import tldextract.tldextract as tld  # Presidio's email check; keep it on its bundled suffix list, offline

        tld.TLD_EXTRACTOR = tld.TLDExtract(suffix_list_urls=())
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            UsSsnRecognizer,
        )
    except ImportError:
        return None
    recognizers = [
        EmailRecognizer(),
        PhoneRecognizer(),
        CreditCardRecognizer(),
        UsSsnRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
    ]

    def detect(text: str, key: str) -> Spans:  # Presidio takes no key
        out: Spans = []
        for rec in recognizers:
            for res in rec.analyze(text, rec.supported_entities, None) or []:
                if res.score >= threshold and res.entity_type in PRESIDIO_TYPES:
                    out.append((PRESIDIO_TYPES[res.entity_type], res.start, res.end))
        return _non_overlapping(out)

    return detect


def _non_overlapping(spans: Spans) -> Spans:
    kept: Spans = []
    for s in sorted(spans, key=lambda s: (s[1] - s[2], s[1])):
        if not any(s[1] < k[2] and k[1] < s[2] for k in kept):
            kept.append(s)
    return sorted(kept, key=lambda s: s[1])


# --- latency -------------------------------------------------------------------------------------------------------

PROSE = [
    "Thanks for the quick turnaround on this. Before we ship, I want to double-check the migration plan: we move the "
    "read path first, keep writes on the old cluster for a week, and only then flip the feature flag for everyone. "
    "If anything looks off in the dashboards we roll back by reverting the flag, not the deploy.",
    "Here's the summary of the customer call. They are happy with the product overall but the onboarding flow is "
    "confusing, especially the step where they have to connect their data source. They asked whether we can offer "
    "a guided setup and whether the export can include the audit trail.",
    "Can you rewrite the paragraph below so it sounds less formal? Keep the meaning, drop the jargon, and make sure "
    "it still mentions that the pricing change only applies to new contracts signed after the first of next month.",
    "The function works for small inputs but times out on large files. I suspect the nested loop in the parser: for "
    "every line it scans the whole header again. A dictionary lookup should make it linear. Could you confirm and "
    "suggest a fix with a short explanation?",
    "Sure. The root cause is that the retry policy retries on every error, including validation errors that will "
    "never succeed. The fix is to retry only on timeouts and 5xx responses, with exponential backoff and jitter, and "
    "to surface the validation error to the caller immediately.",
    "Wir haben die neue Version gestern ausgerollt. Bitte prüfe, ob die Übersetzungen im Menü vollständig sind und "
    "ob die Datumsformate für Österreich und die Schweiz stimmen.",
    "Merci pour votre retour. Pouvez-vous préciser quelles pages sont concernées et depuis quand le problème se "
    "produit ? Nous allons transmettre la demande à l'équipe technique.",
    "请帮我把下面这段产品说明改写得更简洁一些，保留关键的功能点，并去掉重复的描述。",  # noqa: RUF001
    "Draft an email to the team announcing the new on-call rotation. Mention that swaps must be agreed in the "
    "channel, that the secondary covers lunch breaks, and that the handover happens on Mondays at ten.",
]


def conversation_bodies(records: list[pii_corpus.Record], size: int) -> list[dict[str, Any]]:
    """Chat requests of about ``size`` characters as they usually look: a system prompt and user/assistant turns of
    prose, with one pasted artifact from the corpus (code, logs, JSON, CSV, a ticket) per ~2 KB."""
    pasted = [p.text for r in records for p in request_text.places(r.body)]
    bodies, i, k = [], 0, 0
    for _ in range(max(3, min(40, (8 << 20) // size))):
        messages: list[dict[str, Any]] = [{"role": "system", "content": PROSE[0]}]
        total = len(PROSE[0])
        while total < size:
            turn = " ".join(PROSE[(i + j) % len(PROSE)] for j in range(3))
            if i % 2 == 0:
                turn += "\n\n" + pasted[k % len(pasted)]
                k += 1
            turn = turn[: size - total]
            i += 1
            messages.append({"role": "user" if len(messages) % 2 else "assistant", "content": turn})
            total += len(turn)
        bodies.append({"model": "deepseek-chat", "messages": messages})
    return bodies


def sized_bodies(records: list[pii_corpus.Record], size: int) -> list[dict[str, Any]]:
    """Worst case: chat requests of about ``size`` characters made of corpus records back to back (look-alike and
    number dense: about a third of the characters are digits)."""
    texts = [p.text for r in records for p in request_text.places(r.body)]
    bodies, i = [], 0
    for _ in range(max(3, min(40, (8 << 20) // size))):
        messages: list[dict[str, Any]] = []
        total = 0
        while total < size:
            t = texts[i % len(texts)][: size - total]
            i += 1
            messages.append({"role": "user" if len(messages) % 2 == 0 else "assistant", "content": t})
            total += len(t)
        bodies.append({"model": "deepseek-chat", "messages": messages})
    return bodies


def log_line(rng: random.Random) -> str:
    """One access-log line as services write them: an ISO timestamp, a hex request id, a client address (private or
    public), a request path with an order number and a page, status, bytes, duration and a browser version (about
    40% digits; the public addresses are the findings)."""
    ip = f"{rng.choice([10, 172, 192, 34, 52, 81])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    ts = (
        f"2026-11-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
        f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"
    )
    return (
        f'{ts} INFO req_id={rng.getrandbits(64):016x} {ip} "GET /api/v2/orders/{rng.randint(10000, 99999999)}'
        f'?page={rng.randint(1, 50)} HTTP/1.1" {rng.choice([200, 200, 200, 404, 500])} {rng.randint(100, 99999)} '
        f'{rng.random() * 2:.3f}s ua="Mozilla/5.0 (X11; Linux x86_64) Chrome/{rng.randint(100, 130)}.0.'
        f'{rng.randint(1000, 9999)}.{rng.randint(10, 200)}"\n'
    )


def log_bodies(records: list[pii_corpus.Record], size: int) -> list[dict[str, Any]]:
    """A pasted access log of about ``size`` characters in one user message (``log_line``, seeded; ``records``
    unused: the shape is not the corpus')."""
    rng = random.Random(1)
    bodies = []
    for _ in range(max(3, min(40, (8 << 20) // size))):
        lines, total = [], 0
        while total < size:
            line = log_line(rng)[: size - total]
            lines.append(line)
            total += len(line)
        bodies.append({"model": "deepseek-chat", "messages": [{"role": "user", "content": "".join(lines)}]})
    return bodies


LATENCY_SHAPES: dict[str, tuple[str, Callable[[list[pii_corpus.Record], int], list[dict[str, Any]]]]] = {
    "latency": ("conversations", conversation_bodies),
    "latency_dense": ("dense (worst case)", sized_bodies),
    "latency_logs": ("access logs", log_bodies),
}
"""Result key -> (title, request maker) of each latency case."""


def latency(detect: DetectFn | None, bodies: list[dict[str, Any]], budget_s: float,
            min_runs: int = 3) -> dict[str, float]:
    """p50/p99 of walking ``bodies`` and detecting in every place, repeated until ``budget_s`` has passed (at least
    ``min_runs`` runs); ``detect`` None: llmroute's detector as the router calls it (``request_text.scan``)."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(times) < min_runs:
        for body in bodies[: max(min_runs, 1)] if budget_s == 0 else bodies:
            t0 = time.process_time()
            if detect is None:
                request_text.scan(body, pii.DEFAULT)
            else:
                for place in request_text.places(body):
                    detect(place.text, request_text.key_of(place))
            times.append(time.process_time() - t0)
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1e3,
        "p99_ms": times[int(len(times) * 0.99) - 1] * 1e3 if len(times) >= 100 else times[-1] * 1e3,
        "runs": len(times),
    }


def floor(records: list[pii_corpus.Record], size: int = 8 << 10, runs: int = 5) -> dict[str, float]:
    """Where the time of dense requests of ``size`` goes: median ms per request of each step, timed alone over the
    same requests.

    - ``detect``: the whole detection, as the router calls it (``request_text.scan``).
    - ``walk``: the body walk alone (``request_text.places``: compiled when built).
    - ``phone_validation``: the phone validations detection makes (``pii_numbers.valid_in`` for one region, and
      ``valid_in_any`` for several: parse and numbering plan, ``pii_plans``' or ``phonenumbers``'), replayed.
    - ``windows``: the context windows Python reads (``Context._window``), replayed: none where the extension has
      ``_pii_script.c`` (it reads windows in every script); kept so that a window falling back to Python shows.
    - ``rest``: detect less all of the above - the compiled pass (byte views, e-mail, keys, the digit-cluster plan,
      context lookups, decisions, IBANs, overlaps) and the Python it calls for the rest (IPv6 addresses, key
      assignments and entropy, PEM keys).
    - ``*_calls``: how many of each a request makes (median)."""
    from llmroute.core import pii_context, pii_numbers

    bodies = sized_bodies(records, size)
    phone_calls: list[list[tuple[Callable[..., object], tuple[object, ...]]]] = []
    window_calls: list[list[tuple[object, ...]]] = []
    hooks = pii_numbers._HOOKS
    valid_in, validated, window = hooks[7], hooks[6], pii_context.Context._window

    def recording(fn: Callable[..., object]) -> Callable[..., object]:
        def record(*args: object) -> object:
            phone_calls[-1].append((fn, args))
            return fn(*args)
        return record

    def recording_window(ctx: pii_context.Context, *args: object) -> object:
        window_calls[-1].append((ctx, *args))
        return window(ctx, *args)  # type: ignore[arg-type]

    saved = pii._DETECT_HOOKS
    numbers_hooks = (*hooks[:6], recording(validated), recording(valid_in), *hooks[8:])
    pii._DETECT_HOOKS = (*saved[:2], numbers_hooks, *saved[3:])
    pii_context.Context._window = recording_window  # type: ignore[method-assign,assignment]
    try:
        for body in bodies:
            phone_calls.append([])
            window_calls.append([])
            request_text.scan(body, pii.DEFAULT)
    finally:
        pii._DETECT_HOOKS = saved
        pii_context.Context._window = window  # type: ignore[method-assign]
    phone_replay = phone_calls  # (``_validated`` calls ``valid_in``/``valid_in_any`` itself: replaying it, those)

    steps: dict[str, Callable[[int], object]] = {
        "detect": lambda i: request_text.scan(bodies[i], pii.DEFAULT),
        "walk": lambda i: request_text.places(bodies[i]),
        "phone_validation": lambda i: [fn(*args) for fn, args in phone_replay[i]],
        "windows": lambda i: [window(*call) for call in window_calls[i]],  # type: ignore[arg-type]
    }
    out: dict[str, float] = {}
    for name, step in steps.items():
        times = []
        for _ in range(runs):
            for i in range(len(bodies)):
                t0 = time.process_time()
                step(i)
                times.append(time.process_time() - t0)
        out[name] = statistics.median(times) * 1e3
    out["rest"] = out["detect"] - out["walk"] - out["phone_validation"] - out["windows"]
    out["phone_validation_calls"] = statistics.median(len(c) for c in phone_replay)
    out["window_calls"] = statistics.median(len(c) for c in window_calls)
    return out


# --- main ----------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--half", choices=["held-out", "tune"], default="held-out")
    parser.add_argument("--errors", type=int, default=0)
    parser.add_argument("--no-presidio", action="store_true")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="only where the time of dense 8 KB requests goes and what cannot be avoided (ms)",
    )
    args = parser.parse_args()
    seed = pii_corpus.HELD_OUT_SEED if args.half == "held-out" else pii_corpus.TUNE_SEED
    unseen = pii_corpus.HELD_OUT_UNSEEN if args.half == "held-out" else 0.0
    records = pii_corpus.generate(seed, args.records, unseen)
    if args.floor:
        steps = floor(records)
        FLOOR_RESULTS.write_text(json.dumps({"dense_8KB_ms_per_request": steps}, indent=2) + "\n")
        for name, value in steps.items():
            print(f"{name:<22}{value:>8.3f}")
        return

    detectors: dict[str, DetectFn | None] = {"llmroute": ours}
    if not args.no_presidio:
        detectors["presidio"] = presidio(0.0)
        detectors["presidio@0.5"] = presidio(0.5)
    results: dict[str, Any] = {
        "corpus": {
            "half": args.half,
            "seed": seed,
            "records": len(records),
            "kinds": dict(Counter(r.kind for r in records)),
        },
        "detectors": {},
    }
    for name, detect in detectors.items():
        if detect is None:
            print(f"{name}: skipped (presidio-analyzer is not installed: pip install presidio-analyzer)")
            results["detectors"][name] = {"skipped": "presidio-analyzer not installed"}
            continue
        acc = evaluate(records, detect, args.errors if name == "llmroute" else 0)
        entry: dict[str, Any] = {"accuracy": acc.summary()}
        if not args.no_latency:
            budget = 2.0 if name == "llmroute" else 1.0
            for shape, (_, make) in LATENCY_SHAPES.items():
                entry[shape] = {
                    label: _latency_row(name, detect, make(records, size), size, budget)
                    for label, size in SIZES.items()
                }
        results["detectors"][name] = entry
        for line in acc.errors:
            print(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def _latency_row(
    name: str, detect: DetectFn, bodies: list[dict[str, Any]], size: int, budget: float
) -> dict[str, float]:
    if name == "llmroute":
        return latency(None, bodies, budget)
    if size >= (1 << 20):  # Presidio: one 1 MB request is enough (and takes long)
        return latency(detect, bodies, 0.0, min_runs=1)
    return latency(detect, bodies, budget)


def print_table(results: dict[str, Any]) -> None:
    c = results["corpus"]
    print(f"\ncorpus: {c['half']} half (seed {c['seed']}), {c['records']} requests")
    rows = [(n, d) for n, d in results["detectors"].items() if "accuracy" in d]
    print(f"{'detector':<14}{'req recall':>11}{'req prec':>10}{'  (no-key records) rec/prec':>28}")
    for n, d in rows:
        a = d["accuracy"]
        nk = a["request_without_api_key_records"]
        print(
            f"{n:<14}{a['request']['recall']:>11.2%}{a['request']['precision']:>10.2%}"
            f"{nk['recall']:>18.2%} / {nk['precision']:.2%}"
        )
    print(f"\n{'type':<13}" + "".join(f"{n + ' rec/prec':>26}" for n, _ in rows))
    for t in pii.TYPES:
        cells = []
        for _, d in rows:
            pt = d["accuracy"]["per_type"].get(t)
            cells.append(f"{pt['recall']:>7.2%} / {pt['precision']:>7.2%} ({pt['labelled']:>4})" if pt else "-")
        print(f"{t:<13}" + "".join(f"{cell:>26}" for cell in cells))
    for shape, (title, _) in LATENCY_SHAPES.items():
        if not any(shape in d for _, d in rows):
            continue
        print(f"\n{'ms, ' + title:<26}" + "".join(f"{s + ' p50/p99':>21}" for s in SIZES))
        for n, d in rows:
            if shape in d:
                cells = (f"{v['p50_ms']:>10.3f} / {v['p99_ms']:<8.3f}" for v in d[shape].values())
                print(f"{n:<26}" + "".join(cells))


if __name__ == "__main__":
    main()
