"""The audit trail through the real router process, with the official openai SDK.

The router's stdout is kept apart from its log (stderr): it must hold audit lines only, each valid against
``docs/audit.schema.json`` and found by the ``x-llmroute-request-id`` the client got back. Aspects: a plain and a
streamed answer (time to first byte for streams); failover, every attempt with its provider, jurisdiction, status
and why it moved on; escalation (the classes applied, declared first, and the types detected, never values); fail
closed (403 ``no_compliant_backend``, 503 ``no_healthy_backend``) kept even when sampling keeps nothing else;
sampling drops the rest; and **no content**: canary strings in prompts, a tool call, the ``user`` field, custom
headers and the client key, the provider keys, and the answers the client got never appear in any audit line.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from tests.figures import record
from tests.operator.helpers import key_needles
from tests.router.conftest import (
    CLIENT_KEY,
    KEYS,
    MESSAGES,
    ROOT,
    Hub,
    RouterProcess,
    make_client,
    write_config,
)
from tests.router.test_auth import TOKEN, Secured, write_secured_config
from tests.router.test_escalation import SSN, escalation_docs
from tests.router.test_streaming import counter
from tests.tokens import ClusterIssuer

pytestmark = pytest.mark.router
SCHEMA = json.loads((ROOT / "docs" / "audit.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
CANARY = "canary-7f3a9c-do-not-log"
REQUEST_ID = "x-llmroute-request-id"


def audit_docs(hub: Hub, **audit: Any) -> dict[str, dict[str, Any]]:
    docs = copy.deepcopy(escalation_docs(hub))
    docs["route"]["spec"]["audit"] = audit
    return docs


@contextlib.contextmanager
def audited_router(
    tmp_path_factory: pytest.TempPathFactory, name: str, docs: dict[str, dict[str, Any]]
) -> Iterator[RouterProcess]:
    folder = write_config(tmp_path_factory.mktemp(name) / "config", docs)
    proc = RouterProcess([str(folder)], folder.parent / "router.log", stdout_path=folder.parent / "audit.jsonl")
    try:
        yield proc
    finally:
        proc.stop()


def audit_lines(router: RouterProcess) -> list[str]:
    assert router.stdout_path is not None
    return router.stdout_path.read_text().splitlines()


def records(router: RouterProcess, *, at_least: int = 0, within: float = 5.0) -> list[dict[str, Any]]:
    """Every audit record so far (waiting for ``at_least``), each checked against the schema."""
    deadline = time.monotonic() + within
    while len(lines := audit_lines(router)) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    out = [json.loads(line) for line in lines]
    for rec in out:
        VALIDATOR.validate(rec)
    return out


def record_of(router: RouterProcess, request_id: str, within: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        found = [r for r in records(router) if r["requestId"] == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{len(found)} audit records for {request_id}"
            return found[0]
        time.sleep(0.02)


@pytest.fixture(scope="module")
def audited(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with audited_router(tmp_path_factory, "audit", audit_docs(hub)) as proc:
        yield proc


@pytest.fixture()
def client(audited: RouterProcess) -> Iterator[openai.OpenAI]:
    with make_client(audited) as c:
        yield c


def chat(
    client: openai.OpenAI, text: str, data_class: str | None = None, stream: bool = False, **kw: Any
) -> tuple[str, str]:
    """(request id, the answer's text) of a successful chat request."""
    headers = {"x-llmroute-data-class": data_class} if data_class else {}
    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat",
        messages=[{"role": "user", "content": text}],
        stream=stream,  # type: ignore[arg-type]
        extra_headers={**headers, **kw.pop("extra_headers", {})},
        **kw,
    )
    parsed = raw.parse()
    if stream:
        answer = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)  # type: ignore[union-attr]
    else:
        answer = parsed.choices[0].message.content or ""  # type: ignore[union-attr]
    return raw.headers[REQUEST_ID], answer


def attempts(rec: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(a["provider"], a["jurisdiction"], a["status"], a["outcome"], a["next"]) for a in rec["attempts"]]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_one_line_per_request_with_the_route_the_model_and_the_attempt(
    client: openai.OpenAI, audited: RouterProcess, stream: bool
) -> None:
    rid, _ = chat(client, "Say hello", data_class="public", stream=stream)
    rec = record_of(audited, rid)
    assert (rec["route"], rec["model"], rec["endpoint"], rec["stream"]) == (
        "llm/chat",
        "deepseek-chat",
        "chat/completions",
        stream,
    )
    assert (rec["dataClass"], rec["classes"], rec["detected"]) == ("public", ["public"], [])
    assert attempts(rec) == [("deepseek", "CN", 200, "ok", "answered")]
    assert (rec["provider"], rec["status"], rec["outcome"], rec["error"]) == ("deepseek", 200, "ok", None)
    assert rec["configHash"] == json.loads(audited.get("/readyz")[1])["configHash"]
    assert rec["identity"] is None and rec["sampleRate"] == 1.0
    assert 0 < rec["latencyMs"] < 5000
    if stream:
        assert 0 < rec["ttfbMs"] <= rec["latencyMs"]
    else:
        assert rec["ttfbMs"] is None
    assert all(line.startswith('{"kind":"llmroute.audit",') for line in audit_lines(audited))


def test_failover_lists_every_attempt_and_why_it_moved_on(
    client: openai.OpenAI, audited: RouterProcess, hub: Hub
) -> None:
    hub["deepseek"].set_faults(status=503)
    hub["together"].set_faults(status=429)
    rid, _ = chat(client, "Say hello", data_class="public", stream=True)
    rec = record_of(audited, rid)
    assert attempts(rec) == [
        ("deepseek", "CN", 503, "unavailable", "failover"),
        ("together", "US", 429, "rate_limited", "failover"),
        ("fireworks", "US", 200, "ok", "answered"),
    ]
    assert rec["provider"] == "fireworks" and all(a["sent"] for a in rec["attempts"])


def test_escalation_records_classes_and_detected_types_never_values(
    client: openai.OpenAI, audited: RouterProcess, hub: Hub
) -> None:
    rid, _ = chat(client, f"My SSN is {SSN}", data_class="public")
    rec = record_of(audited, rid)
    assert (rec["dataClass"], rec["classes"], rec["detected"]) == ("public", ["public", "pii"], ["us_ssn"])
    assert attempts(rec) == [("together", "US", 200, "ok", "answered")]
    assert SSN not in json.dumps(rec)
    assert hub.requests("deepseek") == 0


def test_a_residency_denial_is_recorded_with_its_classes(client: openai.OpenAI, audited: RouterProcess) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        chat(client, "hello", data_class="restricted")
    rec = record_of(audited, info.value.response.headers[REQUEST_ID])
    assert (rec["status"], rec["outcome"], rec["error"]) == (403, "no_compliant_backend", "no_compliant_backend")
    assert (rec["classes"], rec["attempts"], rec["provider"]) == (["restricted"], [], None)


@pytest.fixture(scope="module")
def unsampled(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with audited_router(tmp_path_factory, "unsampled", audit_docs(hub, sampleRate=0)) as proc:
        yield proc


def test_sampling_keeps_only_denied_and_failed_closed_requests(unsampled: RouterProcess, hub: Hub) -> None:
    with make_client(unsampled) as c:
        for _ in range(5):
            chat(c, "Say hello")
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.PermissionDeniedError) as denied:
            chat(c, f"SSN {SSN}", data_class="cn-only")
        for name in ("together", "fireworks", "bedrock"):
            hub[name].set_faults(status=500)
        with pytest.raises(openai.InternalServerError) as closed:
            chat(c, "hello", data_class="pii")
    recs = records(unsampled, at_least=2)
    time.sleep(0.3)  # nothing else may follow
    assert len(records(unsampled)) == 2
    by_id = {r["requestId"]: r for r in recs}
    kept = by_id[denied.value.response.headers[REQUEST_ID]]
    assert (kept["status"], kept["classes"], kept["detected"]) == (403, ["cn-only", "pii"], ["us_ssn"])
    failed = by_id[closed.value.response.headers[REQUEST_ID]]
    assert (failed["status"], failed["outcome"], failed["provider"]) == (503, "no_healthy_backend", None)
    # maxAttempts 4: every allowed backend, then the first again after backoff; never CN for pii
    assert attempts(failed) == [
        (p, "US", 500, "server_error", "failover") for p in ("together", "fireworks", "bedrock", "together")
    ]
    assert failed["sampleRate"] == 0


def test_no_prompt_answer_key_or_header_value_in_any_audit_line(audited: RouterProcess) -> None:
    canaries = [f"{CANARY}-{where}" for where in ("prompt", "stream", "tool", "user", "header", "completion")]
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
        }
    ]
    answers: list[str] = []
    with make_client(audited, default_headers={"x-canary": canaries[4]}) as c:
        answers.append(chat(c, f"tell me about {canaries[0]}", user=canaries[3])[1])
        answers.append(chat(c, f"and stream {canaries[1]}", stream=True)[1])
        answers.append(
            chat(
                c,
                "tools",
                tools=tools,
                tool_choice="auto",
                extra_headers={"x-other": canaries[4]},
                metadata={"k": canaries[2]},
            )[1]
        )
        c.completions.create(model="deepseek-chat", prompt=f"complete {canaries[5]}")
        c.embeddings.create(model="embedder", input=[canaries[0]])
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(
                model="deepseek-chat",
                messages=[{"role": "user", "content": canaries[0]}],
                extra_headers={"x-llmroute-data-class": canaries[0]},
            )
    text = "\n".join(audit_lines(audited))
    needles = [*canaries, *key_needles([*KEYS.values(), CLIENT_KEY]), *(a for a in answers if len(a) > 12)]
    assert len(records(audited)) >= 6
    found = [n for n in needles if n in text]
    assert found == []
    record(
        "audit", {"linesScanned": len(records(audited)), "canariesAndKeysLookedFor": len(needles), "found": len(found)}
    )


def test_stdout_holds_audit_lines_only_and_the_log_none(audited: RouterProcess) -> None:
    assert audit_lines(audited)
    assert all(json.loads(line)["kind"] == "llmroute.audit" for line in audit_lines(audited))
    assert "llmroute.audit" not in audited.log()


def test_a_route_without_audit_writes_nothing_until_audit_is_turned_on_live(
    hub: Hub, tmp_path_factory: pytest.TempPathFactory
) -> None:
    docs = audit_docs(hub)
    del docs["route"]["spec"]["audit"]
    with audited_router(tmp_path_factory, "quiet", docs) as proc, make_client(proc) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}]
        )
        assert REQUEST_ID not in raw.headers
        assert "llmroute_audit_records_total 0.0" in proc.metrics()
        assert audit_lines(proc) == []

        # turned on in the same router's config: a reload, not a new hash (the operator would not roll the pods)
        hash_before = json.loads(proc.get("/readyz")[1])["configHash"]
        reloads = counter(proc, 'llmroute_config_reloads_total{result="ok"}')
        write_config(proc.log_path.parent / "config", audit_docs(hub))  # where audited_router wrote it
        deadline = time.monotonic() + 10
        while counter(proc, 'llmroute_config_reloads_total{result="ok"}') == reloads:
            assert time.monotonic() < deadline, "the router never reloaded the audited config"
            time.sleep(0.05)
        request_id, _ = chat(c, "hi again")
        assert record_of(proc, request_id)["configHash"] == hash_before
        assert json.loads(proc.get("/readyz")[1])["configHash"] == hash_before


def documented_jq() -> str:
    """The jq filter docs/audit.md gives for "no pii left the allowed jurisdictions"."""
    doc = (ROOT / "docs" / "audit.md").read_text()
    command = doc.split("<!-- audit-jq -->", 1)[1].split("```", 2)[1].split("\n", 1)[1]
    return command.split("'", 2)[1]


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_the_documented_jq_proof_passes_on_real_lines_and_catches_a_violation(
    client: openai.OpenAI, audited: RouterProcess, hub: Hub
) -> None:
    hub["together"].set_faults(status=503)
    chat(client, f"SSN {SSN}", data_class="public")
    chat(client, "hello", data_class="pii", stream=True)
    lines = audit_lines(audited)
    pii = [json.loads(line) for line in lines if "pii" in json.loads(line)["classes"]]
    assert len(pii) >= 2 and any(len(r["attempts"]) > 1 for r in pii)
    jq = [shutil.which("jq") or "jq", "-c", documented_jq()]
    clean = subprocess.run(jq, input="\n".join(lines), capture_output=True, text=True, check=True)
    assert clean.stdout == ""
    forged = copy.deepcopy(pii[0])
    forged["attempts"].append({**forged["attempts"][0], "provider": "deepseek", "jurisdiction": "CN"})
    caught = subprocess.run(jq, input=json.dumps(forged), capture_output=True, text=True, check=True)
    assert json.loads(caught.stdout)["requestId"] == forged["requestId"]


def test_the_caller_identity_and_refused_callers_are_recorded_never_a_credential(
    hub: Hub, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("audit-access")
    issuer = ClusterIssuer()
    path, keys, _ = write_secured_config(hub, folder, issuer)
    path.write_text(json.dumps({**json.loads(path.read_text()), "audit": {"sampleRate": 1.0}}))
    proc = RouterProcess(
        [str(path)], folder / "router.log", env={"LLMROUTE_KEYS_DIR": str(keys)}, stdout_path=folder / "audit.jsonl"
    )
    try:
        secured = Secured(proc, issuer, folder)
        sa_token = secured.sa_token("team-a", "web")
        ids = []
        for credential in (TOKEN, sa_token):
            with secured.client(credential) as c:
                raw = c.chat.completions.with_raw_response.create(model="deepseek-chat", messages=MESSAGES)
                ids.append(raw.headers[REQUEST_ID])
        assert [record_of(proc, rid)["identity"] for rid in ids] == ["token:chat-token/token", "team-a/web"]
        wrong, unlisted = f"{CANARY}-token", secured.sa_token("team-c", "intruder")
        with pytest.raises(openai.AuthenticationError), secured.client(wrong) as c:
            c.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
        with pytest.raises(openai.PermissionDeniedError), secured.client(unlisted) as c:
            c.embeddings.create(model="embedder", input=["x"])
        assert secured.raw(f"/v1/{CANARY}-path", {"Authorization": "Bearer x"})[0] == 401
        refused = [r for r in records(proc, at_least=5) if r["outcome"] in ("unauthenticated", "forbidden")]
        assert [
            (r["endpoint"], r["status"], r["outcome"], r["error"], r["identity"], r["attempts"]) for r in refused
        ] == [
            ("chat/completions", 401, "unauthenticated", "invalid_api_key", None, []),
            ("embeddings", 403, "forbidden", "caller_not_allowed", None, []),
            ("other", 401, "unauthenticated", "invalid_api_key", None, []),
        ]
        text = "\n".join(audit_lines(proc))
        secrets = [TOKEN, sa_token, unlisted, wrong, CANARY]
        assert [t for t in secrets if t in text] == [] and sa_token.split(".")[1] not in text
    finally:
        proc.stop()


def test_a_blocked_stdout_costs_audit_lines_never_requests(hub: Hub, tmp_path: Path) -> None:
    """stdout is a pipe nobody reads (a stalled log agent): requests keep being served, lines are dropped, counted."""
    fifo = tmp_path / "stdout"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # held open, never read until the end
    folder = write_config(tmp_path / "config", audit_docs(hub))
    proc = RouterProcess([str(folder)], tmp_path / "router.log", env={"LLMROUTE_AUDIT_BUFFER": "5"}, stdout_path=fifo)
    try:
        started = time.monotonic()
        with make_client(proc) as c:
            for _ in range(400):  # ~600-byte lines: far more than the pipe (64 KiB) and the buffer hold
                c.chat.completions.create(model="deepseek-chat", messages=MESSAGES)  # type: ignore[arg-type]
        elapsed = time.monotonic() - started
        dropped = counter(proc, "llmroute_audit_dropped_total")
        assert dropped > 100, dropped
        assert elapsed < 60
    finally:
        os.set_blocking(reader, True)
        drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(reader, 65536), b"")])
        drain.start()
        proc.stop()
        drain.join(10)
        os.close(reader)


def test_a_stream_broken_after_its_first_token_says_so(client: openai.OpenAI, audited: RouterProcess, hub: Hub) -> None:
    hub["deepseek"].set_faults(cut_after_tokens=2)
    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        extra_headers={"x-llmroute-data-class": "public"},
    )
    with pytest.raises(openai.APIError):
        list(raw.parse())
    rec = record_of(audited, raw.headers[REQUEST_ID])
    assert (rec["status"], rec["outcome"], rec["error"]) == (200, "stream_error", "stream_interrupted")
    assert attempts(rec) == [("deepseek", "CN", 200, "stream_error", "stream_broken")]
    assert 0 < rec["ttfbMs"] <= rec["latencyMs"]
