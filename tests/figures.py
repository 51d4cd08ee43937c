"""Figures measured by the reliability tests, recorded for ``docs/reliability.md``.

A test that checks a published guarantee records what it measured with one call::

    from tests.figures import record
    record("sigterm-drain", {"inFlight": 40, "completed": 40, "exitCode": 0}, unit={"drainS": "s"})

Each guarantee gets one file, ``build/figures/<guarantee>.json`` (``$LLMROUTE_FIGURES_DIR`` moves the folder):
``{"guarantee", "test", "figures", "recordedAt"}``. Figures of later calls for the same guarantee are merged in, so
several tests (or parametrised cases) may contribute to one guarantee; ``test`` is the pytest node id of the last
writer (from ``PYTEST_CURRENT_TEST``). Values are plain JSON scalars (numbers, strings, booleans) or small lists of
them: no prompt, completion, key or header value ever goes in a figure.

``build/`` is not committed: ``python -m tests.benchmarks.reliability`` runs the measuring tests, collects these
files (:func:`read_all`) into ``tests/benchmarks/results/reliability.json`` and renders the doc from it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DIR_ENV = "LLMROUTE_FIGURES_DIR"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

Scalar = int | float | str | bool | None
Figure = Scalar | Sequence[Scalar]


def figures_dir() -> Path:
    """Where figures are written: ``$LLMROUTE_FIGURES_DIR`` or ``build/figures`` at the repository root."""
    return Path(os.environ.get(DIR_ENV) or ROOT / "build" / "figures")


def current_test() -> str:
    """The pytest node id of the running test (``tests/router/test_x.py::test_y``), or ``""`` outside pytest."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


def record(guarantee: str, figures: Mapping[str, Figure], *, test: str | None = None) -> Path:
    """Merge ``figures`` into ``<figures dir>/<guarantee>.json``; returns the file written.

    ``guarantee`` is a short kebab-case id (``sigterm-drain``); ``test`` defaults to the running test's node id."""
    if not _NAME.match(guarantee):
        raise ValueError(f"guarantee id must be kebab-case, got {guarantee!r}")
    for name, value in figures.items():
        if not _is_figure(value):
            raise TypeError(f"figure {name!r} must be a JSON scalar or a list of them, got {type(value).__name__}")
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{guarantee}.json"
    old = _read(path)
    doc = {
        "guarantee": guarantee,
        "test": test if test is not None else current_test() or old.get("test", ""),
        "figures": {**old.get("figures", {}), **{k: _plain(v) for k, v in figures.items()}},
        "recordedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_all(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every recorded guarantee: id -> its document (``figures``, ``test``, ``recordedAt``)."""
    folder = folder or figures_dir()
    return {p.stem: _read(p) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _is_figure(value: object) -> bool:
    if isinstance(value, int | float | str | bool) or value is None:
        return True
    return isinstance(value, list | tuple) and all(isinstance(v, int | float | str | bool) or v is None for v in value)


def _plain(value: Figure) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list | tuple):
        return [round(v, 4) if isinstance(v, float) else v for v in value]
    return value
