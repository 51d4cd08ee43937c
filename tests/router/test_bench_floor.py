"""The router benchmark's floor proxy (``tests/benchmarks/floor_proxy.py``) is a fair floor: it relays a request
and its answer as they came, streamed and not, through the router's own server stack and upstream client - so
what llmroute adds over it in ``bench_router`` is llmroute's logic and nothing else."""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest

from tests.benchmarks.bench_router import process, upstream
from tests.benchmarks.fast_upstream import _bodies
from tests.loopback import free_port

pytestmark = pytest.mark.unit

HERE = "tests/benchmarks"


def _post(port: int, body: dict[str, object]) -> tuple[int, str, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read()


def test_the_floor_relays_answers_byte_for_byte() -> None:
    argv, up = upstream(7, 0)
    port = free_port()
    with process(argv, f"http://127.0.0.1:{up}/v1/models"), \
            process([sys.executable, f"{HERE}/floor_proxy.py", str(port), str(up)], f"http://127.0.0.1:{port}/v1/models"):
        whole, stream = _bodies(7, 0)
        status, content_type, got = _post(port, {"model": "bench-model", "messages": []})
        assert (status, content_type, got) == (200, "application/json", whole)
        status, content_type, got = _post(port, {"model": "bench-model", "messages": [], "stream": True})
        assert (status, got) == (200, stream) and content_type.startswith("text/event-stream")
