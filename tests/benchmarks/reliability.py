"""``docs/reliability.md``: what llmroute promises, the test that checks each promise and the figure it measured.

One command regenerates it (from the repository root, in the venv)::

    python -m tests.benchmarks.reliability            # run every test the table names, collect, write the doc
    python -m tests.benchmarks.reliability --soak     # also the 100,000-request soak benchmark (about 2 minutes)
    python -m tests.benchmarks.reliability --collect  # run nothing: collect what build/figures holds, write the doc

The tests record their figures with :func:`tests.figures.record` (``build/figures/<guarantee>.json``, not committed);
the soak benchmark writes ``tests/benchmarks/results/soak.json``. This module collects both into
``tests/benchmarks/results/reliability.json`` (committed: a guarantee measured in an earlier run keeps its figures
until it is measured again) and renders the doc from that file alone, so ``tests/unit/test_reliability_doc.py`` can
check that the doc matches the collected results, that every named test exists and that every figure shown keeps
its promise. A run whose tests fail writes nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(ROOT))

from tests.figures import figures_dir, read_all  # noqa: E402

RESULTS = HERE / "results" / "reliability.json"
DOC = ROOT / "docs" / "reliability.md"
SOAK = HERE / "results" / "soak.json"
COMMAND = "python -m tests.benchmarks.reliability"
Figures = Mapping[str, Any]


@dataclass(frozen=True)
class Guarantee:
    """One row: ``id`` is the :func:`tests.figures.record` name, ``tests`` the files (or ``file::test``) checking it.

    ``measured`` renders the figures as one sentence; ``holds`` says whether they keep the promise (None: the row
    makes no numeric claim of its own, e.g. another area's figures shown as recorded)."""

    id: str
    promise: str
    tests: tuple[str, ...]
    measured: Callable[[Figures], str] | None = None
    holds: Callable[[Figures], bool] | None = None


def _drain(f: Figures) -> str:
    return (
        f"{f['completedInFull']}/{f['inFlightAtSignal']} in-flight answers (half streamed) complete in full; "
        f"`/readyz` 503 {f['notReadyAfterS'] * 1000:.0f} ms after the signal; new connections refused "
        f"{f['refusedAfterS']:.2f} s after it (drain delay {f['drainDelayS']:g} s); exit {f['exitCode']}. "
        f"A stream longer than a {f['drainTimeoutS']:g} s drain is cut and the process exits 0 after "
        f"{f['cutStreamStoppedAfterS']:.1f} s. Pod: preStop {f['preStopSleepS']} s + drain "
        f"{f['defaultDrainTimeoutS']:g} s < grace {f['podGraceS']} s"
    )


def _drain_holds(f: Figures) -> bool:
    return bool(
        f["completedInFull"] == f["inFlightAtSignal"]
        and f["exitCode"] == 0
        and f["preStopSleepS"] + f["defaultDrainTimeoutS"] < f["podGraceS"]
    )


def _reload(f: Figures) -> str:
    return (
        f"{f['requests']:,} requests from {f['concurrentClients']} clients (half streaming) while "
        f"{f['swapsPublished']} swaps were published ({f['reloadsApplied']} applied, {f['invalidRejected']} "
        f"invalid kept out): **{f['errors']} errors**, {f['truncated']} truncated answers"
    )


def _restart(f: Figures) -> str:
    return (
        f"{f['restarts']} restarts with {f['routes']} routes in place ({f['ownedObjects']} owned objects): "
        f"{f['ownedWritesAfterRestart']} writes, {f['objectsChanged']} objects changed, "
        f"{f['objectsAdded']} added"
    )


def _soak(f: Figures) -> str:
    out = (
        f"{f['requests']:,} requests: RSS {f['baselineMiB']:.1f} MiB after warm-up, largest deviation "
        f"{f['maxDeviationPct']:+.2f}%, at the end {f['endDeviationPct']:+.2f}% (curve: "
        "[results/soak.md](../tests/benchmarks/results/soak.md))"
    )
    if "suiteRequests" in f:
        out += f"; in the suite, {f['suiteRequests']:,} requests: {f['suiteMaxDeviationPct']:+.2f}%"
    return out


INCIDENT_FIELDS = ("errors", "lost", "requests")


def _property(f: Figures) -> str:
    return (
        f"{f['examples']:,} examples in {f['seconds']:.0f} s: {f['requests']:,} requests, {f['attempts']:,} attempts "
        f"({f['attemptsAfterReload']:,} after a mid-flight reload"
        f"{_redacted(f)}), {f['compiledVerdicts']:,} compiled verdicts "
        f"checked against an independent oracle: **{f['violations']} violations**"
    )


def _redacted(f: Figures) -> str:
    """The attempts whose body had values redacted (recorded since the property test learned provider redaction)."""
    return f", {f['attemptsRedacted']:,} with values redacted" if "attemptsRedacted" in f else ""


def _fuzz(f: Figures) -> str:
    return (
        f"{f['manifests']:,} fuzzed manifests through validate, the file loader and the router's loader "
        f"({f['invalid']:,} invalid, each problem reported by file, document and field): **{f['tracebacks']} "
        "tracebacks**"
    )


def _refused(f: Figures, status: int) -> list[Any]:
    return [v for k, v in f.items() if k.startswith(f"refused{status}.")]


def _access(f: Figures) -> str:
    return (
        f"{len(_refused(f, 401))} bad credentials (wrong, expired, wrong audience or issuer, foreign key) "
        f"refused with 401, {len(_refused(f, 403))} unlisted callers with 403, in OpenAI's shape; "
        f"{f['steeringAttempts']} attempts to steer the router elsewhere (Host, X-Forwarded-*, absolute-form "
        f"targets, URL-shaped models): **{f['canaryConnections']} connections** to the canary"
    )


def _access_holds(f: Figures) -> bool:
    refused = _refused(f, 401) + _refused(f, 403)
    return (
        bool(refused)
        and all(v == 401 for v in _refused(f, 401))
        and all(v == 403 for v in _refused(f, 403))
        and f.get("canaryConnections") == 0
    )


def _audit(f: Figures) -> str:
    return (
        f"{f['linesScanned']} audit lines scanned for {f['canariesAndKeysLookedFor']} canary prompts, answers, "
        f"header values and keys: **{f['found']} found**"
    )


def _leaks(f: Figures) -> str:
    return (
        f"{f['placesScanned']} places scanned (router and operator logs at DEBUG, both /metrics, ConfigMaps, statuses, "
        f"Events, error bodies, headers, the audit trail) for {f['keysAndContentLookedFor']} keys (plain and base64) "
        f"and prompt/completion strings: **{f['found']} found**"
    )


def _incidents(f: Figures) -> list[str]:
    """The replayed incidents, in the order they were replayed."""
    return list(f.get("incidents") or sorted({k.split(".", 1)[0] for k in f if "." in k}))


def _replay(f: Figures) -> str:
    names = _incidents(f)
    errors = sum(f[f"{n}.errors"] for n in names)
    lost = sum(f[f"{n}.lost"] for n in names)
    requests = sum(f[f"{n}.requests"] for n in names)
    below = [f[f"{n}.below1pctAfterS"] for n in names]
    full = [f[f"{n}.returnFullS"] for n in names]
    scale = f["timeScale"]
    return (
        f"{len(names)} incidents, {requests:,} requests (half streamed): **{errors} client errors, {lost} lost**; "
        f"< 1% of each model's traffic at DeepSeek {min(below):.1f}-{max(below):.1f} s after onset, all of it back "
        f"{min(full):.1f}-{max(full):.1f} s after recovery, in steps ({scale:g}x compressed; "
        "[per incident](#outage-replays))"
    )


def _replay_holds(f: Figures) -> bool:
    names = _incidents(f)
    return bool(names) and all(
        f[f"{n}.errors"] == 0
        and f[f"{n}.lost"] == 0
        and f[f"{n}.below1pctAfterS"] is not None
        and f[f"{n}.returnFullS"] is not None
        for n in names
    )


GUARANTEES: tuple[Guarantee, ...] = (
    Guarantee(
        "sigterm-drain",
        "SIGTERM drains in-flight requests and streams within the grace period; readiness "
        "drops first; new connections are refused after the drain delay; exit code 0",
        ("tests/router/test_lifecycle.py",),
        _drain,
        _drain_holds,
    ),
    Guarantee(
        "config-reload",
        "A config reload under load drops 0 requests",
        ("tests/router/test_reload.py", "tests/router/test_config.py::test_reload_under_load_drops_nothing"),
        _reload,
        lambda f: f["errors"] == 0 and f["truncated"] == 0,
    ),
    Guarantee(
        "operator-restart",
        "An operator restart creates no duplicates and triggers no rollout",
        ("tests/operator/test_lifecycle.py::test_restart_resumes_without_duplicates_or_patches",),
        _restart,
        lambda f: f["ownedWritesAfterRestart"] == f["objectsChanged"] == f["objectsAdded"] == 0,
    ),
    Guarantee(
        "soak-rss",
        "Router RSS stays within ±10% of its post-warm-up baseline over 100,000 requests",
        ("tests/benchmarks/bench_soak.py", "tests/router/test_lifecycle_soak.py"),
        _soak,
        lambda f: abs(f["maxDeviationPct"]) <= 10 and f.get("unexpected", 0) == 0,
    ),
    Guarantee(
        "outage-replay",
        "DeepSeek's five recorded incident shapes: no client-visible error and no lost request "
        "while an allowed backend is up; traffic leaves DeepSeek and comes back in steps",
        ("tests/router/test_outage_replay.py",),
        _replay,
        _replay_holds,
    ),
    Guarantee(
        "hostile-input",
        "Hostile input and slow clients get a clear 4xx (or a closed connection) within their "
        "limit; the process never crashes; memory returns to baseline; other clients are unaffected",
        ("tests/router/test_hostile.py", "tests/router/test_hostile_limits.py"),
    ),
    Guarantee(
        "residency-property",
        "No attempt ever reaches a backend the request's classes forbid (property-based, "
        "random policies, routes, classes, provider redaction and fault sequences), nor carries in clear a value its "
        "provider must only get redacted; after a reload mid-flight, neither one the new config forbids (its default "
        "class included) nor a value it redacts",
        ("tests/property/test_residency_invariant.py",),
        _property,
        lambda f: f["examples"] >= 10_000 and f["violations"] == 0,
    ),
    Guarantee(
        "manifest-fuzz",
        "Manifest loaders never raise a traceback: every problem is reported by file, document and field",
        ("tests/unit/test_manifest_fuzz.py",),
        _fuzz,
        lambda f: f["tracebacks"] == 0 and f["manifests"] > 0,
    ),
    Guarantee(
        "access",
        "Routes that require credentials refuse unauthenticated or unlisted callers (401/403 in "
        "OpenAI's shape); no client input steers the router to another host",
        ("tests/router/test_auth.py", "tests/router/test_auth_steering.py"),
        _access,
        _access_holds,
    ),
    Guarantee(
        "audit",
        "One audit line per request with no prompt, completion or key",
        ("tests/router/test_audit.py",),
        _audit,
        lambda f: f["found"] == 0 and f["linesScanned"] > 0,
    ),
    Guarantee(
        "no-leaks",
        "No API key, prompt or completion in anything the router and operator emit",
        ("tests/operator/test_no_leaks.py",),
        _leaks,
        lambda f: f["found"] == 0 and f["placesScanned"] > 0,
    ),
)


def measuring_tests() -> list[str]:
    """The pytest arguments that measure every guarantee (benchmarks are run apart: they are not tests)."""
    out = dict.fromkeys(t for g in GUARANTEES for t in g.tests if "/benchmarks/" not in t)
    return list(out)


def run_tests() -> int:
    """Run the measuring tests into a fresh ``build/figures``; pytest's exit code."""
    shutil.rmtree(figures_dir(), ignore_errors=True)
    return subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *measuring_tests()], cwd=ROOT
    )


def run_soak() -> int:
    return subprocess.call([sys.executable, str(HERE / "bench_soak.py")], cwd=ROOT)


def collect(previous: Mapping[str, Any]) -> dict[str, Any]:
    """``previous`` results, updated with what ``build/figures`` and ``results/soak.json`` hold now."""
    out = {k: dict(v) for k, v in previous.items()}
    for gid, doc in read_all().items():
        out[gid] = {
            "test": doc.get("test", ""),
            "recordedAt": doc.get("recordedAt", ""),
            "figures": {**out.get(gid, {}).get("figures", {}), **doc.get("figures", {})},
        }
    if SOAK.exists():
        soak = json.loads(SOAK.read_text())
        entry = out.setdefault("soak-rss", {"test": "tests/benchmarks/bench_soak.py", "figures": {}})
        entry["figures"] = {
            **entry.get("figures", {}),
            "requests": soak["requests"],
            "baselineMiB": soak["baseline_mib"],
            "maxDeviationPct": soak["max_deviation_pct"],
            "endDeviationPct": soak["end_deviation_pct"],
            "unexpected": soak["unexpected"],
        }
    return dict(sorted(out.items()))


def load_results(path: Path = RESULTS) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def render(results: Mapping[str, Any]) -> str:
    """The whole doc from the collected results (pure: the drift test calls it too)."""
    rows = []
    for g in GUARANTEES:
        figures = results.get(g.id, {}).get("figures", {})
        rows.append(
            f"| {g.promise} | {', '.join(_link(t) for t in g.tests)} | {_measured(g, figures)} | "
            f"{_verdict(g, figures)} |"
        )
    return HEAD.format(command=COMMAND) + "\n".join(rows) + "\n" + _replay_table(results) + TAIL


def _measured(g: Guarantee, figures: Figures) -> str:
    if not figures:
        return "not recorded yet"
    if g.measured is not None:
        return g.measured(figures)
    return "; ".join(f"{k}: {v}" for k, v in sorted(figures.items()))


def _verdict(g: Guarantee, figures: Figures) -> str:
    if not figures or g.holds is None:
        return "-"
    return "yes" if g.holds(figures) else "**no**"


def _link(test: str) -> str:
    path, _, name = test.partition("::")
    label = f"`{Path(path).name}::{name}`" if name else f"`{Path(path).name}`"
    return f"[{label}](../{path})"


def _replay_table(results: Mapping[str, Any]) -> str:
    f = results.get("outage-replay", {}).get("figures", {})
    if not f:
        return ""
    lines = [
        "",
        "## Outage replays",
        "",
        f"Each incident shape of `reference/deepseek-api-safety-and-outages.txt` replayed for "
        f"{f['incidentS']:g} s (hours of the real incident, circuit timings compressed {f['timeScale']:g}x; "
        "latencies such as a 5-10 s first token are not compressed), then recovery; 8 openai SDK clients, half "
        "streaming, with the local drill's class mix. Times are compressed seconds (x"
        f"{f['timeScale']:g} for the route's real timings). Before the incidents DeepSeek served "
        f"{f['baselineSharePct']:.0f}% of public requests; pii/phi requests it received: {f['sensitiveToCN']}.",
        "",
        "| incident | shape | requests | client errors | lost | < 1% at DeepSeek after (every model: each has its "
        "own circuit) | still reaching it after that (recovery trials) | first request back | all back | "
        "share back per recovery step (%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in _incidents(f):
        lines.append(
            f"| {n} | {f.get(f'{n}.incident', '')} | {f[f'{n}.requests']:,} | {f[f'{n}.errors']} | {f[f'{n}.lost']} | "
            f"{_s(f[f'{n}.below1pctAfterS'])} | {f[f'{n}.residualPct']:.1f}% | "
            f"{_s(f[f'{n}.returnFirstS'])} | {_s(f[f'{n}.returnFullS'])} | {f[f'{n}.returnStepsPct']} |"
        )
    return "\n".join(lines) + "\n"


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


HEAD = """# Reliability: what llmroute guarantees, and how each guarantee is checked

Every row is a promise, the test (or benchmark) that checks it against the real router process, the real operator
(kopf against an emulated API server) or the real loaders, and the figure that test measured on the last run.
**Regenerated by one command**, never edited by hand: `{command}` runs the tests the table names, collects the
figures they record (`tests/figures.py`) into `tests/benchmarks/results/reliability.json` and rewrites this page
(`--soak` adds the 100,000-request soak benchmark, `--collect` only collects). `tests/unit/test_reliability_doc.py`
fails when this page and the collected results disagree. "Holds" is computed from the figures; "-" means the row's
test asserts the promise but records no figure of its own yet.

| Guarantee | Checked by | Measured (last run) | Holds |
|---|---|---|---|
"""

TAIL = """
## Reproducing a figure

Every test above runs on a 2-core machine without a cluster or internet: `pytest <file>` runs it alone and records
its figures in `build/figures/`. The soak benchmark runs with `python tests/benchmarks/bench_soak.py` (`--requests`
to shorten it). Timing figures come from a machine shared with other work: they show the mechanism and its order of
magnitude, not a latency SLO.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collect", action="store_true", help="run nothing; collect build/figures and write the doc")
    parser.add_argument("--soak", action="store_true", help="also run the 100,000-request soak benchmark")
    args = parser.parse_args()
    if not args.collect:
        code = run_tests()
        if code != 0:
            sys.exit(f"the measuring tests failed (pytest exit {code}): nothing written")
    if args.soak and run_soak() != 0:
        sys.exit("the soak benchmark failed its limit: nothing written")
    results = collect(load_results())
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    DOC.write_text(render(results))
    print(f"wrote {DOC.relative_to(ROOT)} and {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
