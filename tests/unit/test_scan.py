"""``llmroute scan``: the JSON-lines contract (one line out per line in, in order, ids echoed, offsets in code points),
``--policy`` classes, per-line errors that do not stop the scan, exit codes, no value ever printed, and streaming in
bounded memory (output starts while input is still arriving).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute import scan
from llmroute.cli import main

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
SSN = "536-22-8726"
EMAIL = "jane.roe@example.org"
POLICY = {
    "apiVersion": "llmroute.io/v1alpha1", "kind": "ProviderPolicy", "metadata": {"name": "p"},
    "spec": {
        "providers": [{"name": "vllm", "endpoint": "http://vllm:8000/v1", "jurisdiction": "US", "selfHosted": True}],
        "detectors": [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}],
        "dataClasses": [{"name": "public"}, {"name": "pii", "detect": ["us_ssn", "email"]},
                        {"name": "hr", "detect": ["employee_id"]}],
    },
}


def lines(*docs: Any) -> str:
    return "".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in docs)


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, *argv: str) -> tuple[int, list[Any], str]:
    source = tmp_path / "in.jsonl"
    source.write_text(text, encoding="utf-8")
    code = main(["scan", *argv, str(source)])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    return str(path)


def test_text_and_body_lines_in_order_with_ids_and_code_point_offsets(capsys: pytest.CaptureFixture[str],
                                                                     tmp_path: Path) -> None:
    prefix = "Grüße, 日本 — write to "
    text = f"{prefix}{EMAIL} please"
    body = {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": f"SSN {SSN}"}]},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                              "function": {"name": "f", "arguments": json.dumps({"to": EMAIL})}}]}]}
    code, out, err = run(capsys, tmp_path, lines(
        {"id": "a", "text": text}, {"id": 2, **body}, {"id": {"k": 1}, "body": {"prompt": ["x", f"SSN {SSN}"]}},
        {"id": None, "text": "nothing here"}, {"id": "e", "input": "nothing"}))
    assert code == 0
    assert [o["id"] for o in out] == ["a", 2, {"k": 1}, None, "e"]
    assert out[0] == {"id": "a", "findings": [{"type": "email", "start": len(prefix), "end": len(prefix) + len(EMAIL)}]}
    assert text[out[0]["findings"][0]["start"]:out[0]["findings"][0]["end"]] == EMAIL
    assert out[1]["findings"] == [
        {"type": "us_ssn", "start": 4, "end": 15, "path": ["messages", 0, "content", 0, "text"]},
        {"type": "email", "start": 0, "end": len(EMAIL), "path": ["messages", 1, "tool_calls", 0, "function",
                                                                  "arguments", "to"]}]
    assert out[2]["findings"] == [{"type": "us_ssn", "start": 4, "end": 15, "path": ["prompt", 1]}]
    assert out[3] == {"id": None, "findings": []} and out[4] == {"id": "e", "findings": []}
    assert "classes" not in out[0]
    assert err == "llmroute scan: 5 lines, 3 with findings (email 2, us_ssn 2), 0 errors\n"


def test_policy_gives_classes_and_custom_detectors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, tmp_path, lines(
        {"id": 1, "text": f"SSN {SSN}, badge EMP-123456"}, {"id": 2, "text": "hello"}, {"id": 3, "text": EMAIL}),
        "--policy", policy_file(tmp_path))
    assert code == 0
    assert [(o["id"], [f["type"] for f in o["findings"]], o["classes"]) for o in out] == [
        (1, ["us_ssn", "employee_id"], ["pii", "hr"]), (2, [], []), (3, ["email"], ["pii"])]


def test_bad_lines_are_reported_and_the_scan_goes_on(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    long_line = json.dumps({"id": "long", "text": "x" * 500})
    code, out, err = run(capsys, tmp_path, lines(
        "{not json", "[1, 2]", {"text": f"no id {SSN}"}, {"id": 4, "text": 5}, {"id": 5, "body": "x"},
        {"id": 6, "model": "m"}, long_line, "", "   ", {"id": 7, "text": f"SSN {SSN}"},
        '{"id": 12345678901234567890123, "text": "ok"}'), "--max-line-bytes", "200")
    assert code == 0
    assert out == [
        {"id": None, "error": "invalid JSON"},
        {"id": None, "error": "a line must be a JSON object"},
        {"id": None, "error": "no id"},
        {"id": 4, "error": "text must be a string"},
        {"id": 5, "error": "no text and no OpenAI request body (messages, prompt or input)"},
        {"id": 6, "error": "no text and no OpenAI request body (messages, prompt or input)"},
        {"id": None, "error": "line longer than 200 bytes"},
        {"id": 7, "findings": [{"type": "us_ssn", "start": 4, "end": 15}]},
        {"id": 12345678901234567890123, "findings": []},
    ]
    assert err.endswith("7 errors\n")


def test_never_prints_a_value(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    arguments = json.dumps({EMAIL: {"note": f"SSN {SSN}"}})
    code, out, err = run(capsys, tmp_path, lines(
        {"id": 1, "text": f"{EMAIL} {SSN}"}, f'{{"id": 2, "text": "{SSN}" ', {"id": 3, "text": [SSN]},
        {"id": 4, "messages": [{"role": "user", "content": EMAIL}]},
        {"id": 5, "messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": arguments}}]}]}),
        "--policy", policy_file(tmp_path))
    assert code == 0 and len(out) == 5
    assert out[4]["findings"][0]["path"] == ["messages", 0, "tool_calls", 0, "function", "arguments", "*", "note"]
    printed = json.dumps(out) + err
    assert SSN not in printed and EMAIL not in printed and "jane" not in printed


@pytest.mark.parametrize(("argv", "message"), [
    (["scan", "/no/such/file.jsonl"], "/no/such/file.jsonl: no such file"),
    (["scan", "--policy", "/no/such/policy.yaml", "-"], "no such file or directory"),
    (["scan", "--max-line-bytes", "0", "-"], "--max-line-bytes must be positive"),
])
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err


def test_a_policy_file_without_exactly_one_policy_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    two = tmp_path / "two.yaml"
    other = {**POLICY, "metadata": {"name": "q"}}
    two.write_text(yaml.safe_dump_all([POLICY, other]), encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**POLICY, "spec": {**POLICY["spec"], "dataClasses": [
        {"name": "pii", "detect": ["ssn"]}]}}), encoding="utf-8")
    assert main(["scan", "--policy", str(two), "-"]) == 2
    assert "expected exactly one ProviderPolicy (found: p, q)" in capsys.readouterr().err
    assert main(["scan", "--policy", str(bad), "-"]) == 2
    assert 'unknown "ssn"' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["scan"])
    assert exc.value.code == 2


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_records_split_lines_across_any_chunking(chunk: int) -> None:
    data = b'{"id":1}\n\n{"id":2}\r\n' + b"x" * 30 + b'\n{"id":3}'
    got = list(scan.records(io.BytesIO(data), max_line_bytes=20, chunk_bytes=chunk))
    assert got == [b'{"id":1}', b'{"id":2}\r', None, b'{"id":3}']


def test_many_lines_stream_through_a_pipe_in_bounded_memory() -> None:
    """300k lines here (~8 s); tests/benchmarks/bench_escalation.py --scan runs the million."""
    count = 300_000
    proc = subprocess.Popen([sys.executable, "-m", "llmroute", "scan", "--quiet", "-"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    written = threading.Event()
    first_output_while_writing: list[bool] = []
    peak_kb: list[int] = []

    def feed() -> None:
        assert proc.stdin is not None
        batch = 10_000
        for start in range(0, count, batch):
            proc.stdin.write(b"".join(b'{"id":%d,"text":"call me at jane%d@example.org"}\n' % (i, i)
                                      for i in range(start, start + batch)))
        written.set()
        proc.stdin.close()

    writer = threading.Thread(target=feed)
    started = time.monotonic()
    writer.start()
    first = proc.stdout.readline()
    first_output_while_writing.append(not written.is_set())
    n, last = 1, first
    for line in proc.stdout:
        n, last = n + 1, line
        if n % 50_000 == 0:
            peak_kb.append(_peak_rss_kb(proc.pid))
    writer.join()
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    elapsed = time.monotonic() - started
    email = "jane0@example.org"
    assert json.loads(first) == {"id": 0, "findings": [{"type": "email", "start": 11, "end": 11 + len(email)}]}
    assert n == count and json.loads(last)["id"] == count - 1
    assert first_output_while_writing == [True], "output must start before the input ends"
    assert max(peak_kb) < 200_000, f"peak RSS {max(peak_kb)} KB"
    print(f"\n{count:,} lines in {elapsed:.1f}s ({count / elapsed:,.0f} lines/s), "
          f"peak RSS {max(peak_kb) / 1024:.0f} MB")


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():  # not Linux: nothing to measure
        return 0
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_open_input_reads_stdin_for_dash() -> None:
    stdin = io.BytesIO(b"")
    assert scan.open_input("-", stdin) is stdin
