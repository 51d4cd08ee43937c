"""The independent oracle: which backends a request may reach, decided from the policy's facts alone.

Written from DESIGN.md's invariants and the ProviderPolicy field descriptions, not from
:mod:`llmroute.core.residency` (which it checks): a provider passes a class when its jurisdiction is listed (or
``EU`` is listed and it is operated in a member state), its terms *state* that inputs are not used for training when
the class requires that, its *stated* retention is at least as short as required, it holds every required
certification (or is self-hosted and the class exempts self-hosted providers), and it is self-hosted when the class
requires that. A term that is not stated, or stated ``Unknown``, never satisfies a requirement (unknown = worst
case). A request is held to its declared class (else the route's default, else the policy's) and to every class
whose ``detect`` names a type its text holds; a backend is allowed only if every one of those classes allows it, and
usable only if the router also has its key.

Redaction (``providers[].redaction``): a provider that requires a type redacted must never receive a value of that
type in clear - not under the config the request started with, nor under a config loaded while it was in flight
(the attempts after such a reload) - and every other value the request holds reaches it as the client sent it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .world import Config, ProviderFacts, Request

EU_MEMBERS_IN_USE = frozenset({"DE", "FR", "IE"})
"""The EU member states among the jurisdictions the worlds use (GB is not one)."""
_RETENTION_MEETS = {"Zero": {"Zero"}, "Bounded": {"Zero", "Bounded"}}


def redacted(config: Config, provider: str) -> frozenset[str]:
    """The types ``provider`` must only ever receive as placeholders under ``config``."""
    return frozenset(config.provider(provider).redacts)


def permits(cls_name: str, config: Config, p: ProviderFacts) -> bool:
    """Whether data class ``cls_name`` of ``config`` may go to provider ``p``."""
    c = config.data_class(cls_name)
    assert c is not None
    self_hosted = p.hosting in ("self-hosted", "pool")
    if (
        c.jurisdictions
        and p.jurisdiction not in c.jurisdictions
        and not ("EU" in c.jurisdictions and p.jurisdiction in EU_MEMBERS_IN_USE)
    ):
        return False
    if c.training == "NotUsed" and p.training != "NotUsed":
        return False
    if c.retention in _RETENTION_MEETS and p.retention not in _RETENTION_MEETS[c.retention]:
        return False
    if (
        c.certifications
        and not set(c.certifications) <= set(p.certifications)
        and not (self_hosted and c.self_hosted_exempt)
    ):
        return False
    return not c.self_hosted_only or self_hosted


@dataclass(frozen=True)
class Expected:
    """What the oracle says about one request under one config."""

    declared: str
    known_class: bool
    known_model: bool
    classes: tuple[str, ...]  # every class the request is held to
    allowed: frozenset[tuple[str, str]]  # (provider, upstream model) residency allows
    usable: frozenset[tuple[str, str]]  # ... and the router has a key for

    def describe(self) -> str:
        if not self.known_class:
            return f"class {self.declared!r} unknown: refuse with 400"
        if not self.known_model:
            return "model not published: refuse with 404"
        usable = ", ".join(sorted(p for p, _ in self.usable)) or "none"
        return f"held to {'+'.join(self.classes)}: usable {usable} (allowed {len(self.allowed)})"


def expect(config: Config, request: Request) -> Expected:
    declared = request.declared or config.default_class
    if config.data_class(declared) is None:
        return Expected(declared, False, False, (), frozenset(), frozenset())
    if request.model not in (m for m, _ in config.models):
        return Expected(declared, True, False, (), frozenset(), frozenset())
    found = set(request.pii)
    classes = (declared, *(c.name for c in config.classes if c.name != declared and found & set(c.detect)))
    allowed = frozenset(
        (b.provider, b.model)
        for b in config.backends(request.model)
        if all(permits(c, config, config.provider(b.provider)) for c in classes)
    )
    usable = frozenset(
        (p, m) for p, m in allowed if config.provider(p).hosting != "hosted" or config.provider(p).has_key
    )
    return Expected(declared, True, True, classes, allowed, usable)
