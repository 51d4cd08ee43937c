"""The PII detector's built-in passes as they were before the C-level prefilters (commit 9af645c), kept verbatim as
the reference the equivalence property (``test_pii_equivalence``) compares the detector with: ``keys.py``,
``net.py`` and ``numbers.py`` are copies of ``pii_keys``, ``pii_net`` and ``pii_numbers`` at that commit (imports
pointed at each other); context and overlap resolution are the detector's own (unchanged)."""

from __future__ import annotations

from llmroute.core import pii, pii_context
from tests.unit.pii_reference import keys, net, numbers


def detect(text: str, key: str = "") -> list[pii.Finding]:
    """What ``pii.detect`` returned before the prefilters: ``Detector.detect`` with the reference passes."""
    context = pii_context.Context(text, key)
    hits = keys.keys(text, context)
    if "@" in text:
        hits[:0] = net.emails(text, context)
    if b"0" in context.classes:
        hits.extend(numbers.numbers(text, context))
    return [pii.Finding(*h) for h in (pii._resolve(hits) if len(hits) > 1 else hits)]
