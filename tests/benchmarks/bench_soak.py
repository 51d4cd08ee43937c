"""Soak: the router's memory over a long run of requests must stay flat. Run on demand:

    python tests/benchmarks/bench_soak.py [--requests 100000] [--concurrency 32] [--warmup 0.1]

The real router process (``python -m llmroute router``) in front of the cheap benchmark upstream
(:mod:`tests.benchmarks.fast_upstream`, 50-token answers) on loopback. An aiohttp client keeps ``concurrency``
requests in flight: half streamed, half not; one in 50 asks for an unknown model (the 404 path) and one in 50 streams
is dropped by the client after its first bytes (the cancelled-relay path, where leaks hide). The router's RSS
(``VmRSS``) is sampled at 100 points along the run. After the warm-up share of requests, the baseline is the median
of the first five samples past it; the guarantee is that every later sample stays within :data:`TOLERANCE` of it.
Writes ``tests/benchmarks/results/soak.{json,md}`` (with the curve). :func:`soak` is also what the suite's short
version (``tests/router/test_lifecycle_soak.py``) runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results"
TOLERANCE = 0.10
"""Every sample after the warm-up within +-10% of the baseline."""
SAMPLES = 100
CHUNKS = 50
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}
if str(ROOT) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_router import free_port, llmroute_config, process, upstream  # noqa: E402


@dataclass(frozen=True)
class Soak:
    """What one soak measured; ``curve`` is (requests done, RSS MiB) pairs."""

    requests: int
    concurrency: int
    warmup_requests: int
    seconds: float
    requests_per_s: float
    unexpected: int  # requests whose outcome was not the one asked for (200 answer, 404, deliberate drop)
    baseline_mib: float
    min_after_warmup_mib: float
    max_after_warmup_mib: float
    max_deviation_pct: float
    end_deviation_pct: float
    curve: tuple[tuple[int, float], ...]

    @property
    def within(self) -> bool:
        return self.max_deviation_pct <= TOLERANCE * 100

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "curve": [list(p) for p in self.curve],
            "tolerancePct": TOLERANCE * 100,
            "withinTolerance": self.within,
        }


def rss_mib(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def soak(requests: int, concurrency: int = 32, warmup: float = 0.1) -> Soak:
    """Run the router on a fresh upstream for ``requests`` requests and measure its RSS curve."""
    argv, up_port = upstream(CHUNKS, 0)
    with (
        tempfile.TemporaryDirectory(prefix="llmroute-soak-") as tmp,
        process(argv, f"http://127.0.0.1:{up_port}/v1/models"),
    ):
        port = free_port()
        config = llmroute_config(Path(tmp), up_port)
        router_argv = [
            sys.executable,
            "-m",
            "llmroute",
            "router",
            "--listen",
            f"127.0.0.1:{port}",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ]
        with process(router_argv, f"http://127.0.0.1:{port}/readyz", env={"PYTHONPATH": str(ROOT / "operator")}) as p:
            return asyncio.run(
                _drive(f"http://127.0.0.1:{port}/v1/chat/completions", p.pid, requests, concurrency, warmup)
            )


async def _drive(url: str, pid: int, requests: int, concurrency: int, warmup: float) -> Soak:
    every = max(1, requests // SAMPLES)
    curve: list[tuple[int, float]] = [(0, rss_mib(pid))]
    done = 0
    unexpected = 0
    issued = 0
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done, unexpected, issued
            while issued < requests:
                i = issued
                issued += 1
                unexpected += not await _one(session, url, i)
                done += 1
                if done % every == 0:
                    curve.append((done, rss_mib(pid)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.monotonic() - started
    return summarise(curve, requests, concurrency, int(requests * warmup), seconds, unexpected)


async def _one(session: aiohttp.ClientSession, url: str, i: int) -> bool:
    """Request ``i`` of the mix; True when it ended as asked."""
    stream = i % 2 == 0
    body = {**BODY, "stream": stream}
    if i % 50 == 1:
        body["model"] = "no-such-model"
    async with session.post(url, json=body) as resp:
        if body["model"] != BODY["model"]:
            await resp.read()
            return resp.status == 404
        if stream and i % 50 == 0:
            await resp.content.readany()  # the client leaves mid-stream: the router must let go of the relay
            resp.close()
            return resp.status == 200
        data = await resp.read()
        return resp.status == 200 and (b"[DONE]" in data if stream else b'"finish_reason":"stop"' in data)


def summarise(
    curve: list[tuple[int, float]],
    requests: int,
    concurrency: int,
    warmup_requests: int,
    seconds: float,
    unexpected: int,
) -> Soak:
    """Baseline: the median of the first five samples at or past the warm-up; deviations of every later sample."""
    after = [(n, r) for n, r in curve if n >= warmup_requests]
    baseline = statistics.median(r for _, r in after[:5])
    rss = [r for _, r in after]
    return Soak(
        requests=requests,
        concurrency=concurrency,
        warmup_requests=warmup_requests,
        seconds=round(seconds, 2),
        requests_per_s=round(requests / seconds, 1),
        unexpected=unexpected,
        baseline_mib=round(baseline, 2),
        min_after_warmup_mib=round(min(rss), 2),
        max_after_warmup_mib=round(max(rss), 2),
        max_deviation_pct=round(max(abs(r - baseline) for r in rss) / baseline * 100, 2),
        end_deviation_pct=round((rss[-1] - baseline) / baseline * 100, 2),
        curve=tuple((n, round(r, 2)) for n, r in curve),
    )


def table(s: Soak) -> str:
    """soak.md: the figures and the RSS curve (a sparkline and every tenth sample)."""
    lo, hi = min(r for _, r in s.curve), max(r for _, r in s.curve)
    bars = "▁▂▃▄▅▆▇█"
    spark = "".join(bars[min(7, int((r - lo) / (hi - lo or 1) * 8))] for _, r in s.curve)
    rows = "\n".join(f"| {n:,} | {r:.1f} |" for n, r in s.curve[:: max(1, len(s.curve) // 10)])
    return f"""# Router soak

`python tests/benchmarks/bench_soak.py --requests {s.requests}`: the real router in front of
`fast_upstream.py` ({CHUNKS}-token answers), {s.concurrency} requests in flight, half streamed, 2% unknown models,
1% of the streams dropped by the client after the first bytes.

| figure | value |
|---|---|
| requests | {s.requests:,} in {s.seconds:.0f} s ({s.requests_per_s:,.0f}/s) |
| unexpected outcomes | {s.unexpected} |
| warm-up | first {s.warmup_requests:,} requests |
| RSS baseline (after warm-up) | {s.baseline_mib:.1f} MiB |
| RSS after warm-up, min / max | {s.min_after_warmup_mib:.1f} / {s.max_after_warmup_mib:.1f} MiB |
| largest deviation from the baseline | {s.max_deviation_pct:+.2f}% (limit ±{TOLERANCE * 100:.0f}%) |
| at the end | {s.end_deviation_pct:+.2f}% |
| within the limit | {"yes" if s.within else "**no**"} |

RSS over the run ({lo:.1f}-{hi:.1f} MiB): `{spark}`

| requests done | RSS MiB |
|---|---|
{rows}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=0.1, help="share of requests before the baseline")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = soak(args.requests, args.concurrency, args.warmup)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    (args.out / "soak.md").write_text(table(result))
    print(table(result))
    sys.exit(0 if result.within and result.unexpected == 0 else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
