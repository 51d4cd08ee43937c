"""docs/troubleshooting.md documents every condition, Event and status reason the operator writes, and only those.

The reasons are collected statically from the operator's code (``controller/`` and ``core/``): the reason argument
of every condition (``Cond``), prober readiness and Event (``Readiness``, ``ProviderEvent``), failover move
(``Move``), every ``reason=`` given to an Event or status builder and every ``"reason"`` of a dict literal (an Event
body), as string literals or ``a if c else b`` of
literals, or a local name assigned such an expression in the same module (``reason = "A" if c else "B"``). A
reason built at runtime (an f-string) must be listed in :data:`DYNAMIC` with the values it can take, so
a new one cannot slip past; a reason passed on in a variable comes from one of the literals collected.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmroute.core.probing import UNHEALTHY
from llmroute.core.scaling import Reason

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "llmroute"
DOC = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")

POSITIONAL = {"Cond": 1, "Readiness": 1, "ProviderEvent": 1, "Move": 5}
"""Builders whose reason is a positional argument, and its index."""
BY_KEYWORD = {"post_event", "event", "info", "warn", "exception", "Condition", "FailoverRecord", *POSITIONAL}
"""Calls whose ``reason=`` keyword is a condition, Event or status reason (kopf.event/info/warn/exception too)."""
DYNAMIC = {"f'Provider{src_health.state}'": {f"Provider{state}" for state in UNHEALTHY}}
"""Reasons built at runtime (``ast.unparse`` of the expression) and every value they take."""
KOPF = {"Logging"}
"""kopf posts the operator's warning/error log lines about an object as Events with this reason."""


def _name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _reason_args(node: ast.AST) -> Iterator[ast.expr]:
    """The reason expressions of a builder call, or of a dict literal's ``"reason"`` key (an Event body)."""
    if isinstance(node, ast.Dict):
        yield from (
            v
            for k, v in zip(node.keys, node.values, strict=True)
            if isinstance(k, ast.Constant) and k.value == "reason"
        )
        return
    if not isinstance(node, ast.Call):
        return
    call = node
    name = _name(call)
    if name in POSITIONAL and len(call.args) > POSITIONAL[name]:
        yield call.args[POSITIONAL[name]]
    if name in BY_KEYWORD:
        yield from (k.value for k in call.keywords if k.arg == "reason")


def _assignments(tree: ast.Module) -> dict[str, list[ast.expr]]:
    """Values assigned to plain names anywhere in a module (``reason = ...``)."""
    out: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out.setdefault(node.targets[0].id, []).append(node.value)
    return out


def _values(node: ast.expr, where: str, names: dict[str, list[ast.expr]]) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _values(node.body, where, names) | _values(node.orelse, where, names)
    if isinstance(node, ast.Name) and node.id in names:
        return {v for value in names[node.id] for v in _values(value, where, {})}
    if isinstance(node, ast.JoinedStr):
        source = ast.unparse(node)
        assert source in DYNAMIC, f"{where}: reason built at runtime ({source}); list its values in DYNAMIC"
        return DYNAMIC[source]
    return set()  # passed on (an attribute, a parameter): its value is one of the literals collected elsewhere


@functools.cache
def code_reasons() -> dict[str, list[str]]:
    """Every reason the operator's code can write → where (file:line)."""
    found: dict[str, list[str]] = {}
    for path in sorted([*(PACKAGE / "controller").rglob("*.py"), *(PACKAGE / "core").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = _assignments(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call | ast.Dict):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            for arg in _reason_args(node):
                for value in _values(arg, where, names):
                    found.setdefault(value, []).append(where)
    for reason in Reason:  # ModelPool status.reason
        found.setdefault(str(reason), []).append("llmroute/core/scaling.py: Reason")
    return found


def documented() -> dict[str, list[list[str]]]:
    """Reason → the cells of each table row documenting it."""
    rows: dict[str, list[list[str]]] = {}
    for line in DOC.splitlines():
        m = re.match(r"^\| `(\w+)` \|(.*)\|$", line)
        if m:
            rows.setdefault(m.group(1), []).append([c.strip() for c in m.group(2).split(" | ")])
    return rows


def test_the_collector_finds_the_reasons_of_every_kind() -> None:
    found = code_reasons()
    for reason in (
        "Compiled",
        "CompileFailed",
        "RouterAvailable",
        "ConfigChanged",
        "Failover",
        "Failback",
        "ProviderDown",
        "ProvidersUnavailable",
        "NoAllowedBackend",
        "Scaled",
        "ScaledToZero",
        "PoolCold",
        "Steady",
    ):
        assert reason in found, reason
    assert len(found) >= 35


def test_every_reason_in_the_code_is_documented() -> None:
    missing = {r: w for r, w in code_reasons().items() if r not in documented()}
    assert missing == {}, "add these reasons to docs/troubleshooting.md"


def test_every_documented_reason_exists_in_the_code() -> None:
    stale = set(documented()) - set(code_reasons()) - KOPF
    assert stale == set(), "docs/troubleshooting.md documents reasons the operator no longer writes"


def test_every_entry_says_what_causes_it_and_what_to_do() -> None:
    for reason, rows in documented().items():
        for cells in rows:
            assert len(cells) >= 2 and all(cells[-2:]), f"{reason}: empty cause or action"


def test_the_dynamic_reasons_are_the_unhealthy_provider_states() -> None:
    assert DYNAMIC["f'Provider{src_health.state}'"] == {"ProviderDown", "ProviderMisconfigured"}
