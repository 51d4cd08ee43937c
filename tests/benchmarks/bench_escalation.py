"""Escalation benchmark: what detection + escalation add to the router's request path, and ``llmroute scan``
throughput. Run on demand (about a minute; ``--scan`` adds about a minute more):

    python tests/benchmarks/bench_escalation.py [--seconds 3] [--scan] [--scan-lines 1000000]

Request path (in-process, single thread): the router's own routing step (:func:`llmroute.router.proxy._route`:
parse the body, look up model and class, and - when the config detects - scan every text with the snapshot's
detector, escalate, fetch the cached combined route, count metrics) on chat requests of 1 KB, 8 KB, 64 KB and 1 MB
built from the synthetic PII corpus (``tests/benchmarks/pii_corpus.py``, held-out seed), declared ``public``. Two
snapshots of the same route: the example policy without its ``detect`` lists, and with ``pii`` detecting
``us_ssn``, ``email``, ``phone``, ``credit_card``, ``iban`` and ``api_key``. "added" is the p50 of the detecting
snapshot minus the p50 of the plain one; the target (issue 11) is 0.5 ms at 8 KB and linear growth (50 ms at 1 MB).
"scan" is the detector's share (``request_text.scan`` alone; the detector's own benchmark is ``bench_pii.py``),
"escalation" the rest, timed on its own with the findings known: classes, the cached combined route, metrics.

``--scan``: ``python -m llmroute scan -`` fed through a pipe with ``--scan-lines`` small text lines (about 60
bytes) and with 8 KB chat bodies (2,000 lines); lines/s and peak RSS of the scan process.

Writes ``tests/benchmarks/results/escalation.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))

from llmroute.api.llm_route import LLMRoute  # noqa: E402
from llmroute.api.provider_policy import ProviderPolicy  # noqa: E402
from llmroute.core import escalation, request_text  # noqa: E402
from llmroute.core.compile import compile_route  # noqa: E402
from llmroute.router import jsonwire, metrics, proxy  # noqa: E402
from llmroute.router.config_source import Snapshot, build_snapshot  # noqa: E402
from tests.benchmarks import pii_corpus  # noqa: E402
from tests.conftest import example_doc  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "escalation.json"
SIZES = {"1KB": 1 << 10, "8KB": 8 << 10, "64KB": 64 << 10, "1MB": 1 << 20}
DETECT = ["us_ssn", "email", "phone", "credit_card", "iban", "api_key"]
HEADERS = {"x-llmroute-data-class": "public"}


def snapshots() -> tuple[Snapshot, Snapshot]:
    """(plain, detecting) snapshots of the example route: the example policy without any ``detect`` list, and with
    ``pii`` detecting ``DETECT``; nothing else differs."""
    route_doc = example_doc("route")
    route_doc["spec"].setdefault("router", {})["maxRequestBytes"] = 8 << 20
    route = LLMRoute.model_validate(route_doc)
    policy_doc = example_doc("policy")
    for data_class in policy_doc["spec"]["dataClasses"]:  # the example detects: the plain snapshot must not
        data_class.pop("detect", None)
    detecting_doc = copy.deepcopy(policy_doc)
    next(c for c in detecting_doc["spec"]["dataClasses"] if c["name"] == "pii")["detect"] = DETECT
    out = []
    for doc in (policy_doc, detecting_doc):
        config = compile_route(route, ProviderPolicy.model_validate(doc))
        out.append(build_snapshot(config, {p.name: "sk-bench" for p in config.providers}, "bench"))
    return out[0], out[1]


def sized_raw(texts: list[str], size: int, count: int, start: int) -> list[bytes]:
    """``count`` chat request bodies of about ``size`` characters, as the router receives them (bytes)."""
    out, i = [], start
    for _ in range(count):
        messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
        total = 0
        while total < size:
            t = texts[i % len(texts)][: size - total]
            i += 1
            messages.append({"role": "user" if len(messages) % 2 else "assistant", "content": t})
            total += len(t)
        out.append(json.dumps({"model": "deepseek-chat", "messages": messages}).encode())
    return out


def route_times(snapshot: Snapshot, bodies: list[bytes], seconds: float) -> list[float]:
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        for raw in bodies:
            t0 = time.perf_counter()
            with contextlib.suppress(proxy._Refusal):
                proxy._route(snapshot, proxy.Kind.CHAT, raw, HEADERS, 0.0)
            times.append(time.perf_counter() - t0)
    return times


def scan_times(snapshot: Snapshot, bodies: list[bytes], seconds: float) -> list[float]:
    """The detector's share: walking the parsed body and detecting in every text, nothing else."""
    assert snapshot.detector is not None
    parsed = [jsonwire.loads(raw) for raw in bodies]
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        for body in parsed:
            t0 = time.perf_counter()
            request_text.scan(body, snapshot.detector)
            times.append(time.perf_counter() - t0)
    return times


def escalation_times(snapshot: Snapshot, bodies: list[bytes], seconds: float) -> list[float]:
    """Escalation's own share, with the findings already known: classes, the cached combined route, metrics."""
    assert snapshot.detector is not None
    found = [Counter(f.type for _, f in request_text.scan(jsonwire.loads(raw), snapshot.detector)) for raw in bodies]
    entry = snapshot.routes[("deepseek-chat", "public")]
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        for counts in found:
            t0 = time.perf_counter()
            esc = escalation.escalate(entry.data_class, snapshot.detect_rules, counts)
            if esc.escalated:
                snapshot.escalated(entry, esc.classes)
            metrics.detection_done(0.0, counts, esc.pairs)
            times.append(time.perf_counter() - t0)
    return times


def pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3


def bench_route(seconds: float) -> dict[str, Any]:
    plain, detecting = snapshots()
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 2000)
    texts = [p.text for r in records for p in request_text.places(r.body)]
    rows: dict[str, Any] = {}
    for label, size in SIZES.items():
        bodies = sized_raw(texts, size, max(3, min(40, (8 << 20) // size)), start=size % 997)
        escalated = sum(1 for raw in bodies if _classes(detecting, raw) != "public")
        base = route_times(plain, bodies, seconds / 3)
        with_detect = route_times(detecting, bodies, seconds / 3)
        scan_only = scan_times(detecting, bodies, seconds / 3)
        escalation_only = escalation_times(detecting, bodies, 0.2)
        rows[label] = {
            "bytes_p50": int(statistics.median(len(b) for b in bodies)),
            "plain_p50_ms": round(pct(base, 0.5), 4),
            "detect_p50_ms": round(pct(with_detect, 0.5), 4),
            "detect_p99_ms": round(pct(with_detect, 0.99), 4),
            "added_p50_ms": round(pct(with_detect, 0.5) - pct(base, 0.5), 4),
            "scan_p50_ms": round(pct(scan_only, 0.5), 4),
            "escalation_p50_ms": round(pct(escalation_only, 0.5), 4),
            "escalated_share": round(escalated / len(bodies), 2),
            "runs": len(with_detect),
        }
    return rows


def _classes(snapshot: Snapshot, raw: bytes) -> str:
    body = jsonwire.loads(raw)
    entry = snapshot.routes[("deepseek-chat", "public")]
    escalated, _, _ = proxy._escalate(snapshot, entry, body)
    return escalated.class_header


def bench_scan(lines: int) -> dict[str, Any]:
    small = (
        b'{"id":%d,"text":"ticket %d: customer jane%d@example.org asked about order 4471"}\n' % (i, i, i)
        for i in range(lines)
    )
    records = pii_corpus.generate(pii_corpus.HELD_OUT_SEED, 2000)
    texts = [p.text for r in records for p in request_text.places(r.body)]
    big = (b'{"id":%d,' % i + raw[1:] + b"\n" for i, raw in enumerate(sized_raw(texts, 8 << 10, 2000, 0)))
    return {"small_lines": _scan_pipe(small, lines), "8KB_bodies": _scan_pipe(big, 2000)}


def _scan_pipe(lines: Any, count: int) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmroute", "scan", "--quiet", "-"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def feed() -> None:
        assert proc.stdin is not None
        batch: list[bytes] = []
        for line in lines:
            batch.append(line)
            if len(batch) == 1000:
                proc.stdin.write(b"".join(batch))
                batch.clear()
        proc.stdin.write(b"".join(batch))
        proc.stdin.close()

    started = time.perf_counter()
    writer = threading.Thread(target=feed)
    writer.start()
    n, peak_kb = 0, 0
    for _ in proc.stdout:
        n += 1
        if n % max(1, count // 50) == 0:
            peak_kb = max(peak_kb, _peak_rss_kb(proc.pid))
    writer.join()
    proc.wait()
    elapsed = time.perf_counter() - started
    assert n == count, (n, count)
    return {
        "lines": n,
        "seconds": round(elapsed, 2),
        "lines_per_s": round(n / elapsed),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def _peak_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per request size")
    parser.add_argument("--scan", action="store_true", help="also measure llmroute scan throughput")
    parser.add_argument("--scan-lines", type=int, default=1_000_000)
    args = parser.parse_args()
    results: dict[str, Any] = {"route": bench_route(args.seconds)}
    if args.scan:
        results["scan"] = bench_scan(args.scan_lines)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\nrouter routing step, declared public (ms)")
    print(
        f"{'size':>6} {'plain p50':>10} {'detect p50':>11} {'detect p99':>11} {'added p50':>10} "
        f"{'of it scan':>11} {'escalation':>11} {'escalated':>10}"
    )
    for label, r in results["route"].items():
        print(
            f"{label:>6} {r['plain_p50_ms']:>10.3f} {r['detect_p50_ms']:>11.3f} {r['detect_p99_ms']:>11.3f} "
            f"{r['added_p50_ms']:>10.3f} {r['scan_p50_ms']:>11.3f} {r['escalation_p50_ms']:>11.3f} "
            f"{r['escalated_share']:>10.0%}"
        )
    for name, s in results.get("scan", {}).items():
        print(
            f"scan {name}: {s['lines']:,} lines in {s['seconds']} s = {s['lines_per_s']:,} lines/s, "
            f"peak RSS {s['peak_rss_mb']} MB"
        )
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
