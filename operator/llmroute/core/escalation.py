"""Escalation: which data classes a request must satisfy, given what it declares and what it contains.

Owns the rule of issue 11, "escalation, never downgrade": a request is held to its declared (or default) class
**and** to every class whose ``detect`` list names a type found in its text. :func:`escalate` turns findings into the
classes applied (declared first, then the escalated ones in policy order; the declared class is never dropped) and
the (from, to, type) pairs metrics count. :func:`combine` turns the applied classes into one route: the declared
class's allowed backends, in its order, kept only where **every** applied class allows them; every other backend is
denied with each class's reasons, prefixed by the class (``pii: jurisdiction CN not in [US, EU]``), for the 403
message and ``llmroute explain``. Residency itself is not decided here: the per-class verdicts are the compiled
:class:`~llmroute.core.router_config.ClassRoute` lists, so a combined route can only be narrower than its parts.

Pure; used by the router (:mod:`llmroute.router.config_source`, :mod:`llmroute.router.proxy`) and ``llmroute scan``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from llmroute.core.router_config import BackendTarget, ClassRoute, Denial, ModelRoute

DetectRules = Sequence[tuple[str, Sequence[str]]]
"""Per data class with a ``detect`` list, in policy order: (class, the types it detects)."""


@dataclass(frozen=True, slots=True)
class Escalation:
    """The classes a request is held to and why."""

    classes: tuple[str, ...]
    """Applied classes: the declared one first, then the escalated ones in policy order."""
    pairs: tuple[tuple[str, str, str], ...]
    """(from class, to class, type) for every escalated class and each found type that names it."""

    @property
    def escalated(self) -> bool:
        return len(self.classes) > 1


def escalate(declared: str, rules: DetectRules, found: Collection[str]) -> Escalation:
    """The classes a request declared as ``declared`` whose text holds the types ``found`` must satisfy.

    A type the declared class itself detects adds nothing: that class applies anyway.
    """
    classes = [declared]
    pairs: list[tuple[str, str, str]] = []
    if found:
        for name, types in rules:
            if name == declared:
                continue
            matched = [t for t in types if t in found]
            if matched:
                classes.append(name)
                pairs += [(declared, name, t) for t in matched]
    return Escalation(tuple(classes), tuple(pairs))


def detecting(rules: DetectRules, found: Collection[str]) -> tuple[str, ...]:
    """The classes whose ``detect`` names a type in ``found``, in policy order (what ``llmroute scan`` reports)."""
    return tuple(name for name, types in rules if any(t in found for t in types)) if found else ()


def explain(esc: Escalation) -> str:
    """Why the request is held to more than its declared class, e.g. ``escalated from public: pii for us_ssn,
    email``; empty when it is not. Types only, never what was found."""
    if not esc.escalated:
        return ""
    by_class: dict[str, list[str]] = {}
    for _, to_class, kind in esc.pairs:
        by_class.setdefault(to_class, []).append(kind)
    return f"escalated from {esc.classes[0]}: " + "; ".join(
        f"{to_class} for {', '.join(kinds)}" for to_class, kinds in by_class.items())


def header_value(classes: Sequence[str]) -> str:
    """``x-llmroute-data-class`` of a response: the applied classes, declared first (``public,pii``)."""
    return ",".join(classes)


def combine(model: ModelRoute, classes: Sequence[str]) -> ClassRoute:
    """The route of ``model`` for a request held to every class of ``classes`` (declared first).

    Allowed: the declared class's allowed backends, in its order, that every other class allows too. Denied: every
    other backend of the model, with the reasons of each class that denies it, prefixed by the class. Raises
    ``KeyError`` for a class the model has no route for (the compiled config has one for every class of the policy).
    """
    routes = [_class_route(model, name) for name in classes]
    declared = routes[0]
    if len(routes) == 1:
        return declared
    allows = [{(b.provider, b.model) for b in r.allowed} for r in routes]
    allowed: list[BackendTarget] = []
    denied: list[Denial] = []
    for b in declared.allowed:
        reasons = _denials(routes, allows, b.provider, b.model)
        if reasons:
            denied.append(Denial(provider=b.provider, model=b.model, reasons=reasons))
        else:
            allowed.append(b)
    denied += [Denial(provider=d.provider, model=d.model, reasons=_denials(routes, allows, d.provider, d.model))
               for d in declared.denied]
    return ClassRoute(data_class=header_value(classes), allowed=tuple(allowed), denied=tuple(denied))


def _class_route(model: ModelRoute, name: str) -> ClassRoute:
    route = model.for_class(name)
    if route is None:
        raise KeyError(f'model "{model.name}" has no route for data class "{name}"')
    return route


def _denials(routes: Sequence[ClassRoute], allows: Sequence[set[tuple[str, str]]], provider: str,
             model: str) -> tuple[str, ...]:
    """Every class's reasons for not allowing the backend (``class: reason``); empty when all allow it. A backend a
    class neither allows nor denies is denied too (fail closed)."""
    out: list[str] = []
    for route, allow in zip(routes, allows, strict=True):
        if (provider, model) in allow:
            continue
        reasons = next((d.reasons for d in route.denied if d.provider == provider and d.model == model),
                       ("not an allowed backend of the class",))
        out += [f"{route.data_class}: {r}" for r in reasons]
    return tuple(out)
