"""The ``GET /metrics`` exposition of one emulated vLLM pod, with vLLM's (v1 engine) metric names,
labels and buckets, so scrapers, dashboards and routers that read engine load see what they would see.

Owns a private :class:`prometheus_client.CollectorRegistry` per pod (several pods share a process in
``llmroute local``; nothing touches the global registry). Series: gauges ``vllm:num_requests_running``,
``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc`` (0..1) and ``vllm:cache_config_info``;
counters ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``, ``vllm:num_preemptions_total``,
``vllm:prefix_cache_queries_total``, ``vllm:prefix_cache_hits_total`` and
``vllm:request_success_total{finished_reason}``; histograms ``vllm:time_to_first_token_seconds``,
``vllm:inter_token_latency_seconds``, ``vllm:e2e_request_latency_seconds``,
``vllm:request_queue_time_seconds``, ``vllm:request_prefill_time_seconds`` and
``vllm:request_decode_time_seconds``. All carry ``model_name`` (the first served name) and
``engine="0"``. The removed ``vllm:gpu_cache_usage_perc`` / ``vllm:gpu_prefix_cache_*`` (PR #29330) are
absent. Noise, as on a real pod: the process/platform/GC collectors and the FastAPI instrumentator's
``http_requests_total``. Fed by :mod:`llmroute.emulator.vllm_engine` and :mod:`llmroute.emulator.vllm_app`.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FINISH_REASONS = ("stop", "length", "abort", "error")
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                 40.0, 80.0, 160.0, 640.0, 2560.0)
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                80.0)
_REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                    480.0, 960.0, 1920.0, 7680.0)
_LABELS = ("model_name", "engine")


class VllmMetrics:
    """The pod's Prometheus series; the engine calls the ``on_*`` hooks, ``render`` sets the gauges."""

    def __init__(self, model_name: str, *, block_size: int, num_gpu_blocks: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = (model_name, "0")
        self._running = self._gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                                    labels)
        self._waiting = self._gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels)
        self._kv = self._gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels)
        info = Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                     ("block_size", "cache_dtype", "enable_prefix_caching", "gpu_memory_utilization",
                      "num_gpu_blocks", "engine"), registry=self.registry)
        info.labels(str(block_size), "auto", "True", "0.9", str(num_gpu_blocks), "0").set(1)
        self.prompt_tokens = self._counter("vllm:prompt_tokens", "Number of prefill tokens processed.", labels)
        self.generation_tokens = self._counter("vllm:generation_tokens", "Number of generation tokens processed.",
                                               labels)
        self._counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", labels)
        self.prefix_queries = self._counter("vllm:prefix_cache_queries",
                                            "Prefix cache queries, in terms of number of queried tokens.", labels)
        self._counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", labels)
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          (*_LABELS, "finished_reason"), registry=self.registry)
        self._success = {reason: success.labels(*labels, reason) for reason in FINISH_REASONS}
        self.ttft = self._histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                                    _TTFT_BUCKETS, labels)
        self.itl = self._histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                                   _ITL_BUCKETS, labels)
        self.e2e = self._histogram("vllm:e2e_request_latency_seconds",
                                   "Histogram of e2e request latency in seconds.", _REQUEST_BUCKETS, labels)
        self.queue = self._histogram("vllm:request_queue_time_seconds",
                                     "Histogram of time spent in WAITING phase for request.", _REQUEST_BUCKETS, labels)
        self.prefill = self._histogram("vllm:request_prefill_time_seconds",
                                       "Histogram of time spent in PREFILL phase for request.", _REQUEST_BUCKETS,
                                       labels)
        self.decode = self._histogram("vllm:request_decode_time_seconds",
                                      "Histogram of time spent in DECODE phase for request.", _REQUEST_BUCKETS, labels)
        self._http = Counter("http_requests", "Total number of requests by method, status and handler.",
                             ("method", "status", "handler"), registry=self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: tuple[str, str]) -> Gauge:
        return Gauge(name, doc, _LABELS, registry=self.registry).labels(*labels)

    def _counter(self, name: str, doc: str, labels: tuple[str, str]) -> Counter:
        return Counter(name, doc, _LABELS, registry=self.registry).labels(*labels)

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, str]) -> Histogram:
        return Histogram(name, doc, _LABELS, registry=self.registry, buckets=buckets).labels(*labels)

    def finished(self, reason: str, *, e2e: float, queue: float, prefill: float, decode: float) -> None:
        """A request left the engine (``reason``: stop, length, abort or error)."""
        self._success[reason].inc()
        self.e2e.observe(e2e)
        self.queue.observe(queue)
        self.prefill.observe(prefill)
        self.decode.observe(decode)

    def http(self, method: str, status: int, handler: str) -> None:
        self._http.labels(method, f"{status // 100}xx", handler).inc()

    def render(self, *, running: int, waiting: int, kv_usage: float) -> bytes:
        """The exposition text, with the gauges set from the engine's state now."""
        self._running.set(running)
        self._waiting.set(waiting)
        self._kv.set(kv_usage)
        return generate_latest(self.registry)

