"""Router overhead benchmark, side by side with LiteLLM's proxy and nginx (the one-hop floor). Run on demand:

    python tests/benchmarks/bench_router.py [--duration 10] [--litellm PATH/TO/litellm] [--skip-nginx]

Everything runs on loopback and stops by itself. Measures, for each target (direct upstream, llmroute, LiteLLM,
nginx): added latency at c=1 (p50/p99, wrk), throughput at c=64 (wrk), CPU seconds per request and peak RSS of the
proxy process, time to the first data event and to the end of a 100-chunk stream (aiohttp client, sequential,
interleaved with the direct upstream so the added time is measured pairwise), and how many of the upstream's
``: keep-alive`` comments reach the client. Writes ``tests/benchmarks/results/router.{json,md}``.

Needs ``wrk`` (and ``nginx`` unless --skip-nginx) from Debian; LiteLLM in its own venv
(``python3 -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]'``), given with --litellm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
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
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = {**BODY, "stream": True}
CLIENT_KEY = "sk-llmroute-bench-7f3a9c2e5b1d4a6f8e0c9b7a5d3f1e2c"
"""The client's key: LiteLLM needs it as its master key; llmroute and nginx ignore it (never forwarded)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def wrk(url: str, connections: int, duration: int, tmp: Path) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {CLIENT_KEY}"\n'
                      f"wrk.body = '{json.dumps(BODY)}'\n")
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


def measure(name: str, base: str, stream_base: str, pid: int | None, args: argparse.Namespace,
            tmp: Path, direct_stream: str | None = None) -> dict[str, Any]:
    print(f"[{name}] c=1 ...", flush=True)
    c1 = wrk(base + "/v1/chat/completions", 1, args.duration, tmp)
    pids = tree_pids(pid) if pid else []
    cpu_before = sum(cpu_seconds(p) for p in pids)
    print(f"[{name}] c=64 ...", flush=True)
    c64 = wrk(base + "/v1/chat/completions", 64, args.duration, tmp)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    print(f"[{name}] stream ...", flush=True)
    path = "/v1/chat/completions"
    urls = [stream_base + path] if direct_stream is None else [direct_stream + path, stream_base + path]
    timings = asyncio.run(stream_timings(urls, args.stream_requests))
    stream = {**timings[-1], "direct_first_data_ms_p50": timings[0]["first_data_ms_p50"],
              "direct_total_ms_p50": timings[0]["total_ms_p50"]}
    out: dict[str, Any] = {"c1": c1, "c64": c64, "stream": stream}
    if pids:
        out["cpu_ms_per_request"] = cpu * 1000 / max(c64["requests"], 1)
        out["peak_rss_mb"] = sum(peak_rss_mb(p) for p in pids)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--stream-requests", type=int, default=200)
    ap.add_argument("--litellm", default=shutil.which("litellm"))
    ap.add_argument("--skip-nginx", action="store_true")
    args = ap.parse_args()
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        up_argv, up_port = upstream(8, 0)
        st_argv, st_port = upstream(100, 5)
        with process(up_argv, f"http://127.0.0.1:{up_port}/v1/models"), \
                process(st_argv, f"http://127.0.0.1:{st_port}/v1/models"):
            results["direct"] = measure("direct", f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{st_port}", None,
                                        args, tmp)
            for name, make in targets(args, tmp, up_port, st_port):
                with make() as (base, stream_base, pid):
                    results[name] = measure(name, base, stream_base, pid, args, tmp,
                                            direct_stream=f"http://127.0.0.1:{st_port}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "router.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "router.md").write_text(table(results))
    print(table(results))


def targets(args: argparse.Namespace, tmp: Path, up: int, st: int) -> list[tuple[str, Any]]:
    def llmroute() -> Any:
        return _pair(lambda u, p: ([sys.executable, "-m", "llmroute", "router", "--listen", f"127.0.0.1:{p}",
                                    "--config", str(llmroute_config(tmp / f"r{p}", u)), "--log-level", "warning"],
                                   f"http://127.0.0.1:{p}/readyz", {}), up, st, tmp)

    def litellm() -> Any:
        return _pair(lambda u, p: ([args.litellm, "--config", str(litellm_config(tmp / f"l{p}", u)), "--port", str(p),
                                    "--num_workers", "1"], f"http://127.0.0.1:{p}/health/liveliness",
                                   {"LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": CLIENT_KEY}), up, st, tmp)

    def nginx() -> Any:
        return _pair(lambda u, p: (["nginx", "-p", str(tmp), "-c", str(nginx_config(tmp / f"n{p}", u, p)), "-g",
                                    "daemon off;"], f"http://127.0.0.1:{p}/v1/models", {}), up, st, tmp)

    out: list[tuple[str, Any]] = [("llmroute", llmroute)]
    if args.litellm:
        out.append(("litellm", litellm))
    if not args.skip_nginx and shutil.which("nginx"):
        out.append(("nginx", nginx))
    return out


@contextlib.contextmanager
def _pair(spec: Any, up: int, st: int, tmp: Path) -> Iterator[tuple[str, str, int]]:
    p1, p2 = free_port(), free_port()
    argv1, ready1, env1 = spec(up, p1)
    argv2, ready2, env2 = spec(st, p2)
    with process(argv1, ready1, env1) as proc, process(argv2, ready2, env2):
        yield f"http://127.0.0.1:{p1}", f"http://127.0.0.1:{p2}", proc.pid


def table(r: dict[str, Any]) -> str:
    """The results as a Markdown table; stream figures are added to the direct baseline timed alongside."""
    direct = r["direct"]
    rows = ["| target | added p50 c=1 (ms) | added p99 c=1 (ms) | rps c=64 | CPU ms/req | peak RSS MB | "
            "added to first streamed data p50 (ms) | added to stream total p50 (ms) | keep-alives passed |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("direct", "llmroute", "litellm", "nginx"):
        if name not in r:
            continue
        x, st = r[name], r[name]["stream"]
        added_p50 = x["c1"]["p50_ms"] - direct["c1"]["p50_ms"]
        added_p99 = x["c1"]["p99_ms"] - direct["c1"]["p99_ms"]
        first = st["first_data_ms_p50"] - st.get("direct_first_data_ms_p50", st["first_data_ms_p50"])
        total = st["total_ms_p50"] - st.get("direct_total_ms_p50", st["total_ms_p50"])
        rows.append(
            f"| {name} | {added_p50:.3f} | {added_p99:.3f}"
            f" | {x['c64']['rps']:.0f} | {x.get('cpu_ms_per_request', float('nan')):.3f}"
            f" | {x.get('peak_rss_mb', float('nan')):.0f} | {first:.3f} | {total:.3f}"
            f" | {st['keepalives_per_request']:.1f}/5 |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
