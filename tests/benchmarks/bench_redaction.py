"""Redaction benchmark: what Restore adds to the first streamed byte, to each later chunk, and to the request path;
and that a route without redaction pays nothing. Run on demand (about half a minute):

    python tests/benchmarks/bench_redaction.py [--seconds 2]

In-process, single thread, on the example route (``examples/deepseek-residency``) with ``spec.redaction`` restoring
every type for ``public``; requests are chat bodies of about 8 KB holding 6 values (3 emails, a phone, an IBAN, an
SSN-free text otherwise; one email repeated), declared ``public``.

* **first byte** (issue 11's target: at most 0.2 ms): the relay of one attempt built and fed the upstream's first
  read (the role event plus three characters of text), as :mod:`llmroute.router.failover` does - the restoring
  relay (:meth:`llmroute.router.redaction.Redaction.relay`: its restorer's regexes compiled on first use, the chunk
  searched, parsed only if it may hold a placeholder) against the plain :class:`llmroute.router.sse.StreamRelay`.
  Two first reads: plain text, and text ending in the start of a placeholder (``<EM``: parsed, held, re-serialised).
* **per chunk**: the rest of an echoed answer (3-character deltas, every placeholder split), per chunk, restoring
  against plain.
* **request path**: :func:`llmroute.router.proxy._route` (parse, route, scan, issue placeholders) with and without
  the route's redaction, and :meth:`Redaction.attempt` (the first attempt's redacted body) on its own; and
  redaction's own share with the scan given (as escalation's scan could give it): :func:`prepare` and the first
  attempt's body, beside the scan alone.
* **no redaction**: ``_route`` for a class without rules on a config that has some, against a config without any.

Writes ``tests/benchmarks/results/redaction.json`` and prints a table (microseconds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))

from llmroute.api.llm_route import LLMRoute  # noqa: E402
from llmroute.api.provider_policy import ProviderPolicy  # noqa: E402
from llmroute.core import request_text  # noqa: E402
from llmroute.core.compile import compile_route  # noqa: E402
from llmroute.router import jsonwire, proxy, redaction  # noqa: E402
from llmroute.router.config_source import Snapshot, build_snapshot  # noqa: E402
from llmroute.router.sse import StreamRelay  # noqa: E402
from tests.conftest import example_doc  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "redaction.json"
PUBLIC = {"x-llmroute-data-class": "public"}
VALUES = (
    "alice.smith@example.com",
    "bob@example.org",
    "+1 650-253-0000",
    "DE89 3704 0044 0532 0130 00",
    "carol@example.net",
)
FILLER = (
    "We are migrating the billing service to the new cluster next week; the runbook lists the steps, the "
    "rollback plan and who is on call. Please review the open questions in the design doc and reply inline. "
)


def snapshot(redaction: list[dict[str, Any]] | None) -> Snapshot:
    route_doc = example_doc("route")
    if redaction is not None:
        route_doc["spec"]["redaction"] = redaction
    config = compile_route(LLMRoute.model_validate(route_doc), ProviderPolicy.model_validate(example_doc("policy")))
    return build_snapshot(config, {p.name: "sk-bench" for p in config.providers}, "bench")


def request(size: int = 8 << 10) -> tuple[bytes, str]:
    """A chat body of about ``size`` bytes with the values spread over its messages; and the last user text."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    total, i = 0, 0
    while total < size:
        value = VALUES[i % len(VALUES)] if i < 6 else ""
        text = FILLER[:300] + (f" Contact {value} about it." if value else "")
        messages.append({"role": "user" if len(messages) % 2 else "assistant", "content": text})
        total += len(text)
        i += 1
    last = f"Write to {VALUES[0]} and cc {VALUES[1]}; call {VALUES[2]} if needed."
    messages.append({"role": "user", "content": last})
    return json.dumps({"model": "deepseek-chat", "messages": messages, "stream": True}).encode(), last


def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "0c99e6c2-15e6-4aa6-a80f-cc863ecf7337",
        "object": "chat.completion.chunk",
        "created": 1796408349,
        "model": "deepseek-chat",
        "system_fingerprint": "fp_emulator_prod",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def timed(fn: Callable[[], object], seconds: float, inner: int = 1) -> list[float]:
    """Microseconds per call of ``fn`` (``inner`` calls per sample), over about ``seconds``."""
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(out) < 50:
        t0 = time.perf_counter_ns()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter_ns() - t0) / 1000 / inner)
    return out


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_us": round(statistics.median(ordered), 2), "p99_us": round(ordered[int(len(ordered) * 0.99)], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    seconds = parser.parse_args().seconds

    plain_snap = snapshot(None)
    restoring = snapshot([{"dataClass": "public", "mode": "Restore"}])
    other_class = snapshot([{"dataClass": "phi", "mode": "Restore"}])  # rules, but none for public
    raw, last = request()

    def routed(snap: Snapshot) -> proxy.Call:
        return proxy._route(snap, proxy.Kind.CHAT, raw, PUBLIC, 0.0)

    call = routed(restoring)
    assert call.redaction is not None
    sent, _ = call.redaction.attempt("deepseek", call.body, call.history)
    said = next(m["content"] for m in reversed(sent["messages"]) if m["role"] == "user")
    assert VALUES[0] not in said and "<EMAIL_1>" in said, said
    pieces = [said[i : i + 3] for i in range(0, len(said), 3)]
    first_plain = event({"role": "assistant", "content": ""}) + event({"content": pieces[0]})
    first_begun = event({"role": "assistant", "content": ""}) + event({"content": "To <EM"})
    rest = [event({"content": p}) for p in pieces[1:]] + [event({}, "stop"), b"data: [DONE]\n\n"]

    def first_read(data: bytes, restore: bool) -> list[float]:
        """Microseconds from building the attempt's relay to having its first read's output, on a fresh request
        each time (its restorer's state is built on first use, so it is in the time)."""
        out: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(out) < 50:
            redaction = routed(restoring).redaction if restore else None
            if redaction is not None:
                redaction.attempt("deepseek", {}, None)
            t0 = time.perf_counter_ns()
            relay = (
                StreamRelay(None, "reasoning_content")
                if redaction is None
                else redaction.relay(None, "reasoning_content", True)
            )
            relay.feed(data)
            out.append((time.perf_counter_ns() - t0) / 1000)
        return out

    results: dict[str, Any] = {}
    for name, data in (("first_byte_plain_text", first_plain), ("first_byte_placeholder_begun", first_begun)):
        with_restore, without = first_read(data, True), first_read(data, False)
        results[name] = {
            "restoring": stats(with_restore),
            "plain": stats(without),
            "added_p50_us": round(statistics.median(with_restore) - statistics.median(without), 2),
        }

    def stream(restore: bool) -> Callable[[], object]:
        def run() -> object:
            relay: StreamRelay
            if restore:
                assert call.redaction is not None
                call.redaction.attempt("deepseek", {}, None)
                relay = call.redaction.relay(None, "reasoning_content", True)
            else:
                relay = StreamRelay(None, "reasoning_content")
            out = [relay.feed(first_plain), *(relay.feed(c) for c in rest)]
            return [*out, relay.close()]

        return run

    n = len(rest) + 1
    restoring_stream = [t / n for t in timed(stream(True), seconds)]
    plain_stream = [t / n for t in timed(stream(False), seconds)]
    results["per_chunk"] = {
        "restoring": stats(restoring_stream),
        "plain": stats(plain_stream),
        "chunks": n,
        "added_p50_us": round(statistics.median(restoring_stream) - statistics.median(plain_stream), 2),
    }
    out = b"".join(stream(True)())  # type: ignore[arg-type]
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in out.split(b"\n")
        if line.startswith(b"data: {")
    )
    assert text == last, text

    with_redaction = timed(lambda: routed(restoring), seconds)
    without = timed(lambda: routed(plain_snap), seconds)
    attempt = timed(lambda: routed(restoring).redaction.attempt("deepseek", {}, None), seconds)  # type: ignore[union-attr]
    results["request_path_8KB"] = {
        "restoring": stats(with_redaction),
        "plain": stats(without),
        "added_p50_us": round(statistics.median(with_redaction) - statistics.median(without), 2),
        "first_attempt_body_p50_us": round(statistics.median(attempt) - statistics.median(with_redaction), 2),
    }
    policy = restoring.redaction.policy(["public"], [b.provider for b in call.entry.usable])  # type: ignore[union-attr]
    assert policy is not None
    body = jsonwire.loads(raw)
    found = request_text.scan(body, policy.detector)

    def own() -> object:
        red = redaction.prepare(policy, body, raw, found)
        assert red is not None
        return red.attempt("deepseek", body, None)

    scanning = timed(lambda: request_text.scan(body, policy.detector), seconds)
    mine = timed(own, seconds)
    results["redaction_own_8KB"] = {
        "prepare_and_first_body": stats(mine),
        "scan": stats(scanning),
        "added_p50_us": round(statistics.median(mine), 2),
    }
    unaffected = timed(lambda: routed(other_class), seconds)
    results["route_without_rules"] = {
        "config_with_rules": stats(unaffected),
        "config_without": stats(without),
        "added_p50_us": round(statistics.median(unaffected) - statistics.median(without), 2),
    }
    with contextlib.suppress(OSError):
        RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for name, row in results.items():
        print(f"{name:<30} added p50 {row['added_p50_us']:>8.2f} us   {json.dumps(row)}")


if __name__ == "__main__":
    main()
