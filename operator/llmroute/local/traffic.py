"""The traffic generator: applications as they are, the official ``openai`` SDK pointed at the router.

Each worker (a client application with many users) sends a request, waits for the answer, and records what the
client saw: success or the SDK's error, the serving provider and attempt count from the router's ``x-llmroute-*``
headers, latency and time to first token. A request slower than ``patience_s`` no longer holds its worker back (it
goes on in the background, at most ``max_in_flight`` per worker): one user waiting 5-10 s for DeepSeek's first token
does not stop the others, so a slow provider does not starve the rest of the traffic (and the pools' load signal)
the way a strictly closed loop would.

The request's class also goes in the OpenAI ``user`` field (an end-user id, not content) so that each emulator (and
each pool pod) can count the classes it was sent: the residency proof is measured at the providers, not taken from
the router's own report.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import openai

CLASS_MIX: tuple[tuple[str, float], ...] = (("public", 0.4), ("internal", 0.3), ("pii", 0.2), ("phi", 0.1))
USER_TAG = "llmroute-local/"
CLIENT_KEY = "local-client-key-never-forwarded"


@dataclass(frozen=True)
class Result:
    """What one client request saw."""

    phase: str
    data_class: str
    model: str
    stream: bool
    started: float  # seconds since the run started
    ok: bool
    error: str | None  # the SDK exception type name, or None
    status: int | None
    provider: str | None
    attempts: int
    latency_s: float
    ttft_s: float | None


@dataclass
class Traffic:
    """Runs ``concurrency`` workers until ``stop`` is set; results accumulate in ``results``."""

    base_url: str
    models: tuple[str, ...]
    phase_of: Callable[[float], str]
    concurrency: int = 4
    pause_s: float = 0.05
    patience_s: float = 0.5
    max_in_flight: int = 32  # per worker
    seed: int = 0
    results: list[Result] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        client = openai.AsyncOpenAI(base_url=self.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=120)
        t0 = time.monotonic()
        try:
            await asyncio.gather(*(self._worker(client, random.Random(self.seed + i), t0)
                                   for i in range(self.concurrency)))
        finally:
            await client.close()

    async def _worker(self, client: openai.AsyncOpenAI, rng: random.Random, t0: float) -> None:
        classes, weights = zip(*CLASS_MIX, strict=True)
        pending: set[asyncio.Task[None]] = set()
        try:
            while not self.stop.is_set():
                cls = rng.choices(classes, weights)[0]
                model = self.models[0] if rng.random() < 0.8 or len(self.models) == 1 else rng.choice(self.models[1:])
                stream = rng.random() < 0.5
                started = time.monotonic() - t0
                task = asyncio.create_task(self._send(client, cls, model, stream, started))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.wait({task}, timeout=self.patience_s)
                while len(pending) >= self.max_in_flight:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                await asyncio.sleep(self.pause_s)
            if pending:
                await asyncio.wait(pending)
        finally:
            for task in pending:
                task.cancel()

    async def _send(self, client: openai.AsyncOpenAI, cls: str, model: str, stream: bool, started: float) -> None:
        self.results.append(await one_request(client, self.phase_of(started), cls, model, stream, started))


async def one_request(client: openai.AsyncOpenAI, phase: str, cls: str, model: str, stream: bool,
                      started: float) -> Result:
    """Send one chat completion as an application would and record the outcome."""
    t = time.monotonic()
    ttft: float | None = None
    headers = {"x-llmroute-data-class": cls}
    messages = [{"role": "user", "content": f"A {cls} question for the drill."}]
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=messages, stream=stream, user=USER_TAG + cls, extra_headers=headers,  # type: ignore[arg-type]
        )
        provider, attempts = raw.headers.get("x-llmroute-provider"), int(raw.headers.get("x-llmroute-attempts", 1))
        if stream:
            chunks = raw.parse()
            assert isinstance(chunks, openai.AsyncStream)
            async for chunk in chunks:
                if ttft is None and chunk.choices:
                    ttft = time.monotonic() - t
        else:
            raw.parse()
            ttft = time.monotonic() - t
        return Result(phase, cls, model, stream, started, True, None, raw.status_code, provider, attempts,
                      time.monotonic() - t, ttft)
    except openai.APIError as exc:
        status = getattr(exc, "status_code", None)
        resp = getattr(exc, "response", None)
        provider = resp.headers.get("x-llmroute-provider") if resp is not None else None
        return Result(phase, cls, model, stream, started, False, type(exc).__name__, status, provider, 0,
                      time.monotonic() - t, ttft)
