"""What the emulator saw: request counts per path, outcomes, statuses, authentication results, and one
small :class:`Record` per request for assertions.

Privacy by construction: no prompt or completion text is kept, only model names and counts, and of a
rejected API key at most its first four characters (raw request bodies are kept only when a test asks for them,
apart from the stats: ``record_bodies`` in :mod:`llmroute.emulator.app`). Records are bounded (the newest
:data:`MAX_RECORDS`), so a long benchmark cannot grow memory without limit.
Filled by :mod:`llmroute.emulator.app`; read by tests, the local demo and ``GET /_emulator/stats``.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

MAX_RECORDS = 10_000


class Outcome(StrEnum):
    """How an exchange ended, from the emulator's side."""

    OK = "ok"  # a complete response (including [DONE] for streams)
    ERROR = "error"  # an HTTP error response (fault, 401, 400/422, ...)
    REFUSED = "refused"  # connection reset before any response (``refuse``)
    CUT = "cut"  # connection reset mid-response (``cut_after_tokens``)
    STALLED = "stalled"  # the client gave up while the response was stalled (``stall_after_tokens``)
    IDLE_CLOSED = "idle_closed"  # the emulator gave up after ``idle_close`` seconds without a token
    DISCONNECTED = "disconnected"  # the client went away during a normal response


class Auth(StrEnum):
    """The Authorization header as the emulator judged it."""

    OK = "ok"  # matched the configured key
    BAD = "bad"  # present but wrong or malformed (the request got 401)
    MISSING = "missing"  # absent (401 if a key is configured)
    UNCHECKED = "unchecked"  # present, and no key is configured


@dataclass(slots=True)
class Record:
    """One request as the emulator handled it; filled in while the request runs."""

    path: str  # without the /v1 prefix, e.g. "/chat/completions"
    model: str | None = None
    stream: bool = False
    status: int | None = None  # None when no response was sent (refused)
    outcome: Outcome = Outcome.OK
    auth: Auth = Auth.MISSING
    tokens: int = 0  # generated tokens actually sent (reasoning + content, per choice)
    user: str | None = None  # the OpenAI `user` field (an end-user id, not content); the local demo tags classes here


@dataclass
class Stats:
    """Live counters of one emulator; ``to_json()`` is the ``GET /_emulator/stats`` body."""

    requests: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    auth: Counter[str] = field(default_factory=Counter)
    last_bad_token_prefix: str | None = None
    records: deque[Record] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))

    def arrived(self, path: str) -> Record:
        self.requests[path] += 1
        return Record(path=path)

    def authenticated(self, record: Record, result: Auth, token: str | None = None) -> None:
        record.auth = result
        self.auth[result] += 1
        if result is Auth.BAD:
            self.last_bad_token_prefix = (token or "")[:4]

    def finished(self, record: Record) -> None:
        self.outcomes[record.outcome] += 1
        if record.status is not None:
            self.statuses[record.status] += 1
        self.records.append(record)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def reset(self) -> None:
        self.requests.clear()
        self.outcomes.clear()
        self.statuses.clear()
        self.auth.clear()
        self.last_bad_token_prefix = None
        self.records.clear()

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "requests": dict(self.requests),
            "outcomes": {str(k): v for k, v in self.outcomes.items()},
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "auth": {str(k): v for k, v in self.auth.items()},
            "last_bad_token_prefix": self.last_bad_token_prefix,
            "records": [asdict(r) for r in self.records],
        }
