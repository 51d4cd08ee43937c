"""Residency: may a request of a given data class be sent to a given provider, and why (not).

Pure and total: every check runs and reports, so ``llmroute explain``, 403 errors and status can say *all* the
reasons a backend is denied. Unknown terms are the worst case (DESIGN.md invariant 2): ``training: Unknown`` counts
as training, ``retention: Unknown`` as indefinite retention. An unknown data class is an error
(:class:`UnknownDataClassError`), never a silent default.

Called by :mod:`llmroute.core.compile`; nothing else decides residency.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmroute.api.provider_policy import DataClass, Provider, ProviderPolicySpec, Retention, Training
from llmroute.errors import UnknownDataClassError

EU_MEMBER_STATES = frozenset((
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
))
"""A class that allows ``EU`` accepts providers in any member state as well as ones declared ``EU``."""


@dataclass(frozen=True)
class Verdict:
    """The residency decision for one (data class, provider) pair, with every reason for it."""

    allowed: bool
    reasons: tuple[str, ...]


def resolve_class(policy: ProviderPolicySpec, name: str) -> DataClass:
    """The data class called ``name``; raises :class:`UnknownDataClassError` if the policy has none by that name."""
    found = policy.data_class(name)
    if found is None:
        raise UnknownDataClassError(name, tuple(c.name for c in policy.data_classes))
    return found


def evaluate(data_class: DataClass, provider: Provider) -> Verdict:
    """Whether ``provider`` meets every requirement of ``data_class``; reasons say which held and which failed."""
    checks = (_jurisdiction, _training, _retention, _certifications, _self_hosted)
    results = [r for check in checks if (r := check(data_class, provider)) is not None]
    denials = tuple(reason for ok, reason in results if not ok)
    if denials:
        return Verdict(False, denials)
    allowed = tuple(reason for _, reason in results) or ("data class allows any provider",)
    return Verdict(True, allowed)


_Check = tuple[bool, str] | None


def _jurisdiction(cls: DataClass, p: Provider) -> _Check:
    wanted = cls.allow.jurisdictions
    if not wanted:
        return None
    listed = "[" + ", ".join(wanted) + "]"
    ok = p.jurisdiction in wanted or ("EU" in wanted and p.jurisdiction in EU_MEMBER_STATES)
    return ok, f"jurisdiction {p.jurisdiction} {'in' if ok else 'not in'} {listed}"


def _training(cls: DataClass, p: Provider) -> _Check:
    if cls.allow.training is not Training.NOT_USED:
        return None
    stated = p.data_use.training
    if stated is Training.NOT_USED:
        return True, "training terms: inputs not used"
    if stated is Training.UNKNOWN:
        return False, "training terms unknown: treated as training"
    return False, "training terms: inputs used for training"


_RETENTION_RANK = {Retention.ZERO: 0, Retention.BOUNDED: 1, Retention.UNKNOWN: 2}


def _retention(cls: DataClass, p: Provider) -> _Check:
    required = cls.allow.retention
    if required is None or required is Retention.UNKNOWN:
        return None
    stated = p.data_use.retention
    if _RETENTION_RANK[stated] <= _RETENTION_RANK[required]:
        return True, f"retention {stated.value} meets {required.value}"
    if stated is Retention.UNKNOWN:
        return False, "retention terms unknown: treated as indefinite retention"
    return False, f"retention {stated.value} does not meet {required.value}"


def _certifications(cls: DataClass, p: Provider) -> _Check:
    required = cls.allow.require_certifications
    if not required:
        return None
    if p.is_self_hosted and cls.allow.self_hosted_exempt:
        return True, "self-hosted: exempt from required certifications"
    missing = [c for c in required if c not in p.certifications]
    if missing:
        return False, "missing certifications: " + ", ".join(missing)
    return True, "certifications held: " + ", ".join(required)


def _self_hosted(cls: DataClass, p: Provider) -> _Check:
    if not cls.allow.self_hosted_only:
        return None
    if p.is_self_hosted:
        return True, "self-hosted (ModelPool)" if p.pool is not None else "self-hosted"
    return False, "not self-hosted (class requires selfHostedOnly)"
