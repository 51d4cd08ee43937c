"""What ``llmroute local`` shows: a live view while the drill runs and the summary at the end (rich).

:class:`Snapshot` is the view's whole input, built by :mod:`llmroute.local.run` from the router's /metrics, the
emulators' and pools' counters and the clients' results; rendering is a pure function of it, so the TUI can be
recorded and checked headlessly (``rich.console.Console(record=True)``). Each self-hosted pool gets a line: its
replicas (ready of running, and the GPUs they hold), the size the scaler decided, the requests routers hold for it,
and why it has that size (the decision's reason and message, as ``kubectl get modelpools`` would show them).
Escalations (requests the router held to more classes than they declared, from its ``x-llmroute-data-class``
answers) get a line by classes and the type of personal data the prompt carried, e.g. ``public→pii: 12 (email 7,
us_ssn 5)``; the summary gets them per phase and a line per declared class that carried personal data, with how
many of those reached CN (measured at the providers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from llmroute.local.report import Escalations, Summary, classes_of

_STATE_STYLE = {"healthy": "green", "degraded": "yellow", "recovering": "cyan", "open": "bold red", "-": "dim"}


@dataclass(frozen=True)
class ProviderRow:
    name: str
    jurisdiction: str
    circuit: str
    rps: float
    error_rate: float
    ttft_p50_s: float | None


@dataclass(frozen=True)
class PoolRow:
    name: str
    provider: str
    replicas: int  # pods that exist: starting, serving or draining
    ready: int
    desired: int
    gpus_per_replica: int
    held: int  # requests routers hold for it now
    reason: str  # the scaler's last decision
    message: str


@dataclass(frozen=True)
class Snapshot:
    phase: str
    incident: str
    elapsed_s: float
    total_s: float
    providers: tuple[ProviderRow, ...]
    class_jurisdictions: dict[str, dict[str, int]]  # data class -> jurisdiction -> requests received there
    failovers: int
    residency_denials: int
    client_errors: int
    requests: int
    pools: tuple[PoolRow, ...] = ()
    escalations: dict[str, dict[str, int]] = field(default_factory=dict)  # "public,pii" -> type -> requests


def render(s: Snapshot) -> RenderableType:
    """The live view."""
    head = Text.assemble(("llmroute local", "bold"), f"  phase {s.phase}: {s.incident}  ",
                         (f"{s.elapsed_s:5.1f}s / {s.total_s:.0f}s", "dim"))
    providers = Table(title="providers", title_justify="left", expand=False)
    for col in ("provider", "where", "circuit", "req/s", "errors", "TTFT p50"):
        providers.add_column(col, justify="right" if col in ("req/s", "errors", "TTFT p50") else "left")
    for p in s.providers:
        providers.add_row(p.name, p.jurisdiction, Text(p.circuit, style=_STATE_STYLE.get(p.circuit, "")),
                          f"{p.rps:.1f}", f"{p.error_rate:.0%}",
                          "-" if p.ttft_p50_s is None else f"{p.ttft_p50_s * 1000:.0f} ms")
    classes = Table(title="where each data class went", title_justify="left")
    classes.add_column("data class")
    classes.add_column("jurisdictions (requests received)")
    for cls, where in s.class_jurisdictions.items():
        classes.add_row(cls, ", ".join(f"{j}: {n}" for j, n in sorted(where.items())) or "-")
    totals = Text(f"requests {s.requests}   client-visible errors {s.client_errors}   failovers {s.failovers}   "
                  f"residency denials {s.residency_denials}")
    parts: list[RenderableType] = [head, providers]
    if s.pools:
        parts.append(_pools(s.pools))
    return Group(*parts, classes, escalation_line(s.escalations), totals)


def escalation_line(by_class: dict[str, dict[str, int]]) -> Text:
    """``escalated on content: public→pii: 12 (email 7, us_ssn 5)   internal→pii: 3 (phone 3)``, or "none yet"."""
    parts = [f"{arrow(key)}: {sum(types.values())} ({', '.join(f'{t} {n}' for t, n in types.items())})"
             for key, types in by_class.items()]
    return Text.assemble(("escalated on content: ", "bold"), "   ".join(parts) or ("none yet", "dim"))


def arrow(key: str) -> str:
    """``public,pii`` (declared first, as in x-llmroute-data-class) as ``public→pii``."""
    declared, *added = classes_of(key)
    return f"{declared}→{'+'.join(added)}" if added else declared


def _pools(rows: tuple[PoolRow, ...]) -> Table:
    table = Table(title="self-hosted pools (our GPUs)", title_justify="left")
    for col in ("pool", "provider", "ready/running", "GPUs", "desired", "held", "why"):
        table.add_column(col, justify="right" if col in ("ready/running", "GPUs", "desired", "held") else "left")
    for p in rows:
        style = "green" if p.ready and p.ready == p.desired else ("yellow" if p.desired or p.replicas else "dim")
        table.add_row(p.name, p.provider, Text(f"{p.ready}/{p.replicas}", style=style),
                      str(p.replicas * p.gpus_per_replica), str(p.desired), str(p.held),
                      Text.assemble((p.reason, "bold"), f"  {p.message}") if p.reason else "-")
    return table


def render_summary(summary: Summary) -> RenderableType:
    """The end-of-run summary table and the residency proof."""
    table = Table(title=f"drill summary (target: {summary.target})", title_justify="left")
    pools = sorted({name for p in summary.phases for name in p.pool_replicas})
    for col in ("phase", "requests", "client errors\nnon-stream/stream", "failed\nover", "escal-\nated",
                f"{summary.target}\nopen after", "served by", "p50", *(f"{pool}\nreplicas" for pool in pools)):
        table.add_column(col, no_wrap=col != "served by")
    for p in summary.phases:
        share = " ".join(f"{name} {frac:.0%}" for name, frac in p.share.items())
        table.add_row(
            p.name, str(p.requests), f"{p.errors_non_stream}/{p.errors_stream}", str(p.failed_over),
            str(p.escalations),
            "-" if p.target_open_after_s is None else f"{p.target_open_after_s:.1f}s",
            share or "-", "-" if p.latency_p50_s is None else f"{p.latency_p50_s * 1000:.0f} ms",
            *(_range(p.pool_replicas.get(pool)) for pool in pools),
        )
    legend = Text("\n".join(f"{p.name}: {p.incident}" for p in summary.phases), style="dim")
    proof_style = "bold green" if summary.sensitive_to_cn == 0 and summary.total_violations == 0 else "bold red"
    proof = Text.assemble(
        (f"pii/phi requests sent to CN: {summary.sensitive_to_cn}", proof_style),
        f"   requests sent where their class forbids: {summary.total_violations}"
        f"   residency denials (403): {summary.residency_denials}",
    )
    return Group(legend, table, proof, *_personal_data(summary.escalations))


def _personal_data(e: Escalations) -> list[Text]:
    """A line per declared class whose prompts carried personal data: escalated, sent to CN, and missed ones."""
    lines = []
    for cls, carrying in e.carrying.items():
        to_cn = e.to_cn.get(cls, 0)
        lines.append(Text.assemble(
            (f"{cls} requests escalated for personal data: {e.escalated.get(cls, 0)} ({to_cn} sent to CN)",
             "bold green" if to_cn == 0 else "bold red"),
            f"   {cls} requests carrying personal data: {carrying}",
        ))
    if e.by_class:
        lines.append(escalation_line(e.by_class))
    if e.missed:
        lines.append(Text(f"requests carrying personal data answered without escalation: {e.missed}", "bold red"))
    return lines


def _range(r: dict[str, int] | None) -> str:
    if r is None:
        return "-"
    return str(r["min"]) if r["min"] == r["max"] else f"{r['min']}-{r['max']}"
