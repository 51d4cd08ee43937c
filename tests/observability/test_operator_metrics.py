"""The operator's metrics module on its own: pre-created reconcile series, the reconcile timer's error accounting,
one-hot provider health, forgetting removed providers and policies, and the exposition served over HTTP."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmroute.api.provider_policy import ProviderState
from llmroute.controller import metrics
from tests.observability.conftest import free_port

pytestmark = pytest.mark.observability


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_every_kind_and_result_is_precreated() -> None:
    for kind in metrics.KINDS:
        for result in metrics.Result:
            assert sample("llmroute_operator_reconciles_total", kind=kind, result=result) is not None


def test_timed_reconcile_counts_success_chosen_results_and_errors() -> None:
    def count(result: str) -> float:
        return sample("llmroute_operator_reconciles_total", kind="LLMRoute", result=result) or 0.0

    before = {r: count(r) for r in metrics.Result}
    with metrics.timed_reconcile("LLMRoute"):
        pass
    with metrics.timed_reconcile("LLMRoute") as outcome:
        outcome.result = metrics.Result.POLICY_NOT_FOUND
    with pytest.raises(RuntimeError), metrics.timed_reconcile("LLMRoute"):
        raise RuntimeError("boom")
    assert {r: count(r) - before[r] for r in metrics.Result} == {
        "success": 1, "compile_error": 0, "policy_not_found": 1, "error": 1}


def test_provider_health_is_one_hot_and_forgotten_with_its_policy() -> None:
    metrics.set_provider_health("p-test", "deepseek", ProviderState.DOWN)
    metrics.set_provider_health("p-test", "deepseek", ProviderState.HEALTHY)
    metrics.set_probe_latency("p-test", "deepseek", 0.25)
    states = {s: sample("llmroute_provider_health", policy="p-test", provider="deepseek", state=s)
              for s in ProviderState}
    assert states == {s: (1.0 if s is ProviderState.HEALTHY else 0.0) for s in ProviderState}
    assert sample("llmroute_provider_probe_latency_seconds", policy="p-test", provider="deepseek") == 0.25
    metrics.forget_policy("p-test")
    assert sample("llmroute_provider_health", policy="p-test", provider="deepseek", state="Healthy") is None
    assert sample("llmroute_provider_probe_latency_seconds", policy="p-test", provider="deepseek") is None


def test_the_metrics_server_serves_the_registry() -> None:
    port = free_port()
    metrics.start_metrics_server("127.0.0.1", port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"llmroute_operator_reconciles", "llmroute_operator_reconcile_duration_seconds"} <= names
    assert "process_cpu_seconds" in names
