"""The traffic generator: applications as they are, the official ``openai`` SDK pointed at the router.

Each worker (a client application with many users) sends a request, waits for the answer, and records what the
client saw: success or the SDK's error, the serving provider and attempt count from the router's ``x-llmroute-*``
headers, latency and time to first token. A request slower than ``patience_s`` no longer holds its worker back (it
goes on in the background, at most ``max_in_flight`` per worker): one user waiting 5-10 s for DeepSeek's first token
does not stop the others, so a slow provider does not starve the rest of the traffic (and the pools' load signal)
the way a strictly closed loop would.

A few ``public`` and ``internal`` prompts (:data:`PII_SHARE`) carry generated personal data, as applications' prompts
do whatever they are labelled: an email address at ``example.com``, a phone number from the 555-01xx range reserved
for fiction, or a US SSN in the issued ranges (random digits: valid-looking, nobody's). The router must escalate them
(answer header ``x-llmroute-data-class: public,pii``), which the client records next to what it planted.

The request's classes also go in the OpenAI ``user`` field (an end-user id, not content) so that each emulator (and
each pool pod) can count the classes it was sent: the residency proof is measured at the providers, not taken from
the router's own report. The tag holds the request's **true** classes, as the traffic generator knows them: the
declared class, plus ``pii`` when it planted personal data (``llmroute-local/public,pii``), whatever the router did -
so a request escalation missed counts as ``pii`` at the provider it reached.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import openai

CLASS_MIX: tuple[tuple[str, float], ...] = (("public", 0.4), ("internal", 0.3), ("pii", 0.2), ("phi", 0.1))
USER_TAG = "llmroute-local/"
CLIENT_KEY = "local-client-key-never-forwarded"
PERSONAL = "pii"
"""The class a request carrying personal data truly is, whatever it declares."""
PII_SHARE = 0.05
"""The share of the :data:`PII_CARRIERS` requests whose prompt carries generated personal data."""
PII_CARRIERS = ("public", "internal")
PII_TYPES = ("email", "phone", "us_ssn")
_NAMES = ("dana.whitfield", "li.okafor", "m.novak", "priya.raman", "jo.abernathy", "sam.ortega")


def fake_personal_data(rng: random.Random) -> tuple[str, str]:
    """(type, a prompt holding one generated value of it): never a real person's. The detector's type names."""
    kind = rng.choice(PII_TYPES)
    if kind == "email":
        value = f"{rng.choice(_NAMES)}{rng.randint(1, 99)}@example.com"  # RFC 2606: reserved, nobody's mailbox
        return kind, f"Draft a reply to {value} about the delayed refund."
    if kind == "phone":
        value = f"({rng.choice((212, 312, 415, 617, 206))}) 555-01{rng.randint(0, 99):02d}"  # reserved for fiction
        return kind, f"Summarise the ticket; the customer asked to be called back at {value}."
    area = rng.randint(1, 898)
    area += area >= 666  # issued SSN ranges: area 001-899 but 666, group and serial never zero
    value = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    return kind, f"Check the claim form for SSN {value} and list what is missing."


def true_classes(declared: str, carries: str | None) -> tuple[str, ...]:
    """The classes a request really holds: what it declares, plus :data:`PERSONAL` when it carries personal data."""
    return (declared,) if carries is None or declared == PERSONAL else (declared, PERSONAL)


def user_tag(declared: str, carries: str | None) -> str:
    """The ``user`` field the providers count by: :data:`USER_TAG` and the true classes (``public,pii``)."""
    return USER_TAG + ",".join(true_classes(declared, carries))


@dataclass(frozen=True)
class Result:
    """What one client request saw."""

    phase: str
    data_class: str
    model: str
    stream: bool
    started: float  # seconds since the run started
    ok: bool
    error: str | None  # the SDK exception type name, or None
    status: int | None
    provider: str | None
    attempts: int
    latency_s: float
    ttft_s: float | None
    carries: str | None = None  # the type of the personal data the prompt carried (planted), or None
    classes: tuple[str, ...] = ()  # the router's x-llmroute-data-class on the answer (declared first), if any

    @property
    def escalated(self) -> bool:
        """The router held the request to more classes than it declared."""
        return len(self.classes) > 1


@dataclass
class Traffic:
    """Runs ``concurrency`` workers until ``stop`` is set; results accumulate in ``results``."""

    base_url: str
    models: tuple[str, ...]
    phase_of: Callable[[float], str]
    concurrency: int = 4
    pause_s: float = 0.05
    patience_s: float = 0.5
    max_in_flight: int = 32  # per worker
    seed: int = 0
    api_key: str = CLIENT_KEY  # the route's bearer token when it checks callers (never forwarded upstream)
    results: list[Result] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        client = openai.AsyncOpenAI(base_url=self.base_url + "/v1", api_key=self.api_key, max_retries=0,
                                    timeout=120)
        t0 = time.monotonic()
        try:
            await asyncio.gather(*(self._worker(client, random.Random(self.seed + i), t0)
                                   for i in range(self.concurrency)))
        finally:
            await client.close()

    async def _worker(self, client: openai.AsyncOpenAI, rng: random.Random, t0: float) -> None:
        classes, weights = zip(*CLASS_MIX, strict=True)
        pending: set[asyncio.Task[None]] = set()
        try:
            while not self.stop.is_set():
                cls = rng.choices(classes, weights)[0]
                model = self.models[0] if rng.random() < 0.8 or len(self.models) == 1 else rng.choice(self.models[1:])
                stream = rng.random() < 0.5
                pii = fake_personal_data(rng) if cls in PII_CARRIERS and rng.random() < PII_SHARE else None
                started = time.monotonic() - t0
                task = asyncio.create_task(self._send(client, cls, model, stream, started, pii))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.wait({task}, timeout=self.patience_s)
                while len(pending) >= self.max_in_flight:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                await asyncio.sleep(self.pause_s)
            if pending:
                await asyncio.wait(pending)
        finally:
            for task in pending:
                task.cancel()

    async def _send(self, client: openai.AsyncOpenAI, cls: str, model: str, stream: bool, started: float,
                    pii: tuple[str, str] | None) -> None:
        self.results.append(await one_request(client, self.phase_of(started), cls, model, stream, started, pii))


async def one_request(client: openai.AsyncOpenAI, phase: str, cls: str, model: str, stream: bool,
                      started: float, pii: tuple[str, str] | None = None) -> Result:
    """Send one chat completion as an application would and record the outcome. ``pii``: (type, prompt) of
    :func:`fake_personal_data` to send instead of a plain prompt."""
    t = time.monotonic()
    ttft: float | None = None
    carries = pii[0] if pii is not None else None
    headers = {"x-llmroute-data-class": cls}
    messages = [{"role": "user", "content": pii[1] if pii is not None else f"A {cls} question for the drill."}]
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=messages, stream=stream, user=user_tag(cls, carries),  # type: ignore[arg-type]
            extra_headers=headers,
        )
        provider, attempts = raw.headers.get("x-llmroute-provider"), int(raw.headers.get("x-llmroute-attempts", 1))
        classes = parse_classes(raw.headers.get("x-llmroute-data-class"))
        if stream:
            chunks = raw.parse()
            assert isinstance(chunks, openai.AsyncStream)
            async for chunk in chunks:
                if ttft is None and chunk.choices:
                    ttft = time.monotonic() - t
        else:
            raw.parse()
            ttft = time.monotonic() - t
        return Result(phase, cls, model, stream, started, True, None, raw.status_code, provider, attempts,
                      time.monotonic() - t, ttft, carries, classes)
    except openai.APIError as exc:
        status = getattr(exc, "status_code", None)
        resp = getattr(exc, "response", None)
        provider = resp.headers.get("x-llmroute-provider") if resp is not None else None
        classes = parse_classes(resp.headers.get("x-llmroute-data-class")) if resp is not None else ()
        return Result(phase, cls, model, stream, started, False, type(exc).__name__, status, provider, 0,
                      time.monotonic() - t, ttft, carries, classes)


def parse_classes(header: str | None) -> tuple[str, ...]:
    """``x-llmroute-data-class`` of an answer (``public,pii``) as its classes; () when absent."""
    return tuple(c.strip() for c in header.split(",") if c.strip()) if header else ()
