"""The soak's short version in the suite: 5,000 requests through the real router must not grow its memory.

Runs :func:`tests.benchmarks.bench_soak.soak` (the on-demand 100,000-request benchmark's own code: streaming and not,
unknown models, streams dropped by the client) and fails when any RSS sample after the warm-up leaves +-10% of the
baseline, or when the run ends more than :data:`END_GROWTH_PCT` above it (a steady leak shows as growth at the end
long before it reaches 10%). Figures go to ``soak-rss`` (:mod:`tests.figures`).
"""

from __future__ import annotations

import pytest

from tests.benchmarks.bench_soak import TOLERANCE, soak
from tests.figures import record

pytestmark = pytest.mark.router
REQUESTS = 5_000
END_GROWTH_PCT = 3.0


def test_5000_requests_keep_router_rss_flat() -> None:
    result = soak(REQUESTS)
    assert result.unexpected == 0
    assert result.max_deviation_pct <= TOLERANCE * 100, result.curve
    assert result.end_deviation_pct < END_GROWTH_PCT, result.curve
    record(
        "soak-rss",
        {
            "suiteRequests": result.requests,
            "suiteBaselineMiB": result.baseline_mib,
            "suiteMaxDeviationPct": result.max_deviation_pct,
            "suiteEndDeviationPct": result.end_deviation_pct,
        },
    )
