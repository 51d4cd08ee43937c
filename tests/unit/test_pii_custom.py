"""Custom detector patterns have a bounded cost: the shapes that backtrack without bound are refused at load with an
error naming the detector, ordinary patterns load and find what ``re`` finds, and a long run cannot make a pattern
read far past where a match starts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute.api import pattern_cost as pii_custom
from llmroute.cli import main
from llmroute.core.pii import CustomDetector, Detector
from tests.conftest import example_doc

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("pattern", "shape"),
    [
        pytest.param(r"(a+)+b", "nests a repeat", id="nested-plus"),
        pytest.param(r"(\d+)*x", "nests a repeat", id="nested-star"),
        pytest.param(r"(?:[a-z]+\.)+com", "nests a repeat", id="domain-like"),
        pytest.param(r"(\w+\s?)*$", "nests a repeat", id="words"),
        pytest.param(r"(.*a){12}", "nests a repeat", id="counted-nested"),
        pytest.param(r"(a|ab)*c", "repeats alternatives that can match the same text", id="alternation-prefix"),
        pytest.param(r"(?:ab|a.)+c", "repeats alternatives that can match the same text", id="alternation-overlap"),
        pytest.param(r"(a|)*b", "repeats alternatives that can match the same text", id="alternation-empty"),
        pytest.param(r"\d+\d*x", "has two repeats over the same characters", id="adjacent"),
        pytest.param(r"\w+\s*\w+!", "has two repeats over the same characters", id="adjacent-through-optional"),
        pytest.param(r"(\d+)(\d+)x", "has two repeats over the same characters", id="adjacent-groups"),
        pytest.param(r"(?i)K+k+x", "has two repeats over the same characters", id="adjacent-case-folded"),
    ],
)
def test_catastrophic_shapes_are_refused_naming_the_detector(pattern: str, shape: str) -> None:
    with pytest.raises(ValueError, match=rf"custom PII detector 'badge': the pattern {shape}.*must not backtrack"):
        Detector([CustomDetector("badge", pattern)])


def test_a_refused_shape_is_slow_under_plain_re() -> None:
    """What the check protects against: 24 digits and no ``x`` already cost plain ``re`` a noticeable time, and
    every further digit doubles it."""
    start = time.perf_counter()
    assert re.search(r"(\d+)+x", "1" * 20) is None
    assert time.perf_counter() - start > 0.01
    assert pii_custom.check(r"(\d+)+x") is not None


@pytest.mark.parametrize(
    "pattern",
    [
        r"\bEMP-[0-9]{6}\b",
        r"TCK-[0-9]+",
        r"(\d{1,3}\.){3}\d{1,3}",
        r"[A-Z]{2}\d{2}[A-Z0-9]{1,30}",
        r"(?i)ssn:\s*\d{3}-\d{2}-\d{4}",
        r"(?:ab|cd)+",
        r"(\w|\d)+z",  # one character class: nothing to backtrack between
        r"user=.*password=\S+",
        r"[a-z]+[0-9]+",
        r"\d{2,8}\d{2,8}",
    ],
)
def test_ordinary_patterns_load(pattern: str) -> None:
    assert pii_custom.check(pattern) is None
    Detector([CustomDetector("ok", pattern)])


def test_a_long_run_does_not_make_a_linear_pattern_quadratic() -> None:
    """``[a-z]+@corp`` tries every letter of a run and reads to its end each time: plain ``re`` is quadratic in the
    run (minutes for a megabyte). Bounded, 64 Ki letters take a fraction of a second."""
    text = "a" * 65536
    detector = Detector([CustomDetector("corp_user", r"[a-z]+@corp")])
    start = time.perf_counter()
    assert detector.detect(text) == []
    bounded = time.perf_counter() - start
    start = time.perf_counter()
    assert re.search(r"[a-z]+@corp", text[:16384]) is None  # a quarter of it, unbounded
    assert bounded < 1.0 and bounded < (time.perf_counter() - start) * 2


def test_a_match_longer_than_the_bound_is_cut_and_the_next_one_found() -> None:
    text = "TCK-" + "7" * 3000 + " and TCK-42"
    found = [(f.start, f.end) for f in Detector([CustomDetector("ticket", r"TCK-[0-9]+")]).detect(text)]
    assert found[0][0] == 0 and pii_custom.MAX_MATCH <= found[0][1] <= 2 * pii_custom.MAX_MATCH
    assert found[-1] == (text.index("TCK-42"), len(text))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.just("TCK-"), st.text("0123456789", max_size=40), st.sampled_from([" ", "x", "-"])), max_size=200
    ).map("".join),
    st.sampled_from([r"TCK-[0-9]+", r"[0-9]+-?x", r"TCK-[0-9]{2,}(?=\s|$)", r"\b[0-9]+\b"]),
)
def test_matches_within_the_bound_are_the_ones_re_finds(text: str, pattern: str) -> None:
    compiled = re.compile(pattern)
    assert pii_custom.reach(pattern) > pii_custom.MAX_MATCH  # the windowed path
    plain = [m.span() for m in compiled.finditer(text) if m.end() > m.start()]
    if all(end - start <= 40 for start, end in plain):
        bounded = [m.span() for m in pii_custom.finditer(compiled, text, pii_custom.reach(pattern))]
        assert bounded == plain


def test_reach_counts_look_arounds_and_repeats() -> None:
    assert pii_custom.reach(r"EMP-[0-9]{6}") == 10
    assert pii_custom.reach(r"(?=.*x)abc") > pii_custom.MAX_MATCH
    assert pii_custom.reach(r"(\d{1,3}\.){3}\d{1,3}") == 15


def test_llmroute_validate_refuses_the_shape_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused where every invalid field is (validate, and the operator admitting the policy), not only when a router
    loads the compiled config."""
    policy = example_doc("policy")
    policy["spec"]["detectors"] = [{"name": "badge", "pattern": r"(?:[a-z]+\.)+corp"}]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "spec.detectors[0].pattern" in out + err and "nests a repeat" in out + err
