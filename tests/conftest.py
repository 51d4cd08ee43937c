"""Shared fixtures: the example manifests as parsed objects and as editable dicts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core.router_config import CircuitSettings

CIRCUIT = CircuitSettings(
    consecutive_failures=5,
    error_rate=0.5,
    min_requests=10,
    window_s=30.0,
    open_s=30.0,
    recovery_steps=(0.1, 0.5, 1.0),
    recovery_step_s=15.0,
    slow_first_token_s=8.0,
)
"""The circuit settings the example route compiles to (defaults), in seconds and fractions."""

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "deepseek-residency"


def example_doc(name: str) -> dict[str, Any]:
    """A fresh, editable copy of an example document (``policy``, ``route`` or ``secrets``)."""
    return copy.deepcopy(yaml.safe_load((EXAMPLE / f"{name}.yaml").read_text()))


@pytest.fixture()
def policy_doc() -> dict[str, Any]:
    return example_doc("policy")


@pytest.fixture()
def route_doc() -> dict[str, Any]:
    return example_doc("route")


@pytest.fixture()
def policy(policy_doc: dict[str, Any]) -> ProviderPolicy:
    return ProviderPolicy.model_validate(policy_doc)


@pytest.fixture()
def route(route_doc: dict[str, Any]) -> LLMRoute:
    return LLMRoute.model_validate(route_doc)
