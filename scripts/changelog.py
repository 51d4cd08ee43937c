#!/usr/bin/env python3
"""CHANGELOG.md (Keep a Changelog) as the release tooling reads and writes it.

The release workflow takes a GitHub release's notes from here (``notes X.Y.Z``), ``scripts/release.sh`` checks that
the newest released section is the package's version (``newest``) and, on a bump, moves the Unreleased notes into a
new dated section (``release X.Y.Z YYYY-MM-DD``). Standard library only: the workflow runs it before installing
anything.

    python3 scripts/changelog.py notes 0.1.0            # that version's notes, to stdout
    python3 scripts/changelog.py newest                 # the newest released version
    python3 scripts/changelog.py release 0.2.0 2027-01-31   # rewrite CHANGELOG.md in place
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"
UNRELEASED = "Unreleased"
HEADING = re.compile(r"^## \[(?P<name>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?[ \t]*$", re.MULTILINE)
VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ChangelogError(ValueError):
    """The changelog does not have what was asked for (no such section, nothing to release, a bad version)."""


def _sections(text: str) -> list[tuple[str, re.Match[str], int]]:
    """(name, heading match, end offset of the section's body) for every ``## [...]`` section, in order."""
    heads = list(HEADING.finditer(text))
    # A section ends at the next `## ` heading, or at the link references / end of file.
    ends = [m.start() for m in heads[1:]] + [len(text)]
    out = []
    for head, end in zip(heads, ends, strict=True):
        refs = re.search(r"^\[[^\]]+\]: ", text[head.end() : end], re.MULTILINE)
        out.append((head["name"], head, head.end() + refs.start() if refs else end))
    return out


def notes(text: str, version: str) -> str:
    """The body of ``## [version]`` without its heading, stripped; an error when it is missing or empty."""
    for name, head, end in _sections(text):
        if name == version:
            body = text[head.end() : end].strip()
            if not body:
                raise ChangelogError(f"the section for {version} is empty")
            return body
    raise ChangelogError(f"CHANGELOG has no section for {version}")


def newest(text: str) -> str:
    """The first released version, top down (Unreleased skipped)."""
    for name, _head, _end in _sections(text):
        if name != UNRELEASED:
            return name
    raise ChangelogError("CHANGELOG has no released version")


def release(text: str, version: str, date: str) -> str:
    """The changelog with the Unreleased notes moved into ``## [version] - date`` and an empty Unreleased above."""
    if not VERSION.match(version):
        raise ChangelogError(f"not a release version: {version!r} (want X.Y.Z)")
    if not DATE.match(date):
        raise ChangelogError(f"not a date: {date!r} (want YYYY-MM-DD)")
    sections = _sections(text)
    if any(name == version for name, _h, _e in sections):
        raise ChangelogError(f"CHANGELOG already has a section for {version}")
    unreleased = next(((h, e) for name, h, e in sections if name == UNRELEASED), None)
    if unreleased is None:
        raise ChangelogError("CHANGELOG has no [Unreleased] section")
    head, end = unreleased
    body = text[head.end() : end].strip()
    if not body:
        raise ChangelogError("nothing to release: the [Unreleased] section is empty")
    new = f"## [{UNRELEASED}]\n\n## [{version}] - {date}\n\n{body}\n\n"
    return text[: head.start()] + new + text[end:].lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=CHANGELOG)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("notes").add_argument("version")
    sub.add_parser("newest")
    rel = sub.add_parser("release")
    rel.add_argument("version")
    rel.add_argument("date")
    args = parser.parse_args(argv)
    text = args.file.read_text(encoding="utf-8")
    try:
        if args.command == "notes":
            print(notes(text, args.version))
        elif args.command == "newest":
            print(newest(text))
        else:
            args.file.write_text(release(text, args.version, args.date), encoding="utf-8")
    except ChangelogError as exc:
        print(f"changelog: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
