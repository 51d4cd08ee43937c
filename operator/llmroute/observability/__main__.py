"""``python -m llmroute.observability [--check] [--root DIR]``: regenerate the chart's generated files
(:func:`llmroute.observability.generate.write`); with ``--check``, exit 1 and name the files that are out of date."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from llmroute.observability.generate import ROOT, write


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llmroute.observability", description=__doc__)
    p.add_argument("--root", type=Path, default=ROOT, help=f"repository root (default: {ROOT})")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is out of date")
    args = p.parse_args(argv)
    try:
        changed = write(args.root, check=args.check)
    except ModuleNotFoundError as exc:
        print(f"llmroute.observability: {exc}; install the test extra: pip install -e '.[test]'", file=sys.stderr)
        return 2
    verb = "out of date" if args.check else "wrote"
    for path in changed:
        print(f"{verb}: {path}", file=sys.stderr if args.check else sys.stdout)
    if args.check and changed:
        print("run: python -m llmroute.observability", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
