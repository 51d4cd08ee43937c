"""llmroute: declarative, residency-aware, failover-safe routing of OpenAI-compatible LLM traffic.

Layers (enforced by import-linter, see pyproject.toml):

* :mod:`llmroute.api` - the declarative API (pydantic models, CRD generation); no I/O.
* :mod:`llmroute.core` - pure decisions (residency, compile, selection, circuit, retry); no I/O.
* :mod:`llmroute.router` - the OpenAI-compatible data plane.
* :mod:`llmroute.controller` - the kopf operator.
* :mod:`llmroute.cli` - the ``llmroute`` command.
"""

__version__ = "0.1.0"
