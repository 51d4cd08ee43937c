"""A faithful emulator of one current vLLM OpenAI server pod (``vllm/vllm-openai``): it stands in for the
pods of a self-hosted pool in router tests and ``llmroute local``.

What it reproduces, because routers and probes depend on it: the port refuses connections until the
weights load (or, in "hang" mode, requests hang); ``/health`` is an empty 200, or 503 once the engine is
dead; ``/v1/models`` is a static list of the served names; ``/metrics`` carries vLLM's engine gauges
(running, waiting, KV-cache usage), counters and histograms, without the removed
``vllm:gpu_cache_usage_perc``; chat and text completions have vLLM's shapes, reasoning is ``reasoning``
(never ``reasoning_content``); ``max_num_seqs`` sequences run and the rest queue FIFO, so time to first
token grows with load; a draining pod answers new requests 503 while admitted ones finish.

This module is the public face; the parts are:

* :mod:`~llmroute.emulator.vllm_pod` - :class:`VllmPod`, the loopback runner (port reservation, readiness).
* :mod:`~llmroute.emulator.vllm_app` - :func:`build_vllm_app`: routes, gate (load, auth), admin API.
* :mod:`~llmroute.emulator.vllm_serve` - the completion endpoints: validation, whole and streamed answers.
* :mod:`~llmroute.emulator.vllm_engine` - :class:`EngineParams` and the engine: queue, slots, timing, KV.
* :mod:`~llmroute.emulator.vllm_metrics` - the Prometheus exposition.
* :mod:`~llmroute.emulator.vllm_state` - :class:`VllmConfig` (the pod's flags) and :class:`VllmState`.
* :mod:`~llmroute.emulator.vllm_wire` - vLLM's JSON and SSE shapes.

Self-contained like the rest of :mod:`llmroute.emulator`: nothing outside it is imported.
"""

from __future__ import annotations

from .vllm_app import build_vllm_app
from .vllm_engine import EngineDead, EngineParams
from .vllm_pod import VllmPod
from .vllm_state import VLLM_STATE, HealthMode, VllmConfig, VllmState
from .vllm_wire import VLLM_VERSION

__all__ = [
    "VLLM_STATE",
    "VLLM_VERSION",
    "EngineDead",
    "EngineParams",
    "HealthMode",
    "VllmConfig",
    "VllmPod",
    "VllmState",
    "build_vllm_app",
]
