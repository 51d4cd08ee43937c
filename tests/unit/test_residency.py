"""Residency verdicts: every requirement, unknown terms as the worst case, and the example policy's guarantees."""

from __future__ import annotations

from typing import Any

import pytest

from llmroute.api.provider_policy import DataClass, Provider, ProviderPolicy
from llmroute.core.residency import evaluate, resolve_class
from llmroute.errors import UnknownDataClassError

pytestmark = pytest.mark.unit


def provider(**kw: Any) -> Provider:
    base: dict[str, Any] = {"name": "p", "endpoint": "https://p.example/v1", "jurisdiction": "US", "selfHosted": True}
    return Provider.model_validate({**base, **kw})


def data_class(**allow: Any) -> DataClass:
    return DataClass.model_validate({"name": "c", "allow": allow})


@pytest.mark.parametrize(
    ("allow", "facts", "allowed", "reasons"),
    [
        pytest.param({}, {}, True, ("data class allows any provider",), id="empty-allow-any"),
        pytest.param({"jurisdictions": ["US", "EU"]}, {"jurisdiction": "CN"}, False,
                     ("jurisdiction CN not in [US, EU]",), id="cn-denied"),
        pytest.param({"jurisdictions": ["US", "EU"]}, {"jurisdiction": "DE"}, True,
                     ("jurisdiction DE in [US, EU]",), id="eu-member-state"),
        pytest.param({"jurisdictions": ["DE"]}, {"jurisdiction": "EU"}, False,
                     ("jurisdiction EU not in [DE]",), id="eu-is-not-a-member-state"),
        pytest.param({"training": "NotUsed"}, {}, False,
                     ("training terms unknown: treated as training",), id="training-unstated-is-unknown"),
        pytest.param({"training": "NotUsed"}, {"dataUse": {"training": "Unknown"}}, False,
                     ("training terms unknown: treated as training",), id="training-unknown"),
        pytest.param({"training": "NotUsed"}, {"dataUse": {"training": "Used"}}, False,
                     ("training terms: inputs used for training",), id="training-used"),
        pytest.param({"training": "NotUsed"}, {"dataUse": {"training": "NotUsed"}}, True,
                     ("training terms: inputs not used",), id="training-not-used"),
        pytest.param({"training": "Used"}, {"dataUse": {"training": "Unknown"}}, True,
                     ("data class allows any provider",), id="training-used-allows-any"),
        pytest.param({"retention": "Zero"}, {"dataUse": {"retention": "Bounded"}}, False,
                     ("retention Bounded does not meet Zero",), id="retention-bounded-vs-zero"),
        pytest.param({"retention": "Bounded"}, {"dataUse": {"retention": "Zero"}}, True,
                     ("retention Zero meets Bounded",), id="retention-zero-meets-bounded"),
        pytest.param({"retention": "Bounded"}, {}, False,
                     ("retention terms unknown: treated as indefinite retention",), id="retention-unknown"),
        pytest.param({"requireCertifications": ["hipaa-baa", "soc2"]}, {"certifications": ["soc2"]}, False,
                     ("missing certifications: hipaa-baa",), id="missing-cert"),
        pytest.param({"requireCertifications": ["hipaa-baa"], "selfHostedExempt": True}, {}, True,
                     ("self-hosted: exempt from required certifications",), id="self-hosted-exempt"),
        pytest.param({"requireCertifications": ["hipaa-baa"], "selfHostedExempt": True},
                     {"selfHosted": False, "credentials": {"secretRef": {"name": "s", "key": "k"}}}, False,
                     ("missing certifications: hipaa-baa",), id="exempt-only-for-self-hosted"),
        pytest.param({"selfHostedOnly": True},
                     {"selfHosted": False, "credentials": {"secretRef": {"name": "s", "key": "k"}}}, False,
                     ("not self-hosted (class requires selfHostedOnly)",), id="self-hosted-only"),
        pytest.param({"jurisdictions": ["US"], "training": "NotUsed", "retention": "Zero"},
                     {"jurisdiction": "CN"}, False,
                     ("jurisdiction CN not in [US]", "training terms unknown: treated as training",
                      "retention terms unknown: treated as indefinite retention"), id="all-reasons-reported"),
    ],
)
def test_verdict(allow: dict[str, Any], facts: dict[str, Any], allowed: bool, reasons: tuple[str, ...]) -> None:
    verdict = evaluate(data_class(**allow), provider(**facts))
    assert verdict.allowed is allowed
    assert verdict.reasons == reasons


def test_unknown_data_class_is_an_error(policy: ProviderPolicy) -> None:
    known = r'unknown data class "secret" \(known: public, internal, pii, phi\)'
    with pytest.raises(UnknownDataClassError, match=known):
        resolve_class(policy.spec, "secret")


@pytest.mark.parametrize("cls", ["pii", "phi", "internal"])
def test_example_policy_never_allows_deepseek_cn_for_sensitive_classes(policy: ProviderPolicy, cls: str) -> None:
    deepseek = policy.spec.provider("deepseek")
    assert deepseek is not None and deepseek.jurisdiction == "CN"
    verdict = evaluate(resolve_class(policy.spec, cls), deepseek)
    assert not verdict.allowed
    assert "training terms unknown: treated as training" in verdict.reasons


def test_example_public_class_may_use_deepseek(policy: ProviderPolicy) -> None:
    deepseek = policy.spec.provider("deepseek")
    assert deepseek is not None
    assert evaluate(resolve_class(policy.spec, "public"), deepseek).allowed


def test_cn_provider_denied_for_pii_even_with_perfect_terms(policy: ProviderPolicy) -> None:
    """Terms do not buy jurisdiction: a CN host stating NotUsed/Zero is still denied for pii."""
    cn = provider(jurisdiction="CN", dataUse={"training": "NotUsed", "retention": "Zero"})
    verdict = evaluate(resolve_class(policy.spec, "pii"), cn)
    assert verdict == verdict.__class__(False, ("jurisdiction CN not in [US, EU]",))
