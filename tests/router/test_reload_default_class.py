"""A reload mid-flight that changes the default data class binds the in-flight requests that declared none.

Found by the residency property test (``tests/property``): a request without ``x-llmroute-data-class`` started
under a config whose default class allowed a provider; a reload made another class the default, which allowed
nothing, and the request's failover still went to that provider - re-routed under the *old* default. Attempts after
a reload must be allowed by the config loaded since, and under that config the request is held to its default.
"""

from __future__ import annotations

import pytest

from tests.property.harness import InProcessRouter, SimulatedTimeLoop
from tests.property.world import BackendSpec, ClassRule, Config, ProviderFacts, Request, Scenario

pytestmark = pytest.mark.unit

US = ProviderFacts("us-a", "US", "NotUsed", None, (), "hosted")
EU = ProviderFacts("eu-b", "EU", "NotUsed", None, (), "hosted")
CLASSES = (ClassRule("public"), ClassRule("phi", jurisdictions=("US", "EU")),
           ClassRule("strict", jurisdictions=("CH",)))
BACKENDS = (("chat", (BackendSpec("us-a", "m-a", 0, 100), BackendSpec("eu-b", "m-b", 1, 100))),)


def _play(second_default: str, declared: str | None) -> list[tuple[str, bool]]:
    """(provider, after the reload) of every attempt of one request whose first attempt fails and whose config is
    swapped right after it: the second config makes ``second_default`` the route's default class."""
    first = Config((US, EU), CLASSES, "phi", "phi", BACKENDS)
    second = Config((US, EU), CLASSES, "phi", second_default, BACKENDS)
    scenario = Scenario((first, second), {"us-a": ("503",)}, {}, frozenset(), {}, ())
    loop = SimulatedTimeLoop()

    async def run() -> list[tuple[str, bool]]:
        router = InProcessRouter(scenario)
        try:
            _, trace, _ = await router.send(Request("chat", declared, reload_after=1))
        finally:
            await router.close()
        return [(a.provider, a.after_reload) for a in trace.attempts]

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


def test_an_undeclared_request_is_held_to_the_default_of_the_config_loaded_mid_flight() -> None:
    # the new default (strict: CH only) allows neither provider: the failover to eu-b must not happen
    assert _play("strict", None) == [("us-a", False)]


def test_the_failover_goes_on_when_the_new_default_allows_it() -> None:
    assert _play("phi", None) == [("us-a", False), ("eu-b", True)]


def test_a_declared_class_is_not_replaced_by_the_new_default() -> None:
    assert _play("strict", "phi") == [("us-a", False), ("eu-b", True)]
