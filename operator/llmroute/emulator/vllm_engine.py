"""The emulated vLLM engine: continuous batching reduced to what a router can observe from outside.

Owns :class:`EngineParams` (the live-tunable load model behind ``GET|PUT /_emulator/params``) and
:class:`Engine`. At most ``max_num_seqs`` sequences run at once; further requests wait in a FIFO queue
(``vllm:num_requests_waiting``). A sequence's first token comes ``prefill_s`` after it is admitted, so its
time to first token is its queue time plus the prefill; then one token every ``token_interval_s``. The KV
cache holds ``ceil((prompt + generated) / block_size)`` blocks per running sequence, so usage rises with
load (capped at 1.0; no preemption). ``engine_dead`` emulates ``EngineDeadError``: waiting and running
sequences fail at their next step and nothing new is admitted. Timing uses the event loop's clock; no
randomness. Used by :mod:`llmroute.emulator.vllm_app`; reports into :mod:`llmroute.emulator.vllm_metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter, deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .vllm_metrics import VllmMetrics


class EngineParams(BaseModel):
    """How fast and how wide the emulated engine is; replaceable while requests run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_num_seqs: int = Field(256, ge=1, description="Sequences that run concurrently (`--max-num-seqs`); "
                              "more requests queue FIFO.")
    prefill_s: float = Field(0.0, ge=0, description="Seconds from admission to the first token.")
    token_interval_s: float = Field(0.0, ge=0, description="Seconds between generated tokens.")
    extra_delay_s: float = Field(0.0, ge=0, description="Seconds each request spends in the API server "
                                 "before reaching the engine (tokenization, slow network); not a slot.")
    engine_dead: bool = Field(False, description="The engine core died: /health answers 503, new requests 500, "
                              "running streams end with an error event.")


class EngineDead(Exception):
    """vLLM's EngineDeadError: the engine core is gone."""


@dataclass(eq=False, slots=True)
class _Seq:
    prompt_tokens: int
    arrived: float
    admitted: float = math.nan
    first_token: float = math.nan
    generated: int = 0


class Engine:
    """The scheduler and clock of one pod; :meth:`generate` is one request's life in it."""

    def __init__(self, params: EngineParams, metrics: VllmMetrics, *, block_size: int, num_gpu_blocks: int) -> None:
        self.params, self.metrics = params, metrics
        self.block_size, self.num_gpu_blocks = block_size, num_gpu_blocks
        self._running: set[_Seq] = set()
        self._queue: deque[tuple[_Seq, asyncio.Future[None]]] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self.finished: Counter[str] = Counter()
        self.max_running = self.max_waiting = self.max_concurrent = 0

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def dead(self) -> bool:
        return self.params.engine_dead

    def kv_usage(self) -> float:
        blocks = sum(math.ceil((s.prompt_tokens + s.generated) / self.block_size) for s in self._running)
        return min(1.0, blocks / self.num_gpu_blocks)

    def set_params(self, params: EngineParams) -> None:
        """Apply new parameters: a wider engine admits waiters now, a dead one fails them."""
        self.params = params
        if params.engine_dead:
            for _, future in self._queue:
                if not future.done():
                    future.set_exception(EngineDead())
            self._queue.clear()
            self._changed()
        self._dispatch()

    async def wait_idle(self) -> None:
        """Until nothing runs or waits."""
        await self._idle.wait()

    async def generate(self, prompt_tokens: int, steps: int, finish_reason: str) -> AsyncGenerator[int, None]:
        """Queue, prefill, then yield 0..steps-1 as each token is produced. Closing early is an abort.
        Raises :class:`EngineDead` if the engine is or becomes dead."""
        loop = asyncio.get_running_loop()
        seq = _Seq(prompt_tokens, arrived=loop.time())
        await self._admit(seq)
        reason = "abort"
        try:
            await self._pause(self.params.prefill_s)
            seq.first_token = last = loop.time()
            self.metrics.prompt_tokens.inc(prompt_tokens)
            self.metrics.prefix_queries.inc(prompt_tokens)
            self.metrics.ttft.observe(seq.first_token - seq.arrived)
            for step in range(steps):
                if step:
                    await self._pause(self.params.token_interval_s)
                    now = loop.time()
                    self.metrics.itl.observe(now - last)
                    last = now
                seq.generated += 1
                self.metrics.generation_tokens.inc()
                yield step
            reason = finish_reason
        except EngineDead:
            reason = "error"
            raise
        finally:
            self._release(seq, reason)

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.dead:
            raise EngineDead

    async def _admit(self, seq: _Seq) -> None:
        if self.dead:
            raise EngineDead
        if not self._queue and len(self._running) < self.params.max_num_seqs:
            self._start(seq)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((seq, future))
        self._changed()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(seq, "abort")  # admitted just as the client left
            else:
                with contextlib.suppress(ValueError):  # already skipped by _dispatch
                    self._queue.remove((seq, future))
                self.finished["abort"] += 1
                waited = asyncio.get_running_loop().time() - seq.arrived
                self.metrics.finished("abort", e2e=waited, queue=waited, prefill=0.0, decode=0.0)
                self._changed()
            raise

    def _start(self, seq: _Seq) -> None:
        seq.admitted = asyncio.get_running_loop().time()
        self._running.add(seq)
        self._changed()

    def _release(self, seq: _Seq, reason: str) -> None:
        if seq not in self._running:
            return
        self._running.discard(seq)
        self.finished[reason] += 1
        now = asyncio.get_running_loop().time()
        first = seq.first_token if not math.isnan(seq.first_token) else now
        self.metrics.finished(reason, e2e=now - seq.arrived, queue=seq.admitted - seq.arrived,
                              prefill=first - seq.admitted, decode=now - first)
        self._dispatch()
        self._changed()

    def _dispatch(self) -> None:
        while self._queue and len(self._running) < self.params.max_num_seqs:
            seq, future = self._queue.popleft()
            if not future.done():
                self._start(seq)
                future.set_result(None)
        self._changed()

    def _changed(self) -> None:
        running, waiting = len(self._running), len(self._queue)
        self.max_running = max(self.max_running, running)
        self.max_waiting = max(self.max_waiting, waiting)
        self.max_concurrent = max(self.max_concurrent, running + waiting)
        if running or waiting:
            self._idle.clear()
        else:
            self._idle.set()

    def reset_stats(self) -> None:
        """Forget finished counts; peaks restart from the current load."""
        self.finished.clear()
        self.max_running = self.max_waiting = self.max_concurrent = 0
        self._changed()

    def to_json(self) -> dict[str, Any]:
        return {"running": self.running, "waiting": self.waiting, "kv_cache_usage_perc": self.kv_usage(),
                "max_running": self.max_running, "max_waiting": self.max_waiting,
                "max_concurrent": self.max_concurrent, "finished": dict(self.finished),
                "served": self.finished["stop"] + self.finished["length"], "engine_dead": self.dead}
