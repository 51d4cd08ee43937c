"""What the router exports and logs: every metric of the contract, series pre-created, and nothing private.

Aspects: ``/metrics`` carries each ``llmroute_*`` metric, with label values pre-created for the config (series at 0
before any failure) and bounded labels (an unknown model is ``none``); requests, failovers, attempts, residency
denials and TTFT are counted; neither ``/metrics`` nor the router's log contains prompt text, completions, provider
keys or the client's key.
"""

from __future__ import annotations

import openai
import pytest

from .conftest import CLIENT_KEY, KEYS, Hub, RouterProcess
from .test_streaming import counter

pytestmark = pytest.mark.router
SECRET_PROMPT = "PURPLE-ELEPHANT-7731 my card is 4111-1111-1111-1111"
METRICS = (
    "llmroute_requests_total", "llmroute_request_duration_seconds_bucket",
    "llmroute_time_to_first_token_seconds_bucket", "llmroute_failovers_total", "llmroute_residency_denials_total",
    "llmroute_upstream_attempts_total", "llmroute_circuit_state", "llmroute_stream_errors_total",
    "llmroute_inflight_requests", "llmroute_config_reloads_total", "llmroute_config_info",
)


def test_metrics_are_exported_and_pre_created(router: RouterProcess) -> None:
    text = router.metrics()
    for name in METRICS:
        assert f"\n{name}" in text, name
    assert ('llmroute_requests_total{data_class="pii",jurisdiction="none",model="deepseek-chat",'
            'outcome="no_healthy_backend",provider="none"}') in text
    assert 'llmroute_failovers_total{from_provider="together",model="deepseek-chat",reason="ttft_timeout"}' in text
    assert 'llmroute_circuit_state{backend="deepseek.v3-v1:0",provider="bedrock",state="healthy"} 1.0' in text
    assert 'llmroute_config_info{hash="' in text and 'route="llm/chat"' in text
    assert 'llmroute_config_reloads_total{result="ok"} 1.0' in text


def test_requests_are_counted_with_bounded_labels(client: openai.OpenAI, hub: Hub, router: RouterProcess) -> None:
    ok = ('llmroute_requests_total{data_class="internal",jurisdiction="US",model="deepseek-chat",outcome="ok",'
          'provider="fireworks"}')
    failover = 'llmroute_failovers_total{from_provider="together",model="deepseek-chat",reason="unavailable"}'
    denied = 'llmroute_residency_denials_total{data_class="restricted",model="deepseek-chat"}'
    before = {s: counter(router, s) for s in (ok, failover, denied)}
    hub["together"].set_faults(status=503)
    client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-llmroute-data-class": "restricted"})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="made-up-model-name", messages=[{"role": "user", "content": "hi"}])
    assert {s: counter(router, s) - before[s] for s in before} == {ok: 1, failover: 1, denied: 1}
    text = router.metrics()
    assert "made-up-model-name" not in text
    assert counter(router, 'llmroute_upstream_attempts_total{provider="together",reason="unavailable"}') >= 1
    assert counter(router, 'llmroute_time_to_first_token_seconds_count{provider="fireworks"}') >= 1


def test_no_prompts_completions_or_keys_in_metrics_or_logs(client: openai.OpenAI, hub: Hub,
                                                           router: RouterProcess) -> None:
    hub["together"].set_faults(status=500)
    answer = client.chat.completions.create(model="deepseek-chat",
                                            messages=[{"role": "user", "content": SECRET_PROMPT}])
    list(client.chat.completions.create(model="deepseek-chat", stream=True,
                                        messages=[{"role": "user", "content": SECRET_PROMPT}]))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=SECRET_PROMPT, messages=[{"role": "user", "content": SECRET_PROMPT}])
    completion = answer.choices[0].message.content or ""
    for text in (router.metrics(), router.log()):
        assert "PURPLE-ELEPHANT" not in text and "4111-1111" not in text
        assert completion not in text
        assert CLIENT_KEY not in text
        for key in KEYS.values():
            assert key not in text
