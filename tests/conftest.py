"""Shared fixtures: the example manifests as parsed objects and as editable dicts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy

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
