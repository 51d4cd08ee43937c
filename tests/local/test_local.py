"""``llmroute local``: the whole drill as a subprocess (emulators, the example's ModelPool as emulated vLLM pods, the
real router process, the openai SDK), and the live view rendered headlessly."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from llmroute.local.drill import DEEPSEEK_DRILL, schedule
from llmroute.local.report import PhaseSummary, Summary
from llmroute.local.view import PoolRow, ProviderRow, Snapshot, render, render_summary
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.router
Drill = tuple[subprocess.CompletedProcess[str], dict[str, Any]]
POOL = "deepseek-v3"  # the example's ModelPool, behind provider vllm
OUTAGES = ("full-outage", "half-errors", "slow-first-token", "partial-outage")


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Drill:
    out = tmp_path_factory.mktemp("local") / "summary.json"
    # 7 s phases: the recovery phase must hold the prober's noticing, the prewarm hold and the scale-down delay (each
    # capped at a quarter phase) with room to spare on a loaded 2-core CI machine (at 5 s phases one run in ~20 kept
    # the pool at its peak until the end)
    proc = subprocess.run(
        [sys.executable, "-m", "llmroute", "local", "--no-tui", "--duration", "42", "--summary-json", str(out)],
        capture_output=True, text=True, timeout=180, check=False,
    )
    return proc, json.loads(out.read_text()) if out.exists() else {}


def test_drill_exits_zero_and_prints_the_proof(drill: Drill) -> None:
    proc, _ = drill
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pii/phi requests sent to CN: 0" in proc.stdout
    for phase in DEEPSEEK_DRILL:
        assert phase.name in proc.stdout


def test_no_sensitive_request_reached_cn(drill: Drill) -> None:
    _, summary = drill
    assert summary["sensitiveToCN"] == 0
    assert set(summary["violations"].values()) == {0}
    received = summary["received"]
    assert set(received["deepseek"]) <= {"public"}
    assert received["deepseek"].get("public", 0) > 0  # the drill did reach DeepSeek


def test_full_outage_is_invisible_to_non_streaming_clients(
    drill: Drill,
) -> None:
    _, summary = drill
    phases = {p["name"]: p for p in summary["phases"]}
    outage = phases["full-outage"]
    assert outage["requests"] > 0
    assert outage["errors_non_stream"] == 0
    assert outage["failed_over"] > 0
    assert outage["target_open_after_s"] is not None
    assert "deepseek" not in outage["share"] or outage["share"]["deepseek"] < 0.05
    assert phases["baseline"]["share"].get("deepseek", 0) > 0.2


def test_every_phase_reports_the_pools_replicas(drill: Drill) -> None:
    _, summary = drill
    assert [p["name"] for p in summary["phases"]] == [p.name for p in DEEPSEEK_DRILL]
    for phase in summary["phases"]:
        assert set(phase["pool_replicas"]) == {POOL}
        replicas = phase["pool_replicas"][POOL]
        assert set(replicas) == {"min", "max"}
        assert 0 <= replicas["min"] <= replicas["max"] <= 4  # the example's replicas.max


def test_the_pool_warms_for_the_outage_serves_it_and_drains_back(drill: Drill) -> None:
    _, summary = drill
    phases = {p["name"]: p for p in summary["phases"]}
    replicas = {name: p["pool_replicas"][POOL] for name, p in phases.items()}
    assert replicas["baseline"]["max"] == 0  # no GPUs while DeepSeek is healthy
    assert "vllm" not in phases["baseline"]["share"]
    assert replicas["full-outage"]["max"] >= 2  # prewarm.replicas, started when the prober saw deepseek Down
    assert all(replicas[name]["max"] > 0 for name in OUTAGES)
    assert any(phases[name]["share"].get("vllm", 0) > 0.2 for name in OUTAGES)  # our GPUs served the outage
    peak = max(replicas[name]["max"] for name in OUTAGES)
    assert replicas["recovery"]["min"] < peak  # the prewarm hold ended: back down (pii/internal/phi keep one)


def test_the_pools_pods_count_in_the_residency_proof(drill: Drill) -> None:
    _, summary = drill
    received = summary["received"]["vllm"]
    assert received.get("pii", 0) > 0 and received.get("phi", 0) > 0  # counted at the pods, by their user tags
    assert summary["sensitiveToCN"] == 0
    assert summary["violations"]["pii"] == summary["violations"]["phi"] == 0


def test_public_prompts_carrying_personal_data_are_escalated_and_never_reach_cn(drill: Drill) -> None:
    proc, summary = drill
    e = summary["escalations"]
    assert e["carryingPersonalData"].get("public", 0) > 0
    assert e["escalated"] == e["carryingPersonalData"]  # every one, answered x-llmroute-data-class: <declared>,pii
    assert e["missed"] == 0
    assert set(e["toCN"].values()) == {0}
    assert set(e["byClass"]) <= {"public,pii", "internal,pii"} and e["byClass"]["public,pii"]
    assert sum(p["escalations"] for p in summary["phases"]) == e["requests"] > 0
    assert all(set(p["escalations_by_class"]) <= set(e["byClass"]) for p in summary["phases"])
    router = sum(r["count"] for r in e["router"] if r["from"] == "public" and r["to"] == "pii")
    assert router >= e["escalated"]["public"]  # the router's llmroute_escalations_total saw them too
    received = summary["received"]
    assert "public,pii" not in received["deepseek"]  # measured at DeepSeek's emulator, by the user tag
    assert sum(by_cls.get("public,pii", 0) for by_cls in received.values()) > 0
    assert f"public requests escalated for personal data: {e['escalated']['public']} (0 sent to CN)" in proc.stdout
    assert "escalated on content: " in proc.stdout and "public→pii: " in proc.stdout


def test_missing_example_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "llmroute", "local", str(tmp_path / "nope")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"llmroute: error: {tmp_path / 'nope'}: no such example folder"


def test_live_view_shows_every_section() -> None:
    snap = Snapshot(
        phase="full-outage", incident="Jan 2025, ~18 h: complete API outage", elapsed_s=12.0, total_s=90.0,
        providers=(ProviderRow("deepseek", "CN", "open", 0.0, 1.0, None),
                   ProviderRow("together", "US", "healthy", 12.5, 0.0, 0.012)),
        class_jurisdictions={"pii": {"US": 40}, "public": {"CN": 10, "US": 30}},
        failovers=7, residency_denials=0, client_errors=0, requests=120,
        pools=(PoolRow("deepseek-v3", "vllm", replicas=2, ready=1, desired=2, gpus_per_replica=8, held=0,
                       reason="Prewarm", message="prewarm: deepseek-residency/deepseek is Down (>= 2 replicas)"),),
    )
    console = Console(record=True, width=160)
    console.print(render(snap))
    text = console.export_text()
    for expected in ("phase full-outage", "providers", "circuit", "open", "TTFT p50", "12 ms",
                     "where each data class went", "pii", "US: 40", "failovers 7", "residency denials 0",
                     "self-hosted pools", "deepseek-v3", "1/2", "16", "Prewarm",
                     "prewarm: deepseek-residency/deepseek is Down (>= 2 replicas)"):
        assert expected in text


def test_summary_table() -> None:
    slots = schedule(DEEPSEEK_DRILL, 60)
    phases = tuple(PhaseSummary(s.phase.name, s.phase.incident, 10, 0, 1, 2, {"together": 1.0}, 0.01, 0.4, None,
                                {"deepseek-v3": {"min": i % 2, "max": 2 * (i % 2)}})
                   for i, s in enumerate(slots))
    summary = Summary("deepseek", phases, {"deepseek": {"public": 3}}, {"pii": 0}, 0, 0)
    console = Console(record=True, width=160)
    console.print(render_summary(summary))
    text = console.export_text()
    assert "pii/phi requests sent to CN: 0" in text
    assert "full-outage: Jan 2025" in text and "together 100%" in text
    assert "deepseek-v3" in text and "replicas" in text and "1-2" in text


def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "llmroute", "local", "--no-tui", "--port", str(port)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"llmroute: error: port {port} on 127.0.0.1 is in use; pick another with --port"
    assert "Traceback" not in proc.stderr


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "llmroute", "local", "--no-tui", "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    router: list[str] = []
    while not router and time.monotonic() < deadline:  # wait until the router child is serving
        time.sleep(0.3)
        children = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(proc.pid)], capture_output=True,
                                  text=True, check=False).stdout
        router = [line.split()[0] for line in children.splitlines() if "llmroute router" in line]
    assert router, "the router process never started"
    time.sleep(2)  # traffic is flowing
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert subprocess.run(["ps", "-p", router[0]], capture_output=True, check=False).returncode != 0, "router left"


def test_invalid_example_is_one_clear_line(tmp_path: Path) -> None:
    for name in ("policy", "route", "secrets"):
        (tmp_path / f"{name}.yaml").write_text((EXAMPLE / f"{name}.yaml").read_text())
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy.read_text().replace("training: NotUsed", "training: no", 1))
    proc = subprocess.run([sys.executable, "-m", "llmroute", "local", "--no-tui", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"llmroute: error: {policy} (document 1, ProviderPolicy deepseek-residency): "
                                  "spec.providers[1].dataUse.training: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def _example_with_access(folder: Path, access: dict[str, Any], token: str | None) -> Path:
    """The example, its route checking callers with ``access``; the token's Secret document beside it when given."""
    import yaml

    folder.mkdir()
    for path in EXAMPLE.glob("*.yaml"):
        (folder / path.name).write_text(path.read_text())
    route_path = folder / "route.yaml"
    route = yaml.safe_load(route_path.read_text())
    route["spec"]["access"] = access
    route_path.write_text(yaml.safe_dump(route, sort_keys=False))
    if token is not None:
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "callers", "namespace": route["metadata"].get("namespace", "default")},
                  "stringData": {"token": token}}
        (folder / "callers.yaml").write_text(yaml.safe_dump(secret, sort_keys=False))
    return folder


def test_a_route_that_checks_callers_is_called_with_its_bearer_token(tmp_path: Path) -> None:
    token = "llmr-local-caller-5e21c0"
    example = _example_with_access(tmp_path / "example", {"bearerTokens": [{"secretRef": {"name": "callers"}}]}, token)
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "llmroute", "local", "--no-tui", "--duration", "6", "--summary-json", str(out),
         str(example)], capture_output=True, text=True, timeout=120, check=False,
    )
    assert "Traceback" not in proc.stderr
    summary = json.loads(out.read_text())
    served = sum(n for by_class in summary["received"].values() for n in by_class.values())
    requests = sum(p["requests"] for p in summary["phases"])
    errors = sum(p["errors_non_stream"] + p["errors_stream"] for p in summary["phases"])
    assert served > 0 and requests > 0 and errors < requests / 2  # a refused caller would get 401 on every request
    assert token not in proc.stdout + proc.stderr


def test_a_route_open_only_to_service_accounts_is_one_clear_line(tmp_path: Path) -> None:
    example = _example_with_access(tmp_path / "example", {"serviceAccounts": {}}, None)
    proc = subprocess.run([sys.executable, "-m", "llmroute", "local", "--no-tui", str(example)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("llmroute: error: spec.access: local mode calls the route with a bearer token")
    assert len(proc.stderr.strip().splitlines()) == 1
