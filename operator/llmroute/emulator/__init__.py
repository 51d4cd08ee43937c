"""A faithful emulator of an OpenAI-compatible LLM provider (DeepSeek's API by default), with fault
injection that replays DeepSeek's recorded incidents.

Part of the product: router integration tests, ``llmroute local`` (one emulator per provider on
loopback) and the benchmarks all run against it. Self-contained: it imports nothing from the rest of
llmroute, and nothing in the data or control plane imports it.

* :mod:`~llmroute.emulator.faults` - :class:`FaultPlan`, :data:`INCIDENTS`, the seeded per-request draw.
* :mod:`~llmroute.emulator.wire` - DeepSeek's bodies, chunks, usage and error shapes.
* :mod:`~llmroute.emulator.delivery` - timing on the wire: keep-alives, token pacing, stall/cut/idle close.
* :mod:`~llmroute.emulator.stats` - counts and per-request records (no prompt text, no keys).
* :mod:`~llmroute.emulator.app` - the aiohttp application (:func:`build_app`) and admin API.
* :mod:`~llmroute.emulator.runner` - :class:`Emulator` and :func:`run_emulator` on loopback.
* :mod:`~llmroute.emulator.vllm` - :class:`VllmPod`: one pod of a self-hosted pool as current vLLM serves it (port
  refused or ``/health`` hanging while the weights load, ``vllm:`` metrics, ``reasoning``, a queueing engine).
"""

from .app import DEFAULT_MODELS, STATE, EmulatorState, build_app
from .faults import INCIDENTS, FaultPlan
from .runner import Emulator, run_emulator
from .stats import Auth, Outcome, Record, Stats

__all__ = [
    "DEFAULT_MODELS",
    "INCIDENTS",
    "STATE",
    "Auth",
    "Emulator",
    "EmulatorState",
    "FaultPlan",
    "Outcome",
    "Record",
    "Stats",
    "build_app",
    "run_emulator",
]
