"""The llmroute exception tree. Callers translate these at one boundary each (CLI exit codes, kopf errors,
OpenAI-shaped HTTP errors); nothing below the boundary formats user output.

::

    LLMRouteError
     + InputError                 bad user input: never retried, the message names the file/field
     |   + LoadError              a YAML document failed to parse or validate (file, document, field)
     |   + InvalidManifests       every LoadError of a set of files, one per line
     |   + CompileError           an LLMRoute does not compile against its ProviderPolicy (field paths)
     |   + UnknownDataClassError  a data class name the policy does not define
     + ConfigVersionError         a RouterConfig of a version this router does not understand
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class LLMRouteError(Exception):
    """Base of every error llmroute raises on purpose."""


class InputError(LLMRouteError):
    """Bad input from the user; retrying cannot help."""


@dataclass(frozen=True)
class FieldError:
    """One problem at one field path, e.g. ``spec.models[0].backends[1].provider``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class UnknownField(FieldError):
    """A key the schema does not have, worded as ``kubectl apply`` (strict field validation) words it."""

    message: str = "unknown field"

    def __str__(self) -> str:
        return f'unknown field "{self.path}"'


class LoadError(InputError):
    """A document in a file failed to load; ``str()`` is one line naming the file, document and field.

    ``what`` names the object when the document says what it is (``LLMRoute apps/deepseek``); ``line`` is where the
    field (or, when it is missing, its parent) is written.
    """

    def __init__(
        self, source: str, index: int | None, error: FieldError, what: str | None = None, line: int | None = None
    ) -> None:
        self.source = source
        self.index = index
        self.error = error
        self.what = what
        self.line = line
        label = f", {what}" if what else ""
        where = source if index is None else f"{source} (document {index + 1}{label})"
        super().__init__(one_line(f"{where}: {error}{f' (line {line})' if line else ''}"))


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): a key or value from a file can neither break
    the one-line-per-problem output nor send escape sequences to the user's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class InvalidManifests(InputError):
    """Every problem found loading a set of manifest files; ``str()`` is one line per problem, in file order."""

    def __init__(self, errors: Sequence[LoadError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class CompileError(InputError):
    """An LLMRoute does not compile against its ProviderPolicy. Carries every problem, not just the first."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class UnknownDataClassError(InputError):
    """A request or spec named a data class that the ProviderPolicy does not define."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f'unknown data class "{name}" (known: {", ".join(self.known)})')


class ConfigVersionError(LLMRouteError):
    """A RouterConfig carries a contract version this router does not implement; the old config stays."""
