"""The router's HTTP surface under hostile input and slow clients, over raw sockets against the real router process.

Aspects: malformed, truncated and deeply nested JSON, wrong types and invalid UTF-8 (body, path, headers) get a 4xx
in OpenAI's error shape; so do huge bodies (413, declared or chunked), heads (431: total size, header count) and
URLs (414); odd methods (TRACE, CONNECT, PROPFIND) and paths (``/../``, ``//``, ``*``; absolute-form URIs are
served by path and never steer the upstream); request smuggling shapes (Content-Length with Transfer-Encoding, two
Content-Lengths, bad chunk sizes, obs-fold, bare LF, NUL) are refused and the connection is closed, so nothing is
left to desynchronise. No malformed input reaches an upstream (the emulators count what arrives) and the bytes that
broke a rule are neither echoed nor logged. Slow clients: 100 half heads are all closed by the head deadline while
an openai SDK client keeps its latency, a slow body gets a 408, an idle keep-alive connection is closed, and past
the connection cap the connection waiting longest for a request head is closed to admit a new one (100 half heads
against a cap of 50 do not lock an openai SDK client out; of idle keep-alive connections the one idle longest goes),
and only when every open connection is busy does a new one get a 503 while the busy ones are still served. After the
storm the process is alive and its memory is back within :data:`RSS_MARGIN_MB` of where it started. Every refusal
and deadline moves ``llmroute_client_rejections_total`` by one, under its reason, and nothing else moves it;
``llmroute_client_connections`` follows the open connections.
Figures go to ``hostile-input`` (:mod:`tests.figures`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import selectors
import socket
import statistics
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmroute.router.limits import EVICT_IDLE_MIN_S
from tests.figures import record

from .conftest import KEYS, MESSAGES, Hub, RouterProcess, config_docs, make_aclient, write_config
from .test_streaming import counter

pytestmark = pytest.mark.router

HEAD_TIMEOUT_S = 1.5
BODY_TIMEOUT_S = 2.0
IDLE_TIMEOUT_S = 4.0
MAX_HEAD_BYTES = 16384
MAX_HEADERS = 50
MAX_URL_BYTES = 2048
MAX_BODY = 65536  # the route's maxRequestBytes (conftest.route_doc)
LIMITS_ENV = {
    "LLMROUTE_HEAD_TIMEOUT": str(HEAD_TIMEOUT_S),
    "LLMROUTE_BODY_TIMEOUT": str(BODY_TIMEOUT_S),
    "LLMROUTE_IDLE_TIMEOUT": str(IDLE_TIMEOUT_S),
    "LLMROUTE_MAX_HEAD_BYTES": str(MAX_HEAD_BYTES),
    "LLMROUTE_MAX_HEADERS": str(MAX_HEADERS),
    "LLMROUTE_MAX_URL_BYTES": str(MAX_URL_BYTES),
}
SLOP_S = 1.0
"""How late past a deadline a connection may still be closed (timer granularity, a shared 2-core machine)."""
RSS_MARGIN_MB = 12.0
"""How far above its starting RSS the router may stay after a storm (the allocator keeps its high-water mark)."""
RSS_GROWTH_MB = 2.0
"""How much RSS may grow from the first storm to the third (a leak would grow it each time)."""
SECRET = "sk-hostile-" + "5e3c" * 6  # appears only in malformed requests; must never come back or reach the log
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def guarded(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    folder = write_config(tmp_path_factory.mktemp("hostile") / "config", config_docs(hub))
    proc = RouterProcess([str(folder)], folder.parent / "router.log", env=LIMITS_ENV)
    yield proc
    proc.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the router closed the connection after answering (or without answering)

    def error(self) -> dict[str, Any]:
        payload = json.loads(self.body)
        assert set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "code", "param"}
        assert self.headers.get("server") == "llmroute" and self.headers["content-type"].startswith("application/json")
        return dict(payload["error"])


def connect(router: RouterProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", router.port), timeout=10)


def read_answer(sock: socket.socket, wait_close_s: float = 1.0) -> Answer | None:
    """One response from ``sock`` (None when it was closed without one), and whether the router then closed it."""
    data = b""
    with contextlib.suppress(ConnectionError):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    if b"\r\n\r\n" not in data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of a response"
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body[:length], closed_within(sock, wait_close_s))


def closed_within(sock: socket.socket, seconds: float) -> bool:
    if seconds <= 0:
        return False
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.settimeout(10)


def exchange(router: RouterProcess, raw: bytes, wait_close_s: float = 1.0) -> Answer | None:
    with connect(router) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(raw)
        return read_answer(sock, wait_close_s)


def post(body: bytes, *headers: str, path: str = CHAT) -> bytes:
    head = "".join(f"{h}\r\n" for h in ("Host: router", "Content-Type: application/json", *headers))
    return f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    head = "".join(f"{h}\r\n" for h in ("Host: router", *headers))
    return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode("latin-1")


def upstream_calls(hub: Hub) -> int:
    """Requests that reached any emulator, health probes (``/models``) aside."""
    return sum(n for emu in hub.emulators.values() for path, n in emu.stats.requests.items() if path != "/models")


def chat(model: Any = "deepseek-chat", **extra: Any) -> bytes:
    return json.dumps({"model": model, "messages": MESSAGES, **extra}).encode()


# (id, raw request, status, error code): each must be answered so, and reach no upstream.
REFUSED = [
    ("json-malformed", post(b'{"model": "deepseek-chat", "messages": ['), 400, "invalid_json"),
    ("json-trailing-garbage", post(chat() + b"}}"), 400, "invalid_json"),
    ("json-deeply-nested", post(b"[" * 60_000), 400, "invalid_json"),
    ("json-deep-object", post(b'{"a":' * 10_000 + b"1" + b"}" * 10_000), 400, "invalid_json"),
    ("json-not-an-object", post(b'["deepseek-chat"]'), 400, "invalid_request"),
    ("json-null", post(b"null"), 400, "invalid_request"),
    ("json-empty", post(b""), 400, "invalid_json"),
    ("model-number", post(chat(model=5)), 400, "invalid_request"),
    ("model-list", post(chat(model=["deepseek-chat"])), 400, "invalid_request"),
    ("model-empty", post(chat(model="")), 400, "invalid_request"),
    ("body-invalid-utf8", post(b'{"model": "deepseek-chat\xff\xfe", "messages": []}'), 400, "invalid_json"),
    ("body-lone-surrogate", post(b'{"model": "\\ud800", "messages": []}'), 404, "model_not_found"),
    ("header-invalid-utf8", post(chat(), "x-llmroute-data-class: \xff\xfe"), 400, "unknown_data_class"),
    ("path-invalid-utf8", b"GET /v1/mod\xff\xfeels HTTP/1.1\r\nHost: router\r\n\r\n", 400, "malformed_request"),
    ("body-declared-too-large", post(b"x" * (MAX_BODY + 1)), 413, "request_too_large"),
    ("gzip-bomb", post(gzip.compress(b" " * (MAX_BODY * 100)), "Content-Encoding: gzip"), 413, "request_too_large"),
    ("gzip-broken", post(b"this is not gzip", "Content-Encoding: gzip"), 400, "malformed_request"),
    ("gzip-truncated", post(gzip.compress(chat())[:12], "Content-Encoding: gzip"), 400, "invalid_json"),
    (
        "chunked-broken-mid-body",
        f'POST {CHAT} HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{{"a"\r\nzz\r\n'.encode(),
        400,
        "malformed_request",
    ),
    ("url-too-long", get("/v1/models?" + "a" * MAX_URL_BYTES), 414, "uri_too_long"),
    (
        "head-too-large",
        get("/healthz", *(f"X-Pad-{i}: {'a' * 4000}" for i in range(5))),
        431,
        "request_header_fields_too_large",
    ),
    (
        "header-field-too-large",
        get("/healthz", f"X-Pad: {'a' * (MAX_HEAD_BYTES + 10)}"),
        431,
        "request_header_fields_too_large",
    ),
    (
        "too-many-headers",
        get("/healthz", *(f"X-H{i}: a" for i in range(MAX_HEADERS + 1))),
        431,
        "request_header_fields_too_large",
    ),
    ("method-trace", get("/", method="TRACE"), 404, "not_found"),
    ("method-trace-chat", get(CHAT, method="TRACE"), 404, "not_found"),
    ("method-propfind", get("/", method="PROPFIND"), 404, "not_found"),
    ("method-connect", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 404, "not_found"),
    ("expect-unknown", post(chat(), "Expect: a-pony"), 417, "expectation_failed"),
    ("method-bogus", b"G\x01T / HTTP/1.1\r\nHost: router\r\n\r\n", 400, "malformed_request"),
    ("path-dotdot", get("/../../etc/passwd"), 404, "not_found"),
    ("path-double-slash", get("//v1/models"), 404, "not_found"),
    ("path-asterisk", get("*", method="OPTIONS"), 404, "not_found"),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "malformed_request"),
    ("tls-on-plain-port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400, "malformed_request"),
]
# The reason each refused case counts under in llmroute_client_rejections_total; the others are the application's
# answers to a well-framed request (bad JSON, unknown model, routing) and count nowhere there.
REJECTION = {
    "path-invalid-utf8": "bad_request",
    "body-declared-too-large": "body_too_large",
    "gzip-bomb": "body_too_large",
    "gzip-broken": "bad_request",
    "chunked-broken-mid-body": "bad_request",
    "url-too-long": "url_too_long",
    "head-too-large": "head_too_large",
    "header-field-too-large": "head_too_large",
    "too-many-headers": "too_many_headers",
    "expect-unknown": "expectation_failed",
    "method-bogus": "bad_request",
    "http2-preface": "bad_request",
    "tls-on-plain-port": "bad_request",
}
# Smuggling shapes: refused, and the connection is closed (no second request can hide behind the first).
SMUGGLING = [
    (
        "cl-and-te",
        f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    ),
    ("two-content-lengths", f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    (
        "same-content-length-twice",
        f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{{}}",
    ),
    ("content-length-negative", f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nContent-Length: -1\r\n\r\n"),
    ("content-length-plus", f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nContent-Length: +2\r\n\r\n{{}}"),
    (
        "bad-chunk-size",
        f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-size-overflow",
        f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n",
    ),
    ("te-space-before-colon", f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("te-obs-fold", f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n"),
    ("obs-fold", "GET /healthz HTTP/1.1\r\nHost: r\r\nX-A: a\r\n b\r\n\r\n"),
    ("bare-lf", "GET /healthz HTTP/1.1\nHost: r\n\n"),
    ("bare-cr", "GET /healthz HTTP/1.1\rHost: r\r\r\n"),
    ("nul-in-header", "GET /healthz HTTP/1.1\r\nHost: r\r\nX-A: a\x00b\r\n\r\n"),
    ("secret-in-bad-header", f"GET /healthz HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {SECRET}\x00\r\n\r\n"),
    ("space-in-header-name", "GET /healthz HTTP/1.1\r\nHost: r\r\nX A: b\r\n\r\n"),
]


def rejections(router: RouterProcess) -> dict[str, float]:
    """``llmroute_client_rejections_total`` by reason."""
    prefix = 'llmroute_client_rejections_total{reason="'
    return {
        line[len(prefix) :].partition('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in router.metrics().splitlines()
        if line.startswith(prefix)
    }


@contextlib.contextmanager
def counted(router: RouterProcess, **expected: float) -> Iterator[None]:
    """The block moves ``llmroute_client_rejections_total`` by ``expected`` (reason: count), and no other reason."""
    before = rejections(router)
    yield
    after = rejections(router)
    assert set(after) == set(before) and "connection_cap" in after  # every reason pre-created
    assert {r: after[r] - before[r] for r in after if after[r] != before[r]} == expected


@pytest.mark.parametrize(("case", "raw", "status", "code"), REFUSED, ids=[c[0] for c in REFUSED])
def test_malformed_requests_get_an_openai_error_and_reach_no_upstream(
    guarded: RouterProcess, hub: Hub, case: str, raw: bytes, status: int, code: str
) -> None:
    with counted(guarded, **({REJECTION[case]: 1} if case in REJECTION else {})):
        answer = exchange(guarded, raw)
    assert answer is not None, "closed without an answer"
    err = answer.error()
    assert (answer.status, err["code"]) == (status, code), err
    assert upstream_calls(hub) == 0


@pytest.mark.parametrize("raw", [c[1] for c in SMUGGLING], ids=[c[0] for c in SMUGGLING])
def test_smuggling_shapes_are_refused_and_the_connection_closed(guarded: RouterProcess, hub: Hub, raw: str) -> None:
    with counted(guarded, bad_request=1):
        answer = exchange(guarded, raw.encode("latin-1") + get("/v1/models"))
    assert answer is not None and answer.status == 400
    assert answer.error()["code"] in ("malformed_request", "invalid_json")
    assert answer.closed, "the connection stayed open: what followed could be read as a second request"
    assert SECRET not in answer.body.decode()
    assert upstream_calls(hub) == 0


def test_what_broke_a_rule_is_neither_echoed_nor_logged(guarded: RouterProcess) -> None:
    answer = exchange(guarded, get("/healthz", f"Authorization: Bearer {SECRET}\x01"))
    assert answer is not None and answer.status == 400 and SECRET not in answer.body.decode()
    assert SECRET not in guarded.log() and "Traceback" not in guarded.log()


def test_a_chunked_body_over_the_limit_is_refused_without_reading_the_rest(guarded: RouterProcess, hub: Hub) -> None:
    chunk = b"x" * 16384
    with counted(guarded, body_too_large=1), connect(guarded) as sock:
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        with contextlib.suppress(ConnectionError):
            for _ in range(MAX_BODY // len(chunk) + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = read_answer(sock)
    assert answer is not None and answer.status == 413 and answer.error()["code"] == "request_too_large"
    assert answer.headers.get("connection") == "close"
    assert upstream_calls(hub) == 0


def test_an_oversized_body_announced_with_expect_gets_413_before_it_is_sent(guarded: RouterProcess) -> None:
    head = f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nExpect: 100-continue\r\nContent-Length: {MAX_BODY * 10}\r\n\r\n"
    with counted(guarded, body_too_large=1):
        answer = exchange(guarded, head.encode())
    assert answer is not None and answer.status == 413 and answer.error()["code"] == "request_too_large"
    small = f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    with connect(guarded) as sock:
        sock.sendall(small.encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")


def test_a_truncated_body_is_never_proxied(guarded: RouterProcess, hub: Hub) -> None:
    body = chat()
    with connect(guarded) as sock:
        sock.sendall(post(body)[: -len(body) // 2])
        sock.shutdown(socket.SHUT_WR)
        answer = read_answer(sock)
    assert answer is None or answer.status >= 400
    assert upstream_calls(hub) == 0


def test_a_gzip_body_within_the_limit_is_served(guarded: RouterProcess, hub: Hub) -> None:
    answer = exchange(guarded, post(gzip.compress(chat()), "Content-Encoding: gzip"))
    assert answer is not None and answer.status == 200
    assert upstream_calls(hub) == 1


def test_a_deflate_body_is_served_and_an_unknown_coding_is_415(guarded: RouterProcess, hub: Hub) -> None:
    answer = exchange(guarded, post(zlib.compress(chat()), "Content-Encoding: deflate"))
    assert answer is not None and answer.status == 200
    with counted(guarded, bad_request=1):
        refused = exchange(guarded, post(chat(), "Content-Encoding: br"))
    assert refused is not None and (refused.status, refused.error()["code"]) == (415, "unsupported_media_type")
    assert refused.closed and upstream_calls(hub) == 1


def test_head_answers_what_get_would_without_the_body(guarded: RouterProcess) -> None:
    with connect(guarded) as sock:
        sock.sendall(get("/healthz", method="HEAD") + get("/healthz"))
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 2 or not data.endswith(b"}"):
            data += sock.recv(65536)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 19" in first and rest.startswith(b"HTTP/1.1 200 OK")  # no body after the HEAD's head
    assert rest.endswith(b'{"status": "alive"}')


def test_an_http_1_0_client_gets_its_answer_and_the_close(guarded: RouterProcess, hub: Hub) -> None:
    answer = exchange(guarded, post(chat()).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    assert answer is not None and answer.status == 200 and answer.headers.get("connection") == "close"
    assert answer.closed
    with connect(guarded) as sock:  # a stream to an HTTP/1.0 client: not chunked, delimited by the close
        sock.sendall(post(chat(stream=True)).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body.rstrip().endswith(b"data: [DONE]") and upstream_calls(hub) == 2


def test_pipelined_requests_are_answered_in_order_up_to_a_malformed_one(guarded: RouterProcess, hub: Hub) -> None:
    with counted(guarded, bad_request=1), connect(guarded) as sock:
        sock.sendall(post(chat()) + get("/healthz") + b"GET /healthz HTTP/1.1\r\nX A: b\r\n\r\n" + get("/healthz"))
        data = b""
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(65536):
                data += chunk
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]  # (a body ends without CRLF)
    assert statuses == [200, 200, 400]  # the one after the malformed request is never read
    assert upstream_calls(hub) == 1


def test_an_absolute_form_uri_is_served_by_its_path_and_steers_nothing(guarded: RouterProcess, hub: Hub) -> None:
    answer = exchange(guarded, post(chat(), path="http://evil.example:8443/v1/chat/completions"))
    assert answer is not None and answer.status == 200
    # the route's first backend that class "internal" allows, not the URI's host
    assert hub["together"].stats.requests["/chat/completions"] == 1
    assert upstream_calls(hub) == 1


def test_a_slow_body_gets_408_at_its_deadline(guarded: RouterProcess, hub: Hub) -> None:
    body = chat()
    with counted(guarded, body_timeout=1), connect(guarded) as sock:
        sock.sendall(post(body)[: -len(body) + 5])
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in body[5:15]:
                time.sleep(0.4)
                sock.sendall(bytes([byte]))
        answer = read_answer(sock)
        took = time.monotonic() - started
    assert answer is not None and answer.status == 408 and answer.error()["code"] == "request_timeout"
    assert answer.closed and BODY_TIMEOUT_S - 0.1 < took < BODY_TIMEOUT_S + SLOP_S
    assert upstream_calls(hub) == 0


def test_an_idle_keep_alive_connection_is_closed(guarded: RouterProcess) -> None:
    with counted(guarded, idle_timeout=1), connect(guarded) as sock:
        sock.sendall(get("/healthz"))
        answer = read_answer(sock, wait_close_s=0.2)
        assert answer is not None and answer.status == 200 and not answer.closed
        started = time.monotonic()
        assert closed_within(sock, IDLE_TIMEOUT_S + SLOP_S + 1.0)
        assert time.monotonic() - started > IDLE_TIMEOUT_S - 0.5


def test_a_head_trickled_byte_by_byte_is_closed_at_the_deadline_of_its_first_byte(guarded: RouterProcess) -> None:
    head = get("/healthz", *(f"X-Slow-{i}: x" for i in range(20)))
    with counted(guarded, head_timeout=1), connect(guarded) as sock:
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in head[:-2]:
                sock.sendall(bytes([byte]))
                if closed_within(sock, 0.2):
                    break
        took = time.monotonic() - started
    assert HEAD_TIMEOUT_S - 0.1 < took < HEAD_TIMEOUT_S + SLOP_S


def test_a_full_pipeline_is_not_mistaken_for_a_slow_head(guarded: RouterProcess) -> None:
    """32 pipelined requests fill aiohttp's queue; it re-parses its buffer when reading resumes: no new head."""
    with counted(guarded), connect(guarded) as sock:
        sock.sendall(get("/healthz") * 32)
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 32:
            data += sock.recv(65536)
        assert not closed_within(sock, HEAD_TIMEOUT_S + 1.0)


def rss_mb(proc: RouterProcess) -> float:
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


class Steady:
    """An openai SDK client sending one chat completion after another from its own thread; latencies in seconds."""

    def __init__(self, router: RouterProcess) -> None:
        self.router = router
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        async with make_aclient(self.router) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    reply = await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
                    assert reply.choices[0].message.content
                    self.latencies.append(time.perf_counter() - started)
                except Exception as exc:
                    self.errors.append(type(exc).__name__)
                await asyncio.sleep(0.02)

    def __enter__(self) -> Steady:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


def half_heads(router: RouterProcess, n: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        sock = connect(router)
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nX-Slow-{i}: ".encode())
        socks.append(sock)
    return socks


def wait_closed(socks: list[socket.socket], seconds: float) -> list[float]:
    """When (seconds from now) each socket was closed by the router; gives up after ``seconds``."""
    started, closed_at, pending = time.monotonic(), {}, set(socks)
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        while pending and time.monotonic() - started < seconds:
            for key, _ in sel.select(timeout=0.1):
                done = key.fileobj
                assert isinstance(done, socket.socket)
                with contextlib.suppress(ConnectionError):
                    assert done.recv(4096) == b"", "a half head got an answer"
                closed_at[done] = time.monotonic() - started
                pending.discard(done)
                sel.unregister(done)
    for sock in socks:
        sock.close()
    return [closed_at.get(s, float("inf")) for s in socks]


def test_slowloris_is_closed_by_the_head_deadline_while_others_are_served(guarded: RouterProcess, hub: Hub) -> None:
    exchange(guarded, get("/healthz"))
    before = rss_mb(guarded)
    with counted(guarded, head_timeout=100), Steady(guarded) as steady:
        time.sleep(0.5)
        served_before = len(steady.latencies)
        started = time.monotonic()
        socks = half_heads(guarded, 100)
        assert counter(guarded, "llmroute_client_connections") >= 100 + 1  # and this scrape's own
        closed = wait_closed(socks, HEAD_TIMEOUT_S + SLOP_S + 2.0)
        storm_s = time.monotonic() - started
        served = steady.latencies[served_before:]
    assert max(closed) < HEAD_TIMEOUT_S + SLOP_S, f"{sum(c == float('inf') for c in closed)} half heads still open"
    assert not steady.errors
    assert len(served) >= 10, f"only {len(served)} answers in {storm_s:.1f}s of slowloris"
    assert statistics.median(served) < 0.25 and max(served) < 1.0, served
    assert upstream_calls(hub) == len(steady.latencies)
    time.sleep(0.5)
    assert rss_mb(guarded) - before < RSS_MARGIN_MB
    record(
        "hostile-input",
        {
            "slowlorisHalfHeads": len(socks),
            "slowlorisHeadTimeoutS": HEAD_TIMEOUT_S,
            "slowlorisLastClosedAfterS": round(max(closed), 3),
            "slowlorisOtherClientMedianMs": round(statistics.median(served) * 1000, 1),
            "slowlorisOtherClientMaxMs": round(max(served) * 1000, 1),
        },
    )


def test_memory_returns_to_baseline_after_a_storm_of_bad_requests(guarded: RouterProcess, hub: Hub) -> None:
    for raw in (c[1] for c in REFUSED[:12]):  # warm every error path once
        exchange(guarded, raw, wait_close_s=0)
    before = rss_mb(guarded)
    after = []
    for _ in range(3):
        socks = half_heads(guarded, 100)
        for raw in (c[1] for c in REFUSED):
            exchange(guarded, raw, wait_close_s=0)
        for shape in (c[1] for c in SMUGGLING):
            exchange(guarded, shape.encode("latin-1"), wait_close_s=0)
        wait_closed(socks, HEAD_TIMEOUT_S + SLOP_S + 2.0)
        time.sleep(0.3)
        after.append(rss_mb(guarded))
    assert after[0] - before < RSS_MARGIN_MB, f"RSS {before:.1f} -> {after} MB"
    assert after[-1] - after[0] < RSS_GROWTH_MB, f"RSS grows storm after storm: {before:.1f} -> {after} MB"
    assert guarded.proc.poll() is None and guarded.get("/readyz")[0] == 200
    assert upstream_calls(hub) == 0
    log = guarded.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]
    assert KEYS["deepseek"] not in log


def busy_posts(router: RouterProcess, n: int, body: bytes) -> list[socket.socket]:
    """``n`` connections that sent a complete chat request head and none of its ``body`` yet: busy, not waiting."""
    socks = []
    for _ in range(n):
        sock = connect(router)
        sock.sendall(post(body)[: -len(body)])
        socks.append(sock)
    return socks


def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503_and_the_busy_ones_are_served(
    hub: Hub, tmp_path: Path
) -> None:
    folder = write_config(tmp_path / "config", config_docs(hub))
    router = RouterProcess([str(folder)], tmp_path / "router.log", env={"LLMROUTE_MAX_CONNECTIONS": "20"})
    body = chat()
    try:
        before = rejections(router)
        socks = busy_posts(router, 20, body)
        time.sleep(0.3)  # older than limits.EVICT_MIN_WAIT_S: were they waiting, one would be closed now
        started = time.monotonic()
        refused = exchange(router, get("/v1/models"), wait_close_s=2.0)
        assert time.monotonic() - started < 1.0
        assert refused is not None and refused.status == 503 and refused.closed
        assert refused.error()["code"] == "too_many_connections" and refused.headers["retry-after"] == "1"
        socks[0].sendall(body)
        served = read_answer(socks[0], wait_close_s=0)
        assert served is not None and served.status == 200 and json.loads(served.body)["choices"]
        for sock in socks:
            sock.close()
        deadline, refusals = time.monotonic() + 5, 1
        while (answer := exchange(router, get("/healthz"), wait_close_s=0)) is not None and answer.status == 503:
            assert time.monotonic() < deadline, "the cap did not free up after the connections closed"
            refusals += 1
            time.sleep(0.1)
        assert answer is not None and answer.status == 200
        after = rejections(router)
        assert {r: after[r] - before[r] for r in after if after[r] != before[r]} == {"connection_cap": refusals}
        assert upstream_calls(hub) == 1
        assert router.log().count("at the limit of 20 open connections") == 1  # once, not once per refusal
    finally:
        router.stop()


def test_at_the_cap_the_keep_alive_connection_idle_longest_makes_room(hub: Hub, tmp_path: Path) -> None:
    folder = write_config(tmp_path / "config", config_docs(hub))
    router = RouterProcess([str(folder)], tmp_path / "router.log", env={"LLMROUTE_MAX_CONNECTIONS": "3"})
    try:
        before = rejections(router)
        idle = []
        for _ in range(3):  # idle after one request each, the first longest
            sock = connect(router)
            sock.sendall(get("/healthz"))
            assert (answer := read_answer(sock, wait_close_s=0)) is not None and answer.status == 200
            idle.append(sock)
            time.sleep(0.15)
        time.sleep(EVICT_IDLE_MIN_S)  # pooled, not between two requests: each may now be closed
        newcomer = exchange(router, get("/v1/models"), wait_close_s=0)
        assert newcomer is not None and newcomer.status == 200
        assert closed_within(idle[0], 1.0), "the connection idle longest was kept"
        for sock in idle[1:]:  # the others were not touched
            sock.sendall(get("/healthz"))
            assert (answer := read_answer(sock, wait_close_s=0)) is not None and answer.status == 200
        for sock in idle:
            sock.close()
        time.sleep(0.3)
        after = rejections(router)
    finally:
        router.stop()
    assert {r: after[r] - before[r] for r in after if after[r] != before[r]} == {"evicted": 1}


def test_at_the_cap_a_half_head_makes_room_before_an_older_keep_alive_connection(hub: Hub, tmp_path: Path) -> None:
    """A connection that has been answered keeps its slot while one that never sent a whole head holds another, even
    when the answered one has been idle longer; and ones answered moments ago are not closed at all (the newcomer is
    refused) - their clients are between two requests."""
    folder = write_config(tmp_path / "config", config_docs(hub))
    router = RouterProcess([str(folder)], tmp_path / "router.log", env={"LLMROUTE_MAX_CONNECTIONS": "3"})
    try:
        before = rejections(router)
        served = []
        for _ in range(2):
            sock = connect(router)
            sock.sendall(get("/healthz"))
            assert (answer := read_answer(sock, wait_close_s=0)) is not None and answer.status == 200
            served.append(sock)
        time.sleep(EVICT_IDLE_MIN_S)  # both idle long enough to be closed, were nothing else waiting
        half = connect(router)
        half.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: r\r\nX-Slow: ".encode())
        time.sleep(0.3)  # past its round trip
        newcomer = exchange(router, get("/v1/models"), wait_close_s=0)
        assert newcomer is not None and newcomer.status == 200
        assert closed_within(half, 1.0), "the half head was kept"
        time.sleep(0.2)  # (the newcomer has closed: its slot is free again)
        served.append(connect(router))
        for sock in served:  # the answered ones were not touched; all three are now between requests
            sock.sendall(get("/healthz"))
            assert (answer := read_answer(sock, wait_close_s=0)) is not None and answer.status == 200
        refused = exchange(router, get("/v1/models"), wait_close_s=0)
        assert refused is not None and refused.status == 503  # nothing may be closed: refused, not evicted
        for sock in (*served, half):
            sock.close()
        time.sleep(0.3)
        after = rejections(router)
    finally:
        router.stop()
    assert {r: after[r] - before[r] for r in after if after[r] != before[r]} == {"evicted": 1, "connection_cap": 1}


def test_a_slowloris_flood_at_the_cap_does_not_lock_out_a_well_behaved_client(hub: Hub, tmp_path: Path) -> None:
    """100 half heads against a cap of 50 and the default 10 s head deadline: the waiting connections longest held
    make room, so an openai SDK client is answered at once, not after the head deadline."""
    folder = write_config(tmp_path / "config", config_docs(hub))
    router = RouterProcess([str(folder)], tmp_path / "router.log", env={"LLMROUTE_MAX_CONNECTIONS": "50"})
    try:
        with Steady(router) as steady:
            time.sleep(0.5)
            before = rejections(router)
            served_before = len(steady.latencies)
            socks = half_heads(router, 100)
            time.sleep(0.3)  # older than limits.EVICT_MIN_WAIT_S: the oldest may now be closed to make room
            late = asyncio.run(answered(router, 5))
            flood = steady.latencies[served_before:]
        after = rejections(router)
        still_open = sum(map(held, socks))
        for sock in socks:
            sock.close()
    finally:
        router.stop()
    assert not steady.errors and len(flood) >= 10
    assert statistics.median(flood) < 0.25 and max(flood) < 1.0, flood
    assert max(late) < 1.0, late  # a new client, at the cap, long before any head deadline (10 s)
    evicted, refused = (after[r] - before[r] for r in ("evicted", "connection_cap"))
    assert evicted >= 1 and evicted + refused >= 50, after  # the new client's connection made room
    assert after["head_timeout"] == before["head_timeout"]
    assert still_open >= 40  # room was made by closing the oldest waiting, not by a deadline
    record(
        "hostile-input",
        {
            "capFloodHalfHeads": len(socks),
            "capFloodCap": 50,
            "capFloodNewClientMaxMs": round(max(late) * 1000, 1),
            "capFloodSteadyClientMedianMs": round(statistics.median(flood) * 1000, 1),
            "capFloodEvicted": evicted,
            "capFloodRefused": refused,
        },
    )


def held(sock: socket.socket) -> bool:
    """The router neither answered nor closed ``sock``."""
    sock.settimeout(0.01)
    try:
        sock.recv(1)
        return False
    except TimeoutError:
        return True
    except ConnectionError:
        return False


async def answered(router: RouterProcess, n: int) -> list[float]:
    """Latencies of ``n`` chat completions from a new openai SDK client."""
    latencies = []
    async with make_aclient(router) as client:
        for _ in range(n):
            started = time.perf_counter()
            reply = await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
            assert reply.choices[0].message.content
            latencies.append(time.perf_counter() - started)
    return latencies
