"""Counters and histograms for the per-request path: plain numbers, rendered by ``prometheus_client`` at scrape time.

``prometheus_client``'s children take a lock on every ``inc`` and ``observe`` (its values may be updated from any
thread) and check on every call that the metric has no labels left to fill: ~1 us per update, five to six updates
per request. The router updates its per-request series only from its event loop's thread, and ``GET /metrics``
renders on that same thread, so a lock protects nothing there. These classes keep the same series (names, help,
label names, ``le`` buckets formatted as ``prometheus_client`` formats them, no ``_created``) as plain attributes of
a slotted child, and hand them to the registry as metric families when it collects: what a scrape shows is what the
``prometheus_client`` types would show for the same updates (a test compares the two expositions).

Use them only for series updated on the event loop's thread; everything else stays a ``prometheus_client`` type.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString


class CounterChild:
    """One labelled series of a :class:`LoopCounter`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class HistogramChild:
    """One labelled series of a :class:`LoopHistogram`: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf only)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # ``le``: a value equal to a bound is in its bucket
        self.sum += amount


_Child = TypeVar("_Child", CounterChild, HistogramChild)


class _Family(Generic[_Child]):
    """What both kinds share: the name, help, label names, the children by label values, registration."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}
        registry.register(self)  # type: ignore[arg-type]  # (a collector is anything with ``collect``)

    def labels(self, *values: str) -> _Child:
        """The child of these label values (created at zero on first use, as ``prometheus_client`` does)."""
        child = self._children.get(values)  # (a StrEnum value finds its string's child: they are equal)
        if child is None:
            child = self._children.setdefault(self._labels(values), self._child())
        return child

    def _child(self) -> _Child:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError

    def _labels(self, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected, {len(values)} given")
        return tuple(str(v) for v in values)


class LoopCounter(_Family[CounterChild]):
    """A counter whose children are updated from the event loop's thread only (``name`` without ``_total``)."""

    def _child(self) -> CounterChild:
        return CounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class LoopHistogram(_Family[HistogramChild]):
    """A histogram whose children are updated from the event loop's thread only."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry,
                 buckets: Sequence[float]) -> None:
        bounds = tuple(float(b) for b in buckets if b != float("inf"))
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be increasing")
        self.bounds = bounds
        super().__init__(name, documentation, labelnames, registry)

    def _child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        names = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        for values, child in list(self._children.items()):
            total, buckets = 0, []
            for le, count in zip(names, child.counts, strict=True):
                total += count
                buckets.append((le, float(total)))
            family.add_metric(values, buckets, child.sum)
        yield family
