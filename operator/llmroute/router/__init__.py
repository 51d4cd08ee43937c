"""The data plane: an OpenAI-compatible proxy that sends each request only where its data class may go and fails
over between providers.

* :mod:`~llmroute.router.server` - the process: ``serve()``, signals, uvloop, graceful drain.
* :mod:`~llmroute.router.http_server` - the client-facing HTTP/1.1 server (llhttp): limits, deadlines, errors.
* :mod:`~llmroute.router.app` - the routes and the runtime owning the shared upstream client.
* :mod:`~llmroute.router.config_source` - loading (compiled RouterConfig or local YAML), keys, live reload.
* :mod:`~llmroute.router.proxy` - one request: parse, model, data class, residency; then
  :mod:`~llmroute.router.failover` - the attempts (selection, retry, circuits) via
  :mod:`~llmroute.router.upstream` (the only outbound HTTP) and :mod:`~llmroute.router.sse` (relay/assembly).
* :mod:`~llmroute.router.pools` - ModelPool pods: discovery (:mod:`~llmroute.router.pod_discovery`), load scrapes,
  picking, and requests held while a pool starts with the demand signal (:mod:`~llmroute.router.holding`).
* :mod:`~llmroute.router.health` - circuits and unbilled probes; :mod:`~llmroute.router.metrics` - Prometheus;
  :mod:`~llmroute.router.openai_errors` - OpenAI-shaped errors; :mod:`~llmroute.router.client` - the client seam.
"""
