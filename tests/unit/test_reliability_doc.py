"""``docs/reliability.md`` matches the collected results, names only tests that exist, and every figure it shows keeps
its promise; the record -> collect -> render path works end to end (:mod:`tests.benchmarks.reliability`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.benchmarks import reliability
from tests.figures import DIR_ENV, read_all, record

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_the_doc_is_what_the_collected_results_render() -> None:
    results = reliability.load_results()
    assert reliability.DOC.read_text() == reliability.render(results), (
        f"docs/reliability.md is stale: run `{reliability.COMMAND}` (or `--collect`)"
    )


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


@pytest.mark.parametrize("guarantee", reliability.GUARANTEES, ids=lambda g: g.id)
def test_every_named_test_exists(guarantee: reliability.Guarantee) -> None:
    for test in guarantee.tests:
        path, _, name = test.partition("::")
        assert (ROOT / path).is_file(), test
        if name:
            assert name in _functions(ROOT / path), test


@pytest.mark.parametrize("guarantee", [g for g in reliability.GUARANTEES if g.measured], ids=lambda g: g.id)
def test_every_measured_guarantee_has_figures_that_keep_its_promise(guarantee: reliability.Guarantee) -> None:
    figures = reliability.load_results().get(guarantee.id, {}).get("figures", {})
    assert figures, f"no figures for {guarantee.id}: run `{reliability.COMMAND}`"
    assert guarantee.holds is not None and guarantee.holds(figures), figures


def test_recorded_figures_are_collected_and_rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    record("config-reload", {"requests": 10, "errors": 0})
    record(
        "config-reload",
        {"truncated": 0, "concurrentClients": 2, "swapsPublished": 3, "reloadsApplied": 3, "invalidRejected": 1},
        test="tests/router/test_reload.py::x",
    )
    record("hostile-input", {"linesChecked": 42})  # a guarantee without a formatter of its own
    assert read_all(tmp_path)["config-reload"]["figures"]["requests"] == 10  # merged, not replaced
    results = reliability.collect(
        {"hostile-input": {"figures": {"old": 1}}, "gone-guarantee": {"figures": {"kept": 2}}}
    )
    assert results["hostile-input"]["figures"] == {"old": 1, "linesChecked": 42}
    assert results["gone-guarantee"]["figures"] == {"kept": 2}  # measured earlier, kept until measured again
    doc = reliability.render(results)
    assert "10 requests from 2 clients" in doc and "**0 errors**" in doc
    assert "linesChecked: 42" in doc


def test_a_figure_that_breaks_its_promise_shows_as_not_holding() -> None:
    reload_row = next(g for g in reliability.GUARANTEES if g.id == "config-reload")
    figures = {
        "requests": 10,
        "errors": 1,
        "truncated": 0,
        "concurrentClients": 2,
        "swapsPublished": 3,
        "reloadsApplied": 3,
        "invalidRejected": 1,
    }
    doc = reliability.render({"config-reload": {"figures": figures}})
    assert reload_row.holds is not None and not reload_row.holds(figures)
    assert "**1 errors**" in doc and "| **no** |" in doc


@pytest.mark.parametrize("bad", [{"x": {"nested": 1}}, {"x": object()}])
def test_record_refuses_what_is_not_a_plain_figure(
    bad: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    with pytest.raises(TypeError):
        record("audit", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        record("Not An Id", {"x": 1})
