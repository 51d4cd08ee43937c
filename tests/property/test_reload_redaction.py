"""A reload mid-flight that makes a provider redact a type binds the in-flight requests that hold it.

A request's placeholders are issued once, under the config it started with. When a reload lands between two of
its attempts and the new config makes a provider require a type redacted (``providers[].redaction``) that the old
one let it receive, a failover to that provider would carry the value in clear: the provider is skipped instead
(fail closed, :func:`llmroute.router.redaction.covered_after_reload`). The residency property test checks this
over random worlds (:mod:`tests.property.test_residency_invariant`); these are its shortest case, by hand, and the
cases next to it that must go on as before.
"""

from __future__ import annotations

import dataclasses

import pytest

from .harness import Attempt, InProcessRouter, Outcome, SimulatedTimeLoop
from .world import PII_VALUES, BackendSpec, ClassRule, Config, ProviderFacts, Request, Scenario

pytestmark = pytest.mark.property

FIRST = ProviderFacts("p-a", "US", "NotUsed", None, (), "hosted")
SECOND = ProviderFacts("p-b", "US", "NotUsed", None, (), "hosted")
BACKENDS = (("chat", (BackendSpec("p-a", "chat-on-a", 0, 1), BackendSpec("p-b", "chat-on-b", 1, 1))),)
EMAIL = PII_VALUES["email"]
SSN = PII_VALUES["us_ssn"]


def _config(second_redacts: tuple[str, ...], mode: str) -> Config:
    second = dataclasses.replace(SECOND, redacts=second_redacts, redaction_mode=mode)
    return Config((FIRST, second), (ClassRule("public"),), "public", None, BACKENDS)


def _play(
    before: tuple[str, ...],
    after: tuple[str, ...],
    pii: tuple[str, ...],
    *,
    mode: str = "chat",
    redaction_mode: str = "Redact",
) -> tuple[Outcome, list[Attempt]]:
    """One request holding ``pii``: its first attempt (to p-a) fails with 503, and right after it was sent a config
    is loaded in which p-b redacts ``after`` (it redacted ``before`` in the config the request started with)."""
    scenario = Scenario(
        (_config(before, redaction_mode), _config(after, redaction_mode)),
        {"p-a": ("503",)},
        {},
        frozenset(),
        {},
        (),
    )
    loop = SimulatedTimeLoop()

    async def run() -> tuple[Outcome, list[Attempt]]:
        router = InProcessRouter(scenario)
        try:
            outcome, trace, _ = await router.send(Request("chat", None, pii, mode, reload_after=1))
        finally:
            await router.close()
        return outcome, trace.attempts

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


def _route(attempts: list[Attempt]) -> list[tuple[str, bool]]:
    return [(a.provider, a.after_reload) for a in attempts]


@pytest.mark.parametrize("redaction_mode", ["Redact", "Restore"])
@pytest.mark.parametrize("mode", ["chat", "stream", "embeddings"])
def test_a_provider_the_reload_makes_redact_a_held_type_never_receives_it_in_clear(
    mode: str, redaction_mode: str
) -> None:
    outcome, attempts = _play((), ("email",), ("email",), mode=mode, redaction_mode=redaction_mode)
    assert not [a for a in attempts if a.provider == "p-b" and EMAIL in a.body]
    # p-b is skipped (the request's placeholders were issued under the old config, which had none for email): the
    # retry goes back to p-a, which no config redacts for
    assert _route(attempts) == [("p-a", False), ("p-a", True)]
    assert all(EMAIL in a.body for a in attempts)
    assert (outcome.status, outcome.provider) == (200, "p-a")


def test_the_failover_goes_on_when_the_request_holds_no_type_the_reload_redacts() -> None:
    outcome, attempts = _play((), ("email",), ("us_ssn",))
    assert _route(attempts) == [("p-a", False), ("p-b", True)]
    assert SSN in attempts[1].body
    assert (outcome.status, outcome.provider) == (200, "p-b")


def test_the_failover_goes_on_with_placeholders_when_the_first_config_redacted_the_type_already() -> None:
    outcome, attempts = _play(("email",), ("email",), ("email", "us_ssn"))
    assert _route(attempts) == [("p-a", False), ("p-b", True)]
    assert EMAIL in attempts[0].body and EMAIL not in attempts[1].body and SSN in attempts[1].body
    assert (outcome.status, outcome.provider) == (200, "p-b")


def test_a_reload_that_drops_a_redaction_does_not_put_the_value_back_in_clear() -> None:
    outcome, attempts = _play(("email",), (), ("email",))
    assert _route(attempts) == [("p-a", False), ("p-b", True)]
    assert EMAIL not in attempts[1].body  # the request keeps the placeholders it was issued
    assert (outcome.status, outcome.provider) == (200, "p-b")
