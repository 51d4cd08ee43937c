"""Outage replays: DeepSeek's five incident shapes against the real router, with concurrent streaming and
non-streaming openai SDK clients, time-compressed (:mod:`tests.router.outage_replay`: one run of about a minute,
shared by the tests of this module).

Per incident: no client-visible error and no lost request while the US hosts are up; traffic leaves DeepSeek (for
each model, whose DeepSeek backend has its own circuit, the first window with < 1% of its public requests touching
it) well within the incident, and what still reaches it after that is the circuits' recovery trials, not retries;
after recovery the traffic comes back in the circuit's steps (a first bucket below 90%, then all of it); the clients'
view of who touched DeepSeek agrees with the emulator's count; and no pii/phi request reached DeepSeek at any point.
Figures go to ``outage-replay`` (:mod:`tests.figures`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmroute.local.traffic import Result
from tests.figures import Figure, record

from .outage_replay import INCIDENT_S, INCIDENTS_REPLAYED, TIME_SCALE, IncidentFigures, Replay, _left, _onset, run

pytestmark = pytest.mark.router
NAMES = [p.name for p in INCIDENTS_REPLAYED]


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    result = run(Path(tmp_path_factory.mktemp("replay")) / "example")
    figures: dict[str, Figure] = {
        "timeScale": TIME_SCALE,
        "incidentS": INCIDENT_S,
        "baselineSharePct": result.baseline_share_pct,
        "sensitiveToCN": result.sensitive_to_cn,
    }
    figures["incidents"] = [i.name for i in result.incidents]
    for i in result.incidents:
        figures[f"{i.name}.incident"] = i.incident
        figures |= {
            f"{i.name}.{k}": v
            for k, v in (
                ("requests", i.requests),
                ("streamed", i.streamed),
                ("errors", i.errors),
                ("lost", i.lost),
                ("below1pctAfterS", i.below_1pct_after_s),
                ("residualPct", i.residual_pct),
                ("returnFirstS", i.return_first_s),
                ("returnFullS", i.return_full_s),
            )
        }
        figures[f"{i.name}.returnStepsPct"] = " / ".join(f"{s:.0f}" for s in i.return_steps_pct[:4])
    record("outage-replay", figures)
    return result


def incident(replay: Replay, name: str) -> IncidentFigures:
    return next(i for i in replay.incidents if i.name == name)


@pytest.mark.parametrize("name", NAMES)
def test_no_client_error_and_no_lost_request(replay: Replay, name: str) -> None:
    i = incident(replay, name)
    assert i.requests > 100 and 0.3 < i.streamed / i.requests < 0.7  # real load, streaming and not
    assert i.errors == 0
    assert i.lost == 0


@pytest.mark.parametrize("name", NAMES)
def test_traffic_leaves_deepseek_within_the_incident(replay: Replay, name: str) -> None:
    i = incident(replay, name)
    # the slowest shape needs the time-to-first-token budget per failed attempt, and the reasoner's circuit
    # (a fifth of the traffic) its own failures: traffic must still be gone well before the incident ends
    assert i.below_1pct_after_s is not None and i.below_1pct_after_s < INCIDENT_S - 1, i
    assert i.residual_pct < 25, i  # recovery trials only: without the circuit every request would touch it


@pytest.mark.parametrize("name", NAMES)
def test_traffic_returns_after_recovery_in_steps(replay: Replay, name: str) -> None:
    i = incident(replay, name)
    assert i.return_first_s is not None and i.return_full_s is not None
    assert i.return_steps_pct[0] < 90  # not all at once: the first step is a share
    # and then all of it by the last step; the steps between are the ramp (their shares depend on where the step
    # boundaries fall: 72-90% were both seen for the one before the last)
    assert i.return_steps_pct[-1] >= 90 and i.return_steps_pct[-1] > i.return_steps_pct[0]


def test_the_clients_view_agrees_with_the_emulators_count(replay: Replay) -> None:
    for i in replay.incidents:
        assert abs(i.attempts_at_target - i.touched_target) <= max(8, 0.1 * i.touched_target), i


def test_deepseek_served_before_the_incidents_and_never_saw_sensitive_data(replay: Replay) -> None:
    assert replay.baseline_share_pct > 80
    assert replay.sensitive_to_cn == 0


def test_traffic_leaves_per_model_whatever_the_phase_of_the_circuits() -> None:
    # Each model's circuit keeps its traffic off DeepSeek for more than a window, but not in the same window: the
    # chat's opens at 1 s and lets trials through at 2.5-3.5 s and 4.5-5.5 s, the reasoner's opens at 1.9 s. No window
    # is free of both models' requests to DeepSeek, yet the traffic of each has left by 1.9 s (trials only after that).
    def req(model: str, t: float, touched: bool) -> Result:
        return Result("slow-first-token", "public", model, False, 10 + t, True, None, 200,
                      "deepseek" if touched else "together", 1, 0.1, 0.1)

    def trial(k: int) -> bool:
        return (50 <= k < 74 or 90 <= k < 114) and k % 4 == 2

    chat = [req("deepseek-chat", k / 20, k < 20 or trial(k)) for k in range(120)]
    reasoner = [req("deepseek-reasoner", k / 5, k < 10) for k in range(30)]  # the last to touch it: at 1.8 s
    both = sorted(chat + reasoner, key=lambda r: r.started)
    assert _left(10.0, 16.0, both) is None  # the single window over both models: never
    left = _onset(both, 10.0, 16.0)
    assert dict(left["left_after_s"]) == {"deepseek-chat": 1.0, "deepseek-reasoner": 1.9}
    assert left["below_1pct_after_s"] == 1.9
    assert left["residual_pct"] == 10.0  # 12 trials among the chat's last 100 requests, none of the reasoner's 20
    # a model whose traffic never leaves: no leave time for the incident, whatever the other did
    stuck = [req("deepseek-reasoner", k / 5, True) for k in range(30)]
    assert _onset(sorted(chat + stuck, key=lambda r: r.started), 10.0, 16.0)["below_1pct_after_s"] is None
