"""PII detection: each kind found with its checksum, look-alikes not reported, and the data never echoed."""

from __future__ import annotations

import pytest

from llmroute.core.pii import detect, summarise

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        pytest.param("write to jane.doe+x@example.co.uk today", ["email"], id="email"),
        pytest.param("card 4111 1111 1111 1111 exp 12/29", ["credit_card"], id="card-luhn-ok"),
        pytest.param("order 4111 1111 1111 1112 shipped", [], id="card-luhn-bad"),
        pytest.param("SSN 123-45-6789", ["us_ssn"], id="ssn"),
        pytest.param("ticket 666-45-6789 and 123-00-6789", [], id="ssn-invalid-areas"),
        pytest.param("IBAN DE89 3704 0044 0532 0130 00 please", ["iban"], id="iban-mod97-ok"),
        pytest.param("ref DE00 3704 0044 0532 0130 00", [], id="iban-mod97-bad"),
        pytest.param("call +1 415 555 0134 or (415) 555-0134", ["phone", "phone"], id="phones"),
        pytest.param("from 192.168.10.254 to 999.1.1.1", ["ipv4"], id="ipv4"),
        pytest.param("version 1.2.3 released in 2026 with 42 fixes", [], id="no-pii"),
    ],
)
def test_detect(text: str, kinds: list[str]) -> None:
    assert [f.kind for f in detect(text)] == kinds


def test_findings_point_at_the_data_and_summary_never_repeats_it() -> None:
    text = "mail a@b.io, SSN 123-45-6789, mail c@d.io"
    findings = detect(text)
    assert [text[f.start:f.end] for f in findings] == ["a@b.io", "123-45-6789", "c@d.io"]
    summary = summarise(findings)
    assert summary == "2 email, 1 us_ssn"
    assert "@" not in summary and "6789" not in summary
    assert summarise(()) == "none"
