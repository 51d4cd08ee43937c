"""Residency, fail-closed, property-based (issue 12): no attempt ever reaches a backend the request's rules forbid.

Random valid ProviderPolicies and LLMRoutes (:mod:`tests.property.world`, through the API models) x declared,
default and unknown data classes x PII in the request text (escalation) x fault scripts per provider (5xx, 429 with
short and long Retry-After, 402, 400/401/403, refused and reset connections, timeouts, streams cut after the first
event, slow first tokens) x time passing (circuits opening, probed, recovering in steps) x drills x ModelPools cold
and ready x config reloads between requests and **mid-flight** (a new compiled config made current between two
attempts of a request), run through the router's real request path (:mod:`tests.property.harness`) and checked
against an oracle that decides from the policy's facts alone (:mod:`tests.property.oracle`):

* every attempt - and every attempt a drill fails instead of sending - is to a backend (provider *and* upstream
  model) of the requested model that every class the request is held to allows and that has its key, under the
  config the request started with (a reload never widens what an in-flight request may use) **and**, for attempts
  after a mid-flight reload, under the config loaded since (a reload that narrows residency binds the retries and
  failovers of requests already in flight: stale config fails closed);
* every attempt carries its provider's own key (or none, self-hosted), never the client's;
* no attempt carries in clear a value of a type its provider requires redacted (``providers[].redaction``) under
  the config the request started with, nor, after a mid-flight reload, under the config loaded since (placeholders
  are issued once, under the first: a provider the new config redacts more for is skipped, fail closed); every
  other value the request holds reaches the provider as sent;
* nothing allowed: 403 ``no_compliant_backend`` with no attempt; allowed but none keyed: 503; unknown class: 400;
  unknown model: 404; otherwise the request is served by a usable backend, or passes that backend's own 4xx on, or
  fails closed with 503 ``no_healthy_backend`` - never anything else.

The compile-level property checks every (class, backend) verdict of the compiled config against the oracle,
including that a provider whose data-use terms are unstated or ``Unknown`` never satisfies a class that forbids
training or requires bounded retention.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given, note

from llmroute.core.pii import DEFAULT as DETECTOR
from llmroute.core.router_config import RouterConfig

from .conftest import STATS, examples
from .harness import Attempt, InProcessRouter, Outcome, SimulatedTimeLoop, Trace, compiled, secret_of
from .oracle import Expected, expect, permits, redacted
from .world import (
    CLASS_NAMES,
    DETECTABLE,
    PII_VALUES,
    REDACT_TYPES,
    Config,
    Reload,
    Request,
    Scenario,
    Wait,
    configs,
    request_text,
    scenarios,
)

pytestmark = pytest.mark.property

_LOOP = SimulatedTimeLoop()
"""One simulated-time loop for every example (scenarios clean up their tasks); time only moves forward."""


@pytest.fixture(scope="module", autouse=True)
def _loop() -> Iterator[None]:
    yield
    _LOOP.run_until_complete(_LOOP.shutdown_asyncgens())
    _LOOP.close()


# --- the router's attempt loop ------------------------------------------------------------------------------------


@examples(0.45)
@given(scenarios())
def test_no_attempt_reaches_a_forbidden_backend(scenario: Scenario) -> None:
    STATS["examples router"] += 1
    _LOOP.run_until_complete(_play(scenario))


def _concurrently(scenario: Scenario) -> Scenario:
    return dataclasses.replace(scenario, concurrent=True)


@examples(0.15)
@given(scenarios(reloads=True, pools=False, max_steps=4).map(_concurrently))
def test_concurrent_requests_under_reloads(scenario: Scenario) -> None:
    STATS["examples router, concurrent"] += 1
    _LOOP.run_until_complete(_play(scenario))


async def _play(scenario: Scenario) -> None:
    router = InProcessRouter(scenario)
    try:
        batch: list[Request] = []
        for step in (*scenario.steps, Wait(0.0)):
            if isinstance(step, Request):
                batch.append(step)
                if scenario.concurrent:
                    continue
            await _send_all(router, batch)
            batch = []
            if isinstance(step, Wait):
                await router.wait(step.seconds)
            elif isinstance(step, Reload):
                router.reload()
                note(f"reload: config #{router.config_index} is current")
    finally:
        await router.close()


async def _send_all(router: InProcessRouter, batch: list[Request]) -> None:
    if not batch:
        return
    results = await asyncio.gather(*(router.send(r) for r in batch))
    for request, (outcome, trace, snapshot) in zip(batch, results, strict=True):
        index = next(i for i, s in enumerate(router.snapshots) if s is snapshot)  # the config it started under
        _check(router, router.scenario.configs[index], request, outcome, trace)


def _check(router: InProcessRouter, config: Config, request: Request, outcome: Outcome, trace: Trace) -> None:
    want = expect(config, request)
    held = frozenset(request.pii)
    states = {k: str(v) for k, v in router.health.states().items() if str(v) != "healthy"}
    note(
        f"{request} -> {want.describe()}; attempts {[_short(a, held) for a in trace.attempts]}"
        f"{f', drilled {trace.drilled}' if trace.drilled else ''}; answered {outcome.status} {outcome.code or ''}"
        f"{f' by {outcome.provider}' if outcome.provider else ''}; circuits {states or 'all healthy'}"
    )
    STATS["requests"] += 1
    STATS["attempts"] += len(trace.attempts)
    STATS["drilled attempts"] += len(trace.drilled)
    STATS[f"answers {outcome.status}"] += 1
    usable = {p for p, _ in want.usable}
    for a in trace.attempts:
        assert (a.provider, a.model) in want.usable, (
            f"attempt reached {a.provider}/{a.model}, forbidden: {want.describe()}"
        )
        facts = config.provider(a.provider)
        assert a.authorization == (secret_of(a.provider) if facts.hosting == "hosted" else None), (
            f"attempt to {a.provider} carried the wrong credentials"
        )
        clear = _in_clear(a, held)
        owed = redacted(config, a.provider) & held
        STATS["attempts with values redacted"] += bool(owed)
        assert clear == held - owed, (
            f"attempt to {a.provider} carried {sorted(clear)} in clear, it requires {sorted(owed)} redacted "
            f"(the request holds {sorted(held)})"
        )
        if a.after_reload:  # stale config fails closed: the config loaded since must allow the attempt too
            STATS["attempts after a mid-flight reload"] += 1
            current = router.scenario.configs[a.config_index]
            now = expect(current, request)
            assert (a.provider, a.model) in now.usable, (
                f"attempt after a reload reached {a.provider}/{a.model}, which the config then current forbids: "
                f"{now.describe()}"
            )
            leaked = clear & redacted(current, a.provider)  # ... and its redaction: nothing it redacts in clear
            STATS["attempts after a reload, redacted by the config loaded since"] += bool(
                held & redacted(current, a.provider)
            )
            assert not leaked, (
                f"attempt after a reload carried {sorted(leaked)} in clear to {a.provider}, which the config then "
                f"current (#{a.config_index}) requires redacted"
            )
    for provider in trace.drilled:
        assert provider in usable, f"a drill was asked about {provider}, which is not usable: {want.describe()}"
    _check_answer(want, outcome, trace, usable)


def _check_answer(want: Expected, outcome: Outcome, trace: Trace, usable: set[str]) -> None:
    status, code = outcome.status, outcome.code
    tried = trace.attempts or trace.drilled
    if not want.known_class:
        assert (status, code) == (400, "unknown_data_class") and not tried
    elif not want.known_model:
        assert (status, code) == (404, "model_not_found") and not tried
    elif not want.allowed:
        assert (status, code) == (403, "no_compliant_backend") and not tried, "nothing allowed must be a 403"
    elif not want.usable:
        assert (status, code) == (503, "no_healthy_backend") and not tried
    elif status == 503:
        assert code == "no_healthy_backend", f"fail closed must say no_healthy_backend, said {code}"
    else:
        assert status in (200, 400), f"unexpected answer {status} {code}"
        assert outcome.provider in usable, f"answered by {outcome.provider}, usable {sorted(usable)}"


def _in_clear(a: Attempt, held: frozenset[str]) -> frozenset[str]:
    """The types of the request whose values ``a`` sent as the client wrote them."""
    return frozenset(t for t in held if PII_VALUES[t] in a.body)


def _short(a: Attempt, held: frozenset[str]) -> str:
    pod = " (pod)" if a.pod else ""
    clear = _in_clear(a, held)
    shown = f" clear {'+'.join(sorted(clear))}" if clear else ""
    hidden = f" redacted {'+'.join(sorted(held - clear))}" if held - clear else ""
    return f"{a.provider}/{a.model}{pod}{' after reload' if a.after_reload else ''}{shown}{hidden}"


@pytest.mark.parametrize("pii", [c for k in (1, 2) for c in itertools.combinations(DETECTABLE, k)])  # as drawn
def test_the_values_the_oracle_looks_for_are_those_the_detector_finds(pii: tuple[str, ...]) -> None:
    """The redaction check looks for :data:`PII_VALUES` in what providers receive: in every text a request of the
    worlds sends, the detector finds exactly those values of the types providers may redact (no more, no less)."""
    text = request_text(pii)
    found = {(f.type, text[f.start : f.end]) for f in DETECTOR.detect(text)}
    assert found == {(t, PII_VALUES[t]) for t in pii if t in REDACT_TYPES}


# --- the compiled config ------------------------------------------------------------------------------------------


@examples(0.40)
@given(configs())
def test_compiled_routes_match_the_oracle(config: Config) -> None:
    """Every (model, class, backend) of the compiled config is allowed exactly when the oracle allows it, and denied
    with reasons otherwise; a provider with unstated or Unknown terms never meets NotUsed/Zero/Bounded."""
    STATS["examples compile"] += 1
    compiled_config: RouterConfig = compiled(config).config
    for model in compiled_config.models:
        backends = {(b.provider, b.model) for b in config.backends(model.name)}
        for route in model.classes:
            allowed = {(b.provider, b.model) for b in route.allowed}
            denied = {(d.provider, d.model): d.reasons for d in route.denied}
            want = {(p, m) for p, m in backends if permits(route.data_class, config, config.provider(p))}
            note(f"{model.name}/{route.data_class}: compiled allows {sorted(allowed)}, oracle {sorted(want)}")
            assert allowed == want
            assert set(denied) == backends - want and all(denied.values())
            rule = config.data_class(route.data_class)
            assert rule is not None
            for p, _ in allowed:
                facts = config.provider(p)
                STATS["compiled verdicts"] += 1
                if rule.training == "NotUsed":
                    assert facts.training == "NotUsed", f"{p} with training terms {facts.training} allowed"
                if rule.retention in ("Zero", "Bounded"):
                    assert facts.retention not in (None, "Unknown"), f"{p} with unknown retention allowed"
    assert set(compiled_config.data_classes) == {c.name for c in config.classes} <= set(CLASS_NAMES)
