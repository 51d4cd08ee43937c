"""The declarative API of llmroute (group ``llmroute.io``, version ``v1alpha1``): pydantic models, no I/O.

The models are the single source of truth: :mod:`llmroute.api.crdgen` turns them into the CRDs in ``crds/``, their
field descriptions become ``kubectl explain`` text, and :mod:`llmroute.api.loader` validates YAML with them.
"""

from llmroute.api.llm_route import LLMRoute, LLMRouteSpec
from llmroute.api.provider_policy import ProviderPolicy, ProviderPolicySpec

__all__ = ["LLMRoute", "LLMRouteSpec", "ProviderPolicy", "ProviderPolicySpec"]
