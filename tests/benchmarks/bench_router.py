"""Router overhead benchmark, side by side with LiteLLM's proxy and nginx (the one-hop floor). Run on demand:

    python tests/benchmarks/bench_router.py [--duration 4] [--litellm PATH/TO/litellm | --skip-litellm] [--skip-nginx]

Everything runs on loopback and stops by itself. For each target (direct upstream, llmroute, the floor: the same
server and upstream client as llmroute with no logic at all (``floor_proxy.py``), LiteLLM, nginx) and
each answer length (1, 50 and 500 tokens: one upstream per length), non-streaming and streaming: added latency at
c=1 (p50/p99, wrk), the proxy process's CPU per request at c=1, throughput at c=64 (wrk); from those, the proxy's
CPU per token ((500-token CPU - 1-token CPU) / 499). Then peak RSS, time to the first data event and to the end of
a 100-chunk stream (aiohttp client, sequential, interleaved with the direct upstream so the added time is measured
pairwise), and how many of the upstream's ``: keep-alive`` comments reach the client. Writes
``tests/benchmarks/results/router.{json,md}``.

Needs ``wrk`` (and ``nginx`` unless --skip-nginx) from Debian. LiteLLM runs from its own venv, which the benchmark
creates on first use (``--litellm-venv``, default /tmp/litellm-venv: ``pip install 'litellm[proxy]==VERSION'``),
unless --litellm names an installed ``litellm`` or --skip-litellm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parents[1]))

from tests.loopback import free_port  # noqa: E402

BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = {**BODY, "stream": True}
SIZES = (1, 50, 500)
"""Answer lengths in tokens (content chunks of the upstream's stream)."""
MODES = ("json", "stream")
LITELLM_VERSION = "1.106.2"
CLIENT_KEY = "sk-llmroute-bench-7f3a9c2e5b1d4a6f8e0c9b7a5d3f1e2c"
"""The client's key: LiteLLM needs it as its master key; llmroute and nginx ignore it (never forwarded)."""


def wait_http(url: str, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


@contextlib.contextmanager
def process(argv: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(ready_url)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def upstream(chunks: int, keepalives: int) -> tuple[list[str], int]:
    port = free_port()
    return [sys.executable, str(HERE / "fast_upstream.py"), str(port), str(chunks), str(keepalives)], port


def llmroute_config(tmp: Path, upstream_port: int) -> Path:
    folder = tmp / "llmroute"
    folder.mkdir(parents=True)
    policy = {"apiVersion": "llmroute.io/v1alpha1", "kind": "ProviderPolicy", "metadata": {"name": "bench"},
              "spec": {"defaultDataClass": "public", "dataClasses": [{"name": "public"}], "providers": [
                  {"name": "up", "endpoint": f"http://127.0.0.1:{upstream_port}/v1", "jurisdiction": "US",
                   "credentials": {"secretRef": {"name": "keys", "key": "up"}}}]}}
    route = {"apiVersion": "llmroute.io/v1alpha1", "kind": "LLMRoute", "metadata": {"name": "bench"},
             "spec": {"policyRef": {"name": "bench"},
                      "models": [{"name": "bench-model", "backends": [{"provider": "up", "model": "bench-model"}]}]}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "stringData": {"up": "bench-key"}}
    (folder / "all.yaml").write_text(yaml.safe_dump_all([policy, route, secret]))
    return folder


def litellm_config(tmp: Path, upstream_port: int) -> Path:
    tmp.mkdir(parents=True)
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump({"model_list": [{"model_name": "bench-model", "litellm_params": {
        "model": "openai/bench-model", "api_base": f"http://127.0.0.1:{upstream_port}/v1", "api_key": "bench-key"}}]}))
    return path


def nginx_config(tmp: Path, upstream_port: int, port: int) -> Path:
    tmp.mkdir(parents=True)
    path = tmp / "nginx.conf"
    path.write_text(f"""
worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp};
  scgi_temp_path {tmp};
  upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; }} }}
}}
""")
    return path


def wrk(url: str, connections: int, duration: int, tmp: Path, body: dict[str, Any] = BODY) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {CLIENT_KEY}"\n'
                      f"wrk.body = '{json.dumps(body)}'\n")
    threads = 1 if connections == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
                          url], capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    total = re.search(r"(\d+) requests in", out)
    result["requests"] = float(total.group(1)) if total else 0.0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{pct}_ms"] = float(m.group(1)) * scale
    return result


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def tree_pids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *[q for p in out for q in tree_pids(int(p))]]


async def stream_timings(urls: list[str], n: int) -> list[dict[str, float]]:
    """Sequential streamed requests, interleaved over ``urls`` (the direct upstream first), so each target and the
    direct baseline are timed under the same machine state: the "added" figures are pairwise."""
    first: list[list[float]] = [[] for _ in urls]
    total: list[list[float]] = [[] for _ in urls]
    keepalives = [0 for _ in urls]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as session:
        for _ in range(n):
            for i, url in enumerate(urls):
                start = time.perf_counter()
                async with session.post(url, json=STREAM_BODY) as resp:
                    got_first = False
                    async for line in resp.content:
                        if not got_first and line.startswith(b"data: "):
                            first[i].append(time.perf_counter() - start)
                            got_first = True
                        if line.startswith(b": keep-alive"):
                            keepalives[i] += 1
                total[i].append(time.perf_counter() - start)
    return [{"first_data_ms_p50": statistics.median(f) * 1000, "total_ms_p50": statistics.median(t) * 1000,
             "keepalives_per_request": k / n} for f, t, k in zip(first, total, keepalives, strict=True)]


def measure(name: str, bases: dict[int, str], stream_base: str, pids: dict[int, int], args: argparse.Namespace,
            tmp: Path, direct_stream: str | None = None) -> dict[str, Any]:
    """``bases``: the target's URL per answer length; ``pids``: its process per answer length (none: direct)."""
    out: dict[str, Any] = {}
    for size in SIZES:
        url = bases[size] + "/v1/chat/completions"
        procs = tree_pids(pids[size]) if size in pids else []
        for mode in MODES:
            body = STREAM_BODY if mode == "stream" else BODY
            print(f"[{name}] {size} tokens, {mode}: c=1, c=64 ...", flush=True)
            before = sum(cpu_seconds(p) for p in procs)
            c1 = wrk(url, 1, args.duration, tmp, body)
            middle = sum(cpu_seconds(p) for p in procs)
            c64 = wrk(url, 64, args.duration, tmp, body)
            after = sum(cpu_seconds(p) for p in procs)
            row: dict[str, Any] = {"c1": c1, "c64": c64}
            if procs:
                row["cpu_ms_per_request"] = (middle - before) * 1000 / max(c1["requests"], 1)
                row["cpu_ms_per_request_c64"] = (after - middle) * 1000 / max(c64["requests"], 1)
            out[f"{size}/{mode}"] = row
    if pids:
        for mode in MODES:
            big, small = out[f"{SIZES[-1]}/{mode}"], out[f"{SIZES[0]}/{mode}"]
            out[f"cpu_us_per_token/{mode}"] = ((big["cpu_ms_per_request"] - small["cpu_ms_per_request"]) * 1000
                                               / (SIZES[-1] - SIZES[0]))
        out["peak_rss_mb"] = max(sum(peak_rss_mb(p) for p in tree_pids(pid)) for pid in pids.values())
    print(f"[{name}] stream timings ...", flush=True)
    path = "/v1/chat/completions"
    urls = [stream_base + path] if direct_stream is None else [direct_stream + path, stream_base + path]
    timings = asyncio.run(stream_timings(urls, args.stream_requests))
    out["stream"] = {**timings[-1], "direct_first_data_ms_p50": timings[0]["first_data_ms_p50"],
                     "direct_total_ms_p50": timings[0]["total_ms_p50"]}
    return out


def litellm_binary(args: argparse.Namespace) -> str | None:
    """The ``litellm`` to run: --litellm, else the one in --litellm-venv (created and installed on first use)."""
    if args.skip_litellm:
        return None
    if args.litellm:
        return str(args.litellm)
    venv = Path(args.litellm_venv)
    binary = venv / "bin" / "litellm"
    if not binary.exists():
        print(f"creating LiteLLM's venv in {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    return str(binary)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--stream-requests", type=int, default=200)
    ap.add_argument("--litellm", default=None, help="an installed litellm binary (default: the venv's)")
    ap.add_argument("--litellm-venv", default="/tmp/litellm-venv")
    ap.add_argument("--skip-litellm", action="store_true")
    ap.add_argument("--skip-nginx", action="store_true")
    ap.add_argument("--only", nargs="*", default=None,
                    help="targets to run besides direct (llmroute floor litellm nginx)")
    args = ap.parse_args()
    args.litellm = litellm_binary(args)
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
                               "duration_s": args.duration}
    with tempfile.TemporaryDirectory() as t, contextlib.ExitStack() as stack:
        tmp = Path(t)
        ups: dict[int, int] = {}
        for size in SIZES:
            argv, ups[size] = upstream(size, 0)
            stack.enter_context(process(argv, f"http://127.0.0.1:{ups[size]}/v1/models"))
        st_argv, st_port = upstream(100, 5)
        stack.enter_context(process(st_argv, f"http://127.0.0.1:{st_port}/v1/models"))
        results["direct"] = measure("direct", {n: f"http://127.0.0.1:{p}" for n, p in ups.items()},
                                    f"http://127.0.0.1:{st_port}", {}, args, tmp)
        for name, spec in targets(args, tmp):
            with _fleet(spec, {**ups, 0: st_port}) as (bases, pids):
                stream_base = bases.pop(0)
                pids.pop(0)
                results[name] = measure(name, bases, stream_base, pids, args, tmp,
                                        direct_stream=f"http://127.0.0.1:{st_port}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "router.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "router.md").write_text(table(results))
    print(table(results))


def targets(args: argparse.Namespace, tmp: Path) -> list[tuple[str, Any]]:
    def llmroute(u: int, p: int) -> tuple[list[str], str, dict[str, str]]:
        return ([sys.executable, "-m", "llmroute", "router", "--listen", f"127.0.0.1:{p}",
                 "--config", str(llmroute_config(tmp / f"r{p}", u)), "--log-level", "warning"],
                f"http://127.0.0.1:{p}/readyz", {})

    def litellm(u: int, p: int) -> tuple[list[str], str, dict[str, str]]:
        return ([args.litellm, "--config", str(litellm_config(tmp / f"l{p}", u)), "--port", str(p),
                 "--num_workers", "1"], f"http://127.0.0.1:{p}/health/liveliness",
                {"LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": CLIENT_KEY})

    def floor(u: int, p: int) -> tuple[list[str], str, dict[str, str]]:
        return ([sys.executable, str(HERE / "floor_proxy.py"), str(p), str(u)], f"http://127.0.0.1:{p}/v1/models", {})

    def nginx(u: int, p: int) -> tuple[list[str], str, dict[str, str]]:
        return (["nginx", "-p", str(tmp), "-c", str(nginx_config(tmp / f"n{p}", u, p)), "-g", "daemon off;"],
                f"http://127.0.0.1:{p}/v1/models", {})

    out: list[tuple[str, Any]] = [("llmroute", llmroute), ("floor", floor)]
    if args.litellm:
        out.append(("litellm", litellm))
    if not args.skip_nginx and shutil.which("nginx"):
        out.append(("nginx", nginx))
    return [t for t in out if args.only is None or t[0] in args.only]


@contextlib.contextmanager
def _fleet(spec: Any, ups: dict[int, int]) -> Iterator[tuple[dict[int, str], dict[int, int]]]:
    """One proxy process per upstream (key: answer length; 0: the stream-timing upstream)."""
    with contextlib.ExitStack() as stack:
        bases, pids = {}, {}
        for key, up in ups.items():
            port = free_port()
            argv, ready, env = spec(up, port)
            pids[key] = stack.enter_context(process(argv, ready, env)).pid
            bases[key] = f"http://127.0.0.1:{port}"
        yield bases, pids


def table(r: dict[str, Any]) -> str:
    """The results as Markdown tables; stream figures are added to the direct baseline timed alongside."""
    direct = r["direct"]
    names = [n for n in ("direct", "llmroute", "floor", "litellm", "nginx") if n in r]
    rows = ["| target | answer | added p50 c=1 (ms) | added p99 c=1 (ms) | CPU ms/req c=1 | rps c=64 |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in names:
        for size in SIZES:
            for mode in MODES:
                x, d = r[name][f"{size}/{mode}"], direct[f"{size}/{mode}"]
                rows.append(f"| {name} | {size} tokens, {'streaming' if mode == 'stream' else 'non-streaming'}"
                            f" | {x['c1']['p50_ms'] - d['c1']['p50_ms']:.3f}"
                            f" | {x['c1']['p99_ms'] - d['c1']['p99_ms']:.3f}"
                            f" | {x.get('cpu_ms_per_request', float('nan')):.3f} | {x['c64']['rps']:.0f} |")
    rows += ["", "| target | CPU µs/token non-streaming | CPU µs/token streaming | peak RSS MB | "
             "added to first streamed data p50 (ms) | added to stream total p50 (ms) | keep-alives passed |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        x, st = r[name], r[name]["stream"]
        first = st["first_data_ms_p50"] - st.get("direct_first_data_ms_p50", st["first_data_ms_p50"])
        total = st["total_ms_p50"] - st.get("direct_total_ms_p50", st["total_ms_p50"])
        rows.append(f"| {name} | {x.get('cpu_us_per_token/json', float('nan')):.2f}"
                    f" | {x.get('cpu_us_per_token/stream', float('nan')):.2f}"
                    f" | {x.get('peak_rss_mb', float('nan')):.0f} | {first:.3f} | {total:.3f}"
                    f" | {st['keepalives_per_request']:.1f}/5 |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
