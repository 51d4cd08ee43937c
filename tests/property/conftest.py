"""Hypothesis profiles for the property tier, the example budget, and the tier's figures in the terminal summary.

Two profiles, chosen by the environment so the default run stays the CI run:

* ``llmroute-ci`` (default): derandomized (the same examples every run, so a CI failure reproduces locally), no
  example database, :data:`DEFAULT_EXAMPLES` examples over the tier's properties.
* ``llmroute-slow``: ``LLMROUTE_PROPERTY_EXAMPLES=200000 pytest tests/property`` - random seeds each run, the
  local example database (``.hypothesis/``, git-ignored) so a failure found once is replayed first next time, and
  that many examples in all.

Each property takes a share of the budget (:func:`examples`). Profiles are applied per test (``settings(parent=...)``),
never loaded globally, so other tiers' hypothesis tests keep their own settings in a mixed run. The router's own log
lines (circuit transitions, drills) are raised to ERROR here: thousands of scenarios would otherwise fill the
captured log; errors still show.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.figures import record

EXAMPLES_ENV = "LLMROUTE_PROPERTY_EXAMPLES"
DEFAULT_EXAMPLES = 10_500
SLOW = EXAMPLES_ENV in os.environ
TOTAL_EXAMPLES = int(os.environ.get(EXAMPLES_ENV, DEFAULT_EXAMPLES))

settings.register_profile(
    "llmroute-ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "llmroute-slow",
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("llmroute-slow" if SLOW else "llmroute-ci")

PROPERTIES = frozenset(
    {
        "test_no_attempt_reaches_a_forbidden_backend",
        "test_concurrent_requests_under_reloads",
        "test_compiled_routes_match_the_oracle",
    }
)
"""The tier's properties (test_residency_invariant.py); the other tests here are examples they found."""
STATS: Counter[str] = Counter()
"""What the properties exercised (examples, requests, attempts, outcomes); printed in the terminal summary."""
_TIMES: dict[str, float] = {}


def examples(share: float) -> settings:
    """Settings for a property that runs ``share`` of the tier's example budget."""
    return settings(parent=PROFILE, max_examples=max(1, round(TOTAL_EXAMPLES * share)))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "property: property-based invariants (hypothesis), tests/property")


@pytest.fixture(autouse=True)
def _quiet_router_logs() -> Iterator[None]:
    logger = logging.getLogger("llmroute")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.fixture(autouse=True)
def _timed(request: pytest.FixtureRequest) -> Iterator[None]:
    started = time.perf_counter()
    yield
    if request.node.name in PROPERTIES:
        _TIMES[request.node.name] = time.perf_counter() - started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if not _TIMES:
        return
    seconds = sum(_TIMES.values())
    cases = sum(v for k, v in STATS.items() if k.startswith("examples "))
    if exitstatus == 0 and _TIMES.keys() == PROPERTIES:  # the tier ran and held: its figures for docs/reliability.md
        record(
            "residency-property",
            {
                "examples": cases,
                "seconds": round(seconds, 1),
                "requests": STATS["requests"],
                "attempts": STATS["attempts"] + STATS["drilled attempts"],
                "attemptsAfterReload": STATS["attempts after a mid-flight reload"],
                "attemptsRedacted": STATS["attempts with values redacted"],
                "compiledVerdicts": STATS["compiled verdicts"],
                "violations": 0,
            },
            test="tests/property/test_residency_invariant.py",
        )
    terminalreporter.section("residency properties")
    terminalreporter.write_line(
        f"profile llmroute-{'slow' if SLOW else 'ci'}: {cases} cases in {seconds:.1f} s "
        f"({cases / seconds if seconds else 0:.0f} cases/s)"
    )
    for key, value in sorted(STATS.items()):
        terminalreporter.write_line(f"  {key}: {value}")
    for name, took in _TIMES.items():
        terminalreporter.write_line(f"  {name}: {took:.1f} s")
