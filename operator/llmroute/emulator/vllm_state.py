"""What one emulated vLLM pod is and knows: :class:`VllmConfig` (its command line, fixed for its life) and
:class:`VllmState` (engine, metrics, load and drain flags, request counts), reachable from handlers
through :data:`VLLM_STATE`.

Split from :mod:`llmroute.emulator.vllm_app` so the request handlers in
:mod:`llmroute.emulator.vllm_serve` can use it without an import cycle. Request ids come from a seeded RNG,
so two pods built with the same seed answer the same requests with the same bytes (bar ``created``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from .vllm_engine import Engine, EngineParams
from .vllm_metrics import VllmMetrics

HealthMode = Literal["refuse", "hang"]


@dataclass(frozen=True)
class VllmConfig:
    """The pod's ``vllm serve`` flags (and the model's behaviour), fixed for its life."""

    model: str = "Qwen/Qwen3-8B"  # --model: the weights id, `root` in /v1/models
    served_model_name: str | tuple[str, ...] | None = None  # --served-model-name (default: the model id)
    max_model_len: int = 32768  # --max-model-len: prompt + max_tokens must fit
    startup_delay_s: float = 0.0  # weights loading time
    health_mode: HealthMode = "refuse"  # refuse: port unbound while loading; hang: bound, requests hang
    api_key: str | None = None  # --api-key: /v1/* needs `Authorization: Bearer <key>` (else 401)
    answer_tokens: int = 16  # content tokens of a complete answer (finish_reason "stop")
    reasoning_tokens: int = 0  # > 0: a reasoning model (--reasoning-parser): this many `reasoning` tokens first
    block_size: int = 16  # KV-cache block size, in tokens
    num_gpu_blocks: int = 4096  # KV-cache capacity, in blocks
    seed: int = 0  # seeds the request ids

    def __post_init__(self) -> None:
        if self.health_mode not in ("refuse", "hang"):
            raise ValueError(f"health_mode must be 'refuse' or 'hang', not {self.health_mode!r}")
        if min(self.max_model_len, self.block_size, self.num_gpu_blocks) < 1 or min(
                self.answer_tokens, self.reasoning_tokens) < 0 or self.startup_delay_s < 0:
            raise ValueError("VllmConfig sizes must be positive and delays non-negative")
        if not self.names:
            raise ValueError("served_model_name must name at least one model")

    @property
    def names(self) -> tuple[str, ...]:
        """Every served name; the first is the one vLLM reports (responses' `model`, metrics' `model_name`)."""
        if self.served_model_name is None:
            return (self.model,)
        if isinstance(self.served_model_name, str):
            return (self.served_model_name,)
        return tuple(self.served_model_name)


@dataclass
class VllmState:
    """Everything one pod knows; the admin API reads and edits it live."""

    config: VllmConfig
    engine: Engine
    metrics: VllmMetrics
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    draining: bool = False
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    users: Counter[str] = field(default_factory=Counter)  # the OpenAI `user` field of completion requests (an id)
    created: int = field(default_factory=lambda: int(time.time()))
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)

    @classmethod
    def create(cls, config: VllmConfig, params: EngineParams) -> VllmState:
        metrics = VllmMetrics(config.names[0], block_size=config.block_size, num_gpu_blocks=config.num_gpu_blocks)
        engine = Engine(params, metrics, block_size=config.block_size, num_gpu_blocks=config.num_gpu_blocks)
        return cls(config=config, engine=engine, metrics=metrics)

    def request_id(self, prefix: str) -> str:
        return f"{prefix}-{self.rng.getrandbits(128):032x}"

    @property
    def healthy(self) -> bool:
        """What /health says once loaded: False when the engine is dead or the pod drains."""
        return not self.engine.dead and not self.draining

    def reset(self) -> None:
        """Forget request counts and engine peaks; restart the id RNG from the seed."""
        self.requests.clear()
        self.statuses.clear()
        self.users.clear()
        self.engine.reset_stats()
        self.rng.seed(self.config.seed)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.config.names[0], "ready": self.loaded.is_set(), "draining": self.draining,
                "total": sum(self.requests.values()), "requests": dict(self.requests),
                "statuses": {str(k): v for k, v in self.statuses.items()}, "users": dict(self.users),
                **self.engine.to_json(),
                "params": self.engine.params.model_dump(mode="json")}


VLLM_STATE = web.AppKey("llmroute_vllm_state", VllmState)
