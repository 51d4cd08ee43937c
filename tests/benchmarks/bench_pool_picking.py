"""Pod picking benchmark: time to first token through the router, load-aware picking against round-robin, on a
ModelPool whose pods are unevenly loaded. Run on demand (about 50 s):

    python tests/benchmarks/bench_pool_picking.py [--duration 8] [--rate 12] [--seed 1]

Three emulated vLLM pods (:class:`llmroute.emulator.vllm.VllmPod`, ``max_num_seqs`` 4, 50 ms prefill, 20 ms per
token, 16 tokens) on loopback; the real router process discovers them through ``LLMROUTE_POOL_ENDPOINTS_FILE``.
Two scenarios of uneven load, each run once with ``LLMROUTE_POD_PICKING=round-robin`` and once with the default
load-aware picking, with the same seeded open-loop (Poisson) arrivals of streaming chat requests (official openai
SDK, ``max_retries=0``):

* ``slow-engine``: the third pod is 5x slower per token and 4x slower to prefill (a smaller GPU, a long-context
  neighbour): its capacity is about a quarter of the others'.
* ``busy-queue``: the third pod also serves 6 concurrent requests sent to it directly (another router's traffic,
  invisible to this router's in-flight counts): 4 running and 2 waiting all the time.

Time to first token is measured at the client, from sending the request to the first content delta. Writes
``tests/benchmarks/results/pool_picking.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import yaml

from llmroute.emulator.vllm import EngineParams, VllmConfig, VllmPod

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.loopback import free_port  # noqa: E402

POOL = "bench/gpu"
MODEL = "Qwen/Qwen3-8B"
TOKENS = 16
FAST = {"max_num_seqs": 4, "prefill_s": 0.05, "token_interval_s": 0.02}
SCENARIOS: dict[str, dict[str, Any]] = {
    "slow-engine": {"third": {**FAST, "prefill_s": 0.2, "token_interval_s": 0.1}, "background": 0},
    "busy-queue": {"third": FAST, "background": 6},
}
MODES = ("round-robin", "load-aware")


def config_docs() -> list[dict[str, Any]]:
    policy = {"apiVersion": "llmroute.io/v1alpha1", "kind": "ProviderPolicy", "metadata": {"name": "bench"},
              "spec": {"defaultDataClass": "internal",
                       "providers": [{"name": "gpu", "pool": {"name": "gpu", "namespace": "bench"},
                                      "jurisdiction": "US"}],
                       "dataClasses": [{"name": "internal"}]}}
    route = {"apiVersion": "llmroute.io/v1alpha1", "kind": "LLMRoute", "metadata": {"name": "bench", "namespace": "b"},
             "spec": {"policyRef": {"name": "bench"},
                      "models": [{"name": "chat", "backends": [{"provider": "gpu", "model": MODEL}]}],
                      "failover": {"maxAttempts": 1, "timeToFirstToken": "60s", "idleTimeout": "60s",
                                   "totalTimeout": "120s"}}}
    return [policy, route]


@contextlib.contextmanager
def router(folder: Path, mode: str) -> Iterator[str]:
    port = free_port()
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump_all(config_docs(), sort_keys=False), encoding="utf-8")
    env = {**os.environ, "LLMROUTE_POOL_ENDPOINTS_FILE": str(folder / "endpoints.json"),
           "LLMROUTE_POD_PICKING": "round-robin" if mode == "round-robin" else "load"}
    log = (folder / f"router-{mode}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "llmroute", "router", "--listen", f"127.0.0.1:{port}",
                             "--config", str(config), "--log-level", "warning"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        return str(resp.read().decode())


async def wait_ready_pods(url: str, count: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    wanted = f'llmroute_pool_ready_pods{{pool="{POOL}"}} {float(count)}'
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if wanted in await asyncio.to_thread(metrics, url):
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the router did not see {count} ready pods in {timeout_s}s")


async def one_request(client: openai.AsyncOpenAI, at: float, out: list[float], errors: list[str]) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, at - loop.time()))
    started = loop.time()
    ttft: float | None = None
    try:
        stream = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                                      stream=True, max_tokens=TOKENS)
        async for chunk in stream:
            if ttft is None and chunk.choices and chunk.choices[0].delta.content:
                ttft = loop.time() - started
    except openai.APIError as exc:
        errors.append(type(exc).__name__)
        return
    if ttft is not None:
        out.append(ttft)


async def background(pod: VllmPod, concurrency: int, stop: asyncio.Event) -> None:
    """Another router's traffic on ``pod``: ``concurrency`` clients in a closed loop."""
    async with openai.AsyncOpenAI(base_url=pod.url, api_key="unused", max_retries=0) as direct:
        async def loop_() -> None:
            while not stop.is_set():
                with contextlib.suppress(openai.APIError):
                    await direct.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                                         max_tokens=TOKENS)
        await asyncio.gather(*(loop_() for _ in range(concurrency)))


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(scenario: str, mode: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    spec = SCENARIOS[scenario]
    pods = [VllmPod(VllmConfig(answer_tokens=TOKENS), EngineParams(**FAST)) for _ in range(2)]
    pods.append(VllmPod(VllmConfig(answer_tokens=TOKENS), EngineParams(**spec["third"])))
    for pod in pods:
        await pod.start()
        await pod.wait_ready()
    (folder / "endpoints.json").write_text(json.dumps({POOL: [p.base_url for p in pods]}), encoding="utf-8")
    stop = asyncio.Event()
    noise = asyncio.create_task(background(pods[2], spec["background"], stop)) if spec["background"] else None
    rng = random.Random(args.seed)
    try:
        with router(folder, mode) as url:
            await wait_ready_pods(url, len(pods))
            await asyncio.sleep(0.5)  # the background queue settles; the scraper has fresh numbers
            before = [p.state.requests["/v1/chat/completions"] for p in pods]
            loop = asyncio.get_running_loop()
            at, arrivals = loop.time() + 0.2, []
            while at < loop.time() + 0.2 + args.duration:
                arrivals.append(at)
                at += rng.expovariate(args.rate)
            ttfts: list[float] = []
            errors: list[str] = []
            async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                                          timeout=120) as client:
                await asyncio.gather(*(one_request(client, a, ttfts, errors) for a in arrivals))
            picks = re.findall(r'llmroute_pool_picks_total\{basis="(\w+)",pool="[^"]+"\} (\S+)', metrics(url))
    finally:
        stop.set()
        if noise is not None:
            await noise
        for pod in pods:
            await pod.close()
    served = [p.state.requests["/v1/chat/completions"] - b for p, b in zip(pods, before, strict=True)]
    if spec["background"]:
        served[2] = -1  # includes the background traffic: not comparable
    return {"scenario": scenario, "mode": mode, "requests": len(arrivals), "errors": len(errors),
            "ttft_p50_s": quantile(ttfts, 0.5), "ttft_p95_s": quantile(ttfts, 0.95),
            "ttft_p99_s": quantile(ttfts, 0.99), "ttft_mean_s": statistics.fmean(ttfts) if ttfts else float("nan"),
            "served_per_pod": served, "picks": {basis: float(n) for basis, n in picks if float(n)}}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| scenario | picking | requests | errors | TTFT p50 (ms) | TTFT p95 (ms) | TTFT p99 (ms) | "
             "to the third pod |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        third = r["served_per_pod"][2]
        share = f"{third / r['requests']:.0%}" if third >= 0 else "(mixed with its own load)"
        lines.append(f"| {r['scenario']} | {r['mode']} | {r['requests']} | {r['errors']} | "
                     f"{r['ttft_p50_s'] * 1000:.0f} | {r['ttft_p95_s'] * 1000:.0f} | {r['ttft_p99_s'] * 1000:.0f} | "
                     f"{share} |")
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="llmroute-bench-pools-") as tmp:
        for scenario in SCENARIOS:
            for mode in MODES:
                row = await run(scenario, mode, args, Path(tmp))
                print(f"{scenario:12} {mode:12} p50 {row['ttft_p50_s'] * 1000:7.0f} ms  "
                      f"p95 {row['ttft_p95_s'] * 1000:7.0f} ms  errors {row['errors']}", flush=True)
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of arrivals per run")
    parser.add_argument("--rate", type=float, default=12.0, help="requests per second (Poisson)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    rows = asyncio.run(main_async(args))
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
              "settings": {"duration_s": args.duration, "rate_per_s": args.rate, "seed": args.seed,
                           "pods": 3, "fast_pod": FAST, "tokens": TOKENS,
                           "scenarios": SCENARIOS}, "runs": rows, "wall_s": round(time.monotonic() - started, 1)}
    (RESULTS / "pool_picking.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
