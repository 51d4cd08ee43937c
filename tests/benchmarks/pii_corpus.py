"""A labelled corpus of synthetic prompts for the PII detector: nothing real, seeded, reproducible.

Each record is an OpenAI request body (chat with plain or multi-part content, tool messages and tool-call history,
legacy ``prompt``, embeddings ``input``) whose text is chat, code, logs, JSON, CSV, support tickets or another
language, plus the labels: the ``(type, value)`` of every personal datum written into it. About half the records
hold none and are built from look-alikes: ISBNs, tracking, order, invoice and PO numbers, version strings and OIDs,
private/reserved/documentation addresses and netmasks, test card numbers with bad checksums, dates, timestamps,
UUIDs, hashes, MACs, IMEIs, routing numbers, placeholder and documentation example keys, role mailboxes, git
remotes, package@version strings. Records that hold PII carry look-alikes too.

Values are valid where validity is defined (Luhn, SSN ranges, IBAN mod 97 with the country's BBAN shape, phone
numbers valid in the ``phonenumbers`` metadata of 24 regions, printed in E.164, international, national, RFC 3966
and ad-hoc formats), because a detector that validates is only as good as what real text carries. Phones and
cards appear with and without context words (and in several languages), inside JSON strings, CSV cells and log
lines. Two seeds make two halves: tune on ``TUNE_SEED``, report on ``HELD_OUT_SEED``.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import phonenumbers as pn

TUNE_SEED = 1
HELD_OUT_SEED = 3
"""Seed 2 was the first held-out half: measured once (results/pii_first_held_out.json), after which misses in the
then-new families were fixed on seed 1; seed 3 has been looked at by nothing but the benchmark."""
HELD_OUT_UNSEEN = 0.3
"""Share of held-out records built from families written after tuning (``unseen_record``)."""

Label = tuple[str, str]


@dataclass
class Record:
    """One request body and the personal data written into it (``labels``: type and the exact value text)."""

    id: str
    kind: str
    body: dict[str, Any]
    labels: list[Label] = field(default_factory=list)


@dataclass
class Seg:
    """A piece of text and the labels of what it holds."""

    text: str
    labels: list[Label] = field(default_factory=list)


FIRST = ["Jane", "John", "Priya", "Wei", "Sofia", "Lukas", "Amara", "Mateo", "Yuki", "Olga", "Ahmed", "Chloé",
         "Jürgen", "Ana", "Kwame", "Ingrid", "Ravi", "Lucía", "Tomasz", "Mei", "Oluwaseun", "Sven", "Fatima", "Noah",
         "Emma", "Diego", "Hana", "Marco", "Aisha", "Liam"]
LAST = ["Doe", "Smith", "Sharma", "Zhang", "Rossi", "Müller", "Okafor", "García", "Tanaka", "Ivanova", "Hassan",
        "Dubois", "Schmidt", "Silva", "Mensah", "Larsen", "Patel", "Fernández", "Kowalski", "Chen", "Adeyemi",
        "Lindqvist", "Khan", "Brown", "Wilson", "López", "Kim", "Bianchi", "Bello", "O'Brien"]
FREE_MAIL = ["gmail.com", "outlook.com", "yahoo.com", "hotmail.co.uk", "web.de", "gmx.net", "orange.fr", "yahoo.co.jp",
             "qq.com", "163.com", "icloud.com", "proton.me", "libero.it", "uol.com.br", "rediffmail.com", "mail.ru"]
COMPANY = ["acme-corp.com", "globex.io", "initech.net", "umbrella-health.org", "northwind.co.uk", "contoso.com",
           "fabrikam.de", "example.com", "example.org", "tailspin.fr", "wayne-ent.com", "hooli.xyz",
           "eu.mail.stark-industries.com", "cs.uni-heidelberg.de", "ox.ac.uk", "clinic.health", "shop.co.jp"]
PHONE_REGIONS = ["US", "US", "US", "US", "CA", "GB", "GB", "DE", "DE", "FR", "ES", "IT", "NL", "IN", "BR", "MX", "JP",
                 "CN", "AU", "SG", "ZA", "SE", "PL", "CH", "IE", "NG"]
IBAN_BBAN = {"DE": "8n10n", "GB": "4a6n8n", "FR": "5n5n11c2n", "ES": "4n4n1n1n10n", "IT": "1a5n5n12c", "NL": "4a10n",
             "BE": "3n7n2n", "CH": "5n12c", "AT": "5n11n", "PL": "8n16n", "SE": "3n16n1n", "IE": "4a6n8n",
             "PT": "4n4n11n2n", "DK": "4n9n1n", "NO": "4n6n1n", "FI": "3n11n"}
TLDS_CODE = ["py", "js", "ts", "go", "rs", "md", "png", "svg"]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# --- personal data -------------------------------------------------------------------------------------------------

def name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def _ascii(s: str) -> str:
    table = str.maketrans("üéáíóöñçäøåłńś'", "ueaiooncaoalns-")
    return s.lower().translate(table).replace("-", "")


def email(rng: random.Random) -> str:
    first, last = (_ascii(p) for p in name(rng))
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}", f"{first}",
                        f"{first}.{last}+{rng.choice(['orders', 'news', 'x'])}", f"{last}.{first[0]}",
                        f"{first}{rng.randint(1970, 2005)}"])
    domain = rng.choice(FREE_MAIL if rng.random() < 0.5 else COMPANY)
    out = f"{local}@{domain}"
    return out.upper() if rng.random() < 0.03 else out


def phone(rng: random.Random, region: str | None = None) -> str:
    region = region or rng.choice(PHONE_REGIONS)
    return _format_phone(rng, phone_number(rng, region), region)


def phone_number(rng: random.Random, region: str) -> pn.PhoneNumber:
    """A number valid in ``region``'s plan: the plan's example with its tail replaced by random digits."""
    kind = rng.choice([pn.PhoneNumberType.MOBILE, pn.PhoneNumberType.FIXED_LINE])
    example = pn.example_number_for_type(region, kind) or pn.example_number(region)
    assert example is not None
    nsn = str(example.national_number)
    num = example
    for _ in range(200):
        keep = max(1, len(nsn) - rng.randint(4, 7))
        cand = pn.parse(f"+{example.country_code}{nsn[:keep]}{_digits(rng, len(nsn) - keep)}")
        if pn.is_valid_number(cand):
            num = cand
            break
    return num


def _format_phone(rng: random.Random, num: pn.PhoneNumber, region: str) -> str:
    fmt = pn.PhoneNumberFormat
    r = rng.random()
    if r < 0.30:
        return pn.format_number(num, fmt.INTERNATIONAL)
    if r < 0.50:
        return pn.format_number(num, fmt.NATIONAL)
    if r < 0.60:
        return pn.format_number(num, fmt.E164)
    if r < 0.65:
        return pn.format_number(num, fmt.RFC3966)
    nsn = str(num.national_number)
    if region in ("US", "CA"):
        a, b, c = nsn[:3], nsn[3:6], nsn[6:]
        return rng.choice([f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"({a}){b}-{c}", f"+1 ({a}) {b}-{c}", f"1-{a}-{b}-{c}",
                           f"+1.{a}.{b}.{c}", f"{a} {b} {c}", f"{a}{b}{c}"])
    intl = pn.format_number(num, fmt.INTERNATIONAL)
    return rng.choice([intl.replace(f"+{num.country_code}", f"00{num.country_code}", 1),
                       intl.replace(" ", "-"), intl.replace(f"+{num.country_code} ", f"+{num.country_code} (0)", 1)
                       if region in ("GB", "DE", "CH", "NL") else intl, f"+{num.country_code}{nsn}"])


CARD_PREFIXES = [("4", 16), ("4", 16), ("4", 16), ("51", 16), ("53", 16), ("55", 16), ("2221", 16), ("2720", 16),
                 ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3530", 16), ("36", 14), ("62", 16), ("62", 19),
                 ("4", 13)]


def card(rng: random.Random) -> str:
    prefix, length = rng.choice(CARD_PREFIXES)
    digits = _luhn_complete(rng, prefix, length)
    return _format_card(rng, digits)


def _format_card(rng: random.Random, digits: str) -> str:
    r = rng.random()
    if r < 0.4 and len(digits) == 15:
        return f"{digits[:4]} {digits[4:10]} {digits[10:]}"
    if r < 0.45:
        return digits
    sep = rng.choice([" ", " ", "-", " "]) if r < 0.8 else ""
    return sep.join(digits[i:i + 4] for i in range(0, len(digits), 4))


def ssn(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _iban_check(country: str, bban: str) -> str:
    n = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{98 - n % 97:02d}"


def iban(rng: random.Random) -> str:
    country = rng.choice(list(IBAN_BBAN))
    bban = ""
    spec = IBAN_BBAN[country]
    for count, kind in ((int(x[:-1]), x[-1]) for x in _split_spec(spec)):
        alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[kind]
        bban += _alnum(rng, count, alphabet if kind != "c" else string.digits * 3 + string.ascii_uppercase)
    compact = country + _iban_check(country, bban) + bban
    if rng.random() < 0.55:
        return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))
    return compact


def _split_spec(spec: str) -> list[str]:
    out, cur = [], ""
    for ch in spec:
        cur += ch
        if ch.isalpha():
            out.append(cur)
            cur = ""
    return out


def public_ipv4(rng: random.Random) -> str:
    import ipaddress
    while True:
        a = rng.choice([rng.randint(1, 223), rng.choice([81, 91, 185, 203, 104, 151, 52, 34, 77, 213, 37, 46])])
        ip = ipaddress.IPv4Address(f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}")
        if ip.is_global and not str(ip).startswith(("8.8.", "1.1.1.", "9.9.9.")):
            return str(ip)


def public_ipv6(rng: random.Random) -> str:
    import ipaddress
    while True:
        groups = [rng.choice(["2001", "2a00", "2a02", "2600", "2607", "2804", "2409", "2c0f"])]
        groups += [f"{rng.randint(0, 0xFFFF):x}" for _ in range(3)]
        if rng.random() < 0.5:
            tail = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(4)]
        else:
            tail = ["", f"{rng.randint(1, 0xFFFF):x}"]
        ip = ipaddress.IPv6Address(":".join(groups + tail) if tail[0] else ":".join(groups) + "::" + tail[1])
        if ip.is_global and not str(ip).startswith("2001:db8"):
            return str(ip)


def ip(rng: random.Random) -> str:
    return public_ipv6(rng) if rng.random() < 0.25 else public_ipv4(rng)


B62 = string.ascii_letters + string.digits


def api_key(rng: random.Random) -> str:
    return rng.choice([
        lambda: "sk-proj-" + _alnum(rng, 48, B62 + "_-"),
        lambda: "sk-" + _alnum(rng, 48),
        lambda: "sk-ant-api03-" + _alnum(rng, 93, B62 + "_-") + "AA",
        lambda: "AKIA" + _alnum(rng, 16, string.ascii_uppercase + "234567"),
        lambda: "ghp_" + _alnum(rng, 36),
        lambda: "github_pat_11" + _alnum(rng, 20, string.ascii_uppercase + string.digits) + "_" + _alnum(rng, 59),
        lambda: "xoxb-" + _digits(rng, 12) + "-" + _digits(rng, 13) + "-" + _alnum(rng, 24),
        lambda: "xoxp-" + _digits(rng, 11) + "-" + _digits(rng, 11) + "-" + _digits(rng, 13) + "-" + _alnum(rng, 32,
                                                                                                          "0123456789abcdef"),
        lambda: "AIza" + _alnum(rng, 35, B62 + "_-"),
        lambda: "sk_live_" + _alnum(rng, 24),
        lambda: "rk_live_" + _alnum(rng, 24),
        lambda: "hf_" + _alnum(rng, 34),
        lambda: "glpat-" + _alnum(rng, 20, B62 + "_-"),
        lambda: "npm_" + _alnum(rng, 36),
        lambda: "SG." + _alnum(rng, 22, B62 + "_-") + "." + _alnum(rng, 43, B62 + "_-"),
        lambda: _jwt(rng),
    ])()


def _jwt(rng: random.Random) -> str:
    import base64
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")
    header = b64({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"})
    payload = b64({"sub": _digits(rng, 8), "iat": 1700000000 + rng.randint(0, 10**7), "scope": "read write"})
    return f"{header}.{payload}.{_alnum(rng, 43, B62 + '_-')}"


def secret_assignment(rng: random.Random) -> Seg:
    """A high-entropy secret whose shape is generic: only the key name around it says what it is."""
    value = _alnum(rng, rng.choice([32, 40, 64]), rng.choice([B62, B62 + "+/", "0123456789abcdef"]))
    key = rng.choice(["api_key", "API_KEY", "secret", "client_secret", "apiKey", "access_token", "AUTH_TOKEN",
                      "aws_secret_access_key", "x-api-key", "password"])
    form = rng.choice([f'{key} = "{value}"', f"{key}: {value}", f"export {key.upper()}={value}", f'"{key}": "{value}"',
                       f"Authorization: Bearer {value}", f"--header '{key}: {value}'"])
    return Seg(form, [("api_key", value)])


# --- look-alikes ---------------------------------------------------------------------------------------------------

def isbn(rng: random.Random) -> str:
    core = "978" + _digits(rng, 9)
    check = (10 - sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(core)) % 10) % 10
    full = core + str(check)
    if rng.random() < 0.5:
        return full
    return f"{full[:3]}-{full[3]}-{full[4:7]}-{full[7:12]}-{full[12]}"


def isbn10(rng: random.Random) -> str:
    core = _digits(rng, 9)
    check = sum((10 - i) * int(d) for i, d in enumerate(core)) % 11
    c = (11 - check) % 11
    return f"{core[0]}-{core[1:4]}-{core[4:9]}-{'X' if c == 10 else c}"


def lookalike(rng: random.Random) -> str:
    """A string that resembles personal data and is not: what a detector must leave alone."""
    g = rng.choice(LOOKALIKES)
    return g(rng)


def _bad_card(rng: random.Random) -> str:
    prefix, length = rng.choice(CARD_PREFIXES)
    good = _luhn_complete(rng, prefix, length)
    bad = good[:-1] + str((int(good[-1]) + rng.randint(1, 9)) % 10)
    return _format_card(rng, bad)


def _not_luhn(rng: random.Random, n: int) -> str:
    """Grouped digits that are not a card number (random gift-card or licence codes fail Luhn 9 times in 10)."""
    while True:
        d = _digits(rng, n)
        if not _luhn_ok(d):
            return " ".join(d[i:i + 4] for i in range(0, n, 4))


def _private_ip(rng: random.Random) -> str:
    return rng.choice([
        f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "127.0.0.1", f"169.254.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"100.{rng.randint(64, 127)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "0.0.0.0", f"224.0.0.{rng.randint(1, 254)}", f"239.255.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"192.0.2.{rng.randint(1, 254)}", f"198.51.100.{rng.randint(1, 254)}", f"203.0.113.{rng.randint(1, 254)}",
        "255.255.255.255", f"240.0.0.{rng.randint(1, 254)}",
    ])


def _netmask(rng: random.Random) -> str:
    return rng.choice(["255.255.255.0", "255.255.0.0", "255.255.255.128", "255.255.240.0", "255.0.0.0",
                       "255.255.255.252", "0.0.0.255", "0.0.255.255", "255.255.248.0"])


def _cidr(rng: random.Random) -> str:
    return f"{public_ipv4(rng).rsplit('.', 1)[0]}.0/{rng.choice([16, 20, 22, 24])}"


def _private_ipv6(rng: random.Random) -> str:
    return rng.choice(["::1", f"fe80::{rng.randint(0, 0xffff):x}:{rng.randint(0, 0xffff):x}%eth0",
                       f"fd{rng.randint(0, 255):02x}:{rng.randint(0, 0xffff):x}::{rng.randint(1, 0xffff):x}",
                       f"2001:db8::{rng.randint(1, 0xffff):x}", "::", f"ff02::{rng.randint(1, 9)}",
                       f"::ffff:10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"])


def _version(rng: random.Random) -> str:
    a, b, c, d = rng.randint(0, 12), rng.randint(0, 30), rng.randint(0, 40), rng.randint(0, 250)
    return rng.choice([f"v{a}.{b}.{c}", f"{a % 10}.{b % 10}.{c}.{d}", f"version {a}.{b}.{c}.{d}",
                       f"{a}.{b}.{c}-rc.{d % 9}",
                       f"Chrome/{rng.randint(100, 130)}.0.{rng.randint(4000, 6999)}.{rng.randint(0, 200)}",
                       f"10.0.{rng.randint(17000, 22631)}.{rng.randint(1, 4000)}", f"v{a}.{b}.{c}.{d}",
                       f"build {a}.{b}.{c}.{d}", f"firmware {a}.{b}.{rng.randint(0, 9)}.{rng.randint(0, 99)}",
                       f"Version: {a}.{b}.{c}.{d}", f"=={a}.{b}.{c}.{d}"])


def _oid(rng: random.Random) -> str:
    return rng.choice(["1.2.840.113549.1.1.11", "1.3.6.1.4.1.311.21.7", "1.3.6.1.2.1.1.3.0", "2.5.4.3", "2.5.29.17",
                       "1.2.840.10045.4.3.2", f"1.3.6.1.4.1.{rng.randint(1000, 60000)}.{rng.randint(1, 9)}",
                       "2.16.840.1.101.3.4.2.1", "OID 2.5.4.10", "1.3.6.1.5.5.7.3.1", "2.5.4.6"])


def _order(rng: random.Random) -> str:
    return rng.choice([
        f"Order #{_digits(rng, 3)}-{_digits(rng, 7)}-{_digits(rng, 7)}", f"order {_digits(rng, 10)}",
        f"ORD-{rng.randint(2019, 2026)}-{_digits(rng, 8)}", f"invoice INV-{_digits(rng, 6)}",
        f"PO {rng.choice(['45', '47'])}{_digits(rng, 8)}", f"Bestellnummer {_digits(rng, 10)}",
        f"n° de commande {_digits(rng, 9)}", f"pedido #{_digits(rng, 8)}", f"订单号 {_digits(rng, 16)}",
        f"confirmation code {_alnum(rng, 6, string.ascii_uppercase + string.digits)}",
        f"case {_digits(rng, 8)}", f"ticket #{_digits(rng, 6)}", f"transaction id {_digits(rng, 12)}",
        f"account no. {_digits(rng, 10)}", f"customer #{_digits(rng, 9)}",
        f"ref {_digits(rng, 3)}-{_digits(rng, 3)}-{_digits(rng, 4)}",
        f"SKU {_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 4)}",
        f"part no. {_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 4)}",
        f"Order number: {_digits(rng, 3)}-{_digits(rng, 3)}-{_digits(rng, 4)}", f"注文番号 {_digits(rng, 11)}",
        f"booking ref {_digits(rng, 10)}",
    ])


def _tracking(rng: random.Random) -> str:
    return rng.choice([
        f"1Z{_alnum(rng, 6, string.ascii_uppercase + string.digits)}{_digits(rng, 10)}",
        f"tracking number {_digits(rng, 12)}", f"FedEx {_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 4)}",
        "USPS " + " ".join(["9400", _digits(rng, 4), _digits(rng, 4), _digits(rng, 4), _digits(rng, 4),
                            _digits(rng, 2)]),
        f"DHL waybill {_digits(rng, 10)}", f"Sendungsnummer {_digits(rng, 20)}",
        f"tracking: {_alnum(rng, 2, string.ascii_uppercase)}{_digits(rng, 9)}{rng.choice(['GB', 'US', 'CN', 'DE'])}",
    ])


def _imei(rng: random.Random) -> str:
    return f"IMEI {_luhn_complete(rng, rng.choice(['35', '86', '01']), 15)}"


def _routing(rng: random.Random) -> str:
    return rng.choice([f"routing number {_digits(rng, 9)}", f"ABA {_digits(rng, 9)}", f"sort code {_digits(rng, 2)}-"
                       f"{_digits(rng, 2)}-{_digits(rng, 2)}", f"BIC DEUTDEFF{_digits(rng, 3)}"])


def _date_time(rng: random.Random) -> str:
    y, m, d = rng.randint(2015, 2026), rng.randint(1, 12), rng.randint(1, 28)
    hh, mm, ss = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y} {hh:02d}:{mm:02d}", f"{m:02d}/{d:02d}/{y}",
                       f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{_digits(rng, 3)}Z",
                       f"ts={1600000000 + rng.randint(0, 10**8)}",
                       f"{1600000000000 + rng.randint(0, 10**11)}", f"{y}{m:02d}{d:02d}{hh:02d}{mm:02d}{ss:02d}",
                       f"{d} {m} {y}", f"{y} {m:02d} {d:02d} {hh:02d}{mm:02d}"])


def _ids(rng: random.Random) -> str:
    hexd = "0123456789abcdef"
    return rng.choice([
        "-".join([_alnum(rng, 8, hexd), _alnum(rng, 4, hexd), "4" + _alnum(rng, 3, hexd), "a" + _alnum(rng, 3, hexd),
                  _alnum(rng, 12, hexd)]),
        f"commit {_alnum(rng, 40, hexd)}", _alnum(rng, 7, hexd), f"sha256:{_alnum(rng, 64, hexd)}",
        ":".join(_alnum(rng, 2, hexd) for _ in range(6)), f"trace_id={_alnum(rng, 32, hexd)}",
        f"resourceVersion: \"{_digits(rng, 9)}\"", f"pid {rng.randint(100, 99999)}",
        f"{rng.randint(1, 9)}{_digits(rng, 8)} bytes",
        f"request-id: req_{_alnum(rng, 24)}", f"etag W/\"{_alnum(rng, 16, hexd)}\"",
        f"{_alnum(rng, 20, string.ascii_uppercase + string.digits)}",
    ])


def _numbers(rng: random.Random) -> str:
    return rng.choice([
        f"${rng.randint(1, 999)},{_digits(rng, 3)},{_digits(rng, 3)}.{_digits(rng, 2)}",
        f"{rng.uniform(-90, 90):.6f}, {rng.uniform(-180, 180):.6f}",
        f"ZIP {_digits(rng, 5)}-{_digits(rng, 4)}",
        f"{rng.randint(1000, 9999)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        f"EAN {_luhn_complete(rng, '40', 13)}", f"US {rng.randint(7, 11)},{_digits(rng, 3)},{_digits(rng, 3)} B2",
        f"+{rng.randint(1, 99)}.{_digits(rng, 2)}%",
        f"{_digits(rng, 3)}.{_digits(rng, 3)}.{_digits(rng, 3)}", f"{rng.randint(1, 9)}e-{rng.randint(3, 9)}",
        _not_luhn(rng, 16), f"lot {_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 4)}",
        f"+{rng.randint(100, 9999)} points", f"{_digits(rng, 10)}",
    ])


def _placeholder_keys(rng: random.Random) -> str:
    return rng.choice(["sk-...", "sk-xxxxxxxxxxxxxxxxxxxxxxxx", "api_key = \"YOUR_API_KEY\"", "AKIAIOSFODNN7EXAMPLE",
                       "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "token: <your-token-here>",
                       "OPENAI_API_KEY=${OPENAI_API_KEY}", "api_key=os.environ[\"API_KEY\"]",
                       "ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                       "Authorization: Bearer $TOKEN", "password: changeme", "secret: \"{{ .Values.secret }}\"",
                       "api_key: REDACTED", "sk-test-1234", "Bearer <token>", "xoxb-your-bot-token",
                       f"session_id={_alnum(rng, 8, '0123456789abcdef')}", "client_secret: ********",
                       "stripe.api_key = settings.STRIPE_KEY", "pk_test_TYooMQauvdEDq54NiTphI7jx"])


def _mail_lookalikes(rng: random.Random) -> str:
    return rng.choice(["noreply@github.com", "no-reply@accounts.google.com", "git@github.com:acme/api.git",
                       f"icon@{rng.choice([2, 3])}x.png", f"@babel/core@7.{rng.randint(10, 26)}.0", "user@localhost",
                       f"@{_ascii(rng.choice(FIRST))}_{rng.randint(1, 99)}", "@app.route('/users')", "root@db-01",
                       f"lodash@4.17.{rng.randint(10, 21)}", "mailer-daemon@googlemail.com", "donotreply@bank.example",
                       "postmaster@mail.acme-corp.com", "git@gitlab.com:group/project.git", "ssh deploy@10.0.0.5",
                       f"styles@{rng.randint(1, 3)}x.css", "docker.io/library/nginx@sha256:abc123"])


LOOKALIKES: list[Callable[[random.Random], str]] = [
    isbn, isbn10, _bad_card, _bad_card, _private_ip, _private_ip, _netmask, _cidr, _private_ipv6, _version, _version,
    _oid, _order, _order, _order, _tracking, _tracking, _imei, _routing, _date_time, _date_time, _ids, _ids, _numbers,
    _numbers, _placeholder_keys, _mail_lookalikes,
]

# --- contexts ------------------------------------------------------------------------------------------------------

PHONE_CTX = ["call me at {}", "my number is {}", "Phone: {}", "Tel. {}", "mobile {}", "reach me on {}", "cell: {}",
             "WhatsApp {}", "text me at {}", "contact number {}", "Telefon: {}", "Handy {}", "erreichbar unter {}",
             "téléphone : {}", "portable {}", "appelez-moi au {}", "teléfono {}", "móvil: {}", "llámame al {}",
             "cellulare {}", "telefone {}", "celular {}", "电话：{}", "手机号{}", "电话号码是 {}", "電話番号：{}",  # noqa: RUF001 - the prompts' own punctuation
             "携帯 {}", "bel me op {}", "telefoonnummer {}", "ph {}", "{} (mobile)", "{}", "{}", "{} ext. 12",
             "Fax {}", "tel:{}", "callback number {}"]
CARD_CTX = ["card {}", "my Visa {}", "credit card number {}", "pay with {}", "Kartennummer {}", "carte bancaire {}",
            "tarjeta {}", "卡号 {}", "CC: {}", "{}", "{}", "card ending... actually full number {}", "PAN {}",
            "charged to {}", "numéro de carte {}"]
SSN_CTX = ["SSN {}", "social security number {}", "SSN: {}", "my social is {}", "SS# {}", "{}", "{}", "TIN/SSN {}",
           "Social Security No. {}", "employee SSN={}"]
IBAN_CTX = ["IBAN {}", "please wire it to {}", "Bankverbindung: {}", "IBAN : {}", "{}", "account {}", "iban={}",
            "Konto {}", "RIB/IBAN {}", "cuenta {}"]
IP_CTX = ["client {}", "from {}", "IP {}", "remote_addr={}", "X-Forwarded-For: {}", "{}", "login from {}",
          "src={}", "connected to peer {}", "Accepted password for admin from {} port 51234 ssh2", "{} - -"]
EMAIL_CTX = ["{}", "{}", "email me at {}", "mailto:{}", "<{}>", "E-Mail: {}", "courriel : {}", "邮箱 {}",
             "contact {}", "Reply-To: {}", "cc {}", "({})"]
KEY_CTX = ["{}", "OPENAI_API_KEY={}", "key: {}", "token {}", "use {} for auth", "Authorization: Bearer {}", "'{}'",
           "export GITHUB_TOKEN={}", "AWS_ACCESS_KEY_ID={}", "headers = {{\"Authorization\": \"Bearer {}\"}}"]

PII_MAKERS: dict[str, tuple[Callable[[random.Random], str], list[str]]] = {
    "email": (email, EMAIL_CTX),
    "phone": (phone, PHONE_CTX),
    "credit_card": (card, CARD_CTX),
    "us_ssn": (ssn, SSN_CTX),
    "iban": (iban, IBAN_CTX),
    "ip_address": (ip, IP_CTX),
    "api_key": (api_key, KEY_CTX),
}
PII_WEIGHTS = {"email": 5, "phone": 5, "credit_card": 3, "us_ssn": 3, "iban": 2, "ip_address": 3, "api_key": 3}


def pii_value(rng: random.Random, kind: str | None = None) -> tuple[str, str]:
    kind = kind or rng.choices(list(PII_WEIGHTS), weights=list(PII_WEIGHTS.values()))[0]
    return kind, PII_MAKERS[kind][0](rng)


def pii_phrase(rng: random.Random, kind: str | None = None) -> Seg:
    kind, value = pii_value(rng, kind)
    if kind == "us_ssn" and rng.random() < 0.15:
        value = value.replace("-", rng.choice([" ", ""]))
        return Seg(rng.choice(["SSN {}", "social security number {}", "SSN: {}"]).format(value), [(kind, value)])
    if kind == "api_key" and rng.random() < 0.25:
        return secret_assignment(rng)
    context = rng.choice(PII_MAKERS[kind][1])
    while kind == "phone" and value.isdigit() and context == "{}":
        context = rng.choice(PHONE_CTX)  # bare digits with no cue at all are no more a phone than an order number
    return Seg(context.format(value), [(kind, value)])


# --- text kinds ----------------------------------------------------------------------------------------------------

FILLER = [
    "Can you help me write a polite follow-up?", "Summarise the thread below in three bullet points.",
    "Translate this into plain English.", "What went wrong here?", "Please fix the bug and explain the change.",
    "Thanks in advance!", "Keep it under 100 words.", "The customer is upset about the delay.",
    "We need this before the quarterly review.", "Here is the context:", "Format the answer as a table.",
    "Is this config correct?", "Explain like I'm new to the codebase.", "Write unit tests for this.",
    "Bitte antworte auf Deutsch.", "Merci de répondre rapidement.", "Por favor, resume el siguiente texto.",
    "请帮我总结一下。", "以下の内容を要約してください。", "Grazie per l'aiuto.", "Obrigado!",
    "The release notes mention performance fixes.", "Revenue grew 12% year over year.",
]


def _neg_or_pii(rng: random.Random, p_pii: float) -> Seg:
    if rng.random() < p_pii:
        return pii_phrase(rng)
    return Seg(lookalike(rng))


def chat_text(rng: random.Random, n_pii: int) -> Seg:
    parts: list[Seg] = [Seg(rng.choice(FILLER))]
    pii = [pii_phrase(rng) for _ in range(n_pii)]
    negs = [Seg(lookalike(rng)) for _ in range(rng.randint(0, 3))]
    openers = ["Hi, I'm {first}. ", "Customer {first} {last} wrote in. ", "Note from {first}: ", "", "",
               "Draft a reply to {first} {last}. "]
    first, last = name(rng)
    items = pii + negs
    rng.shuffle(items)
    glue = [", ", ". Also ", "; ", " and ", ". ", "\n", " — ", " (see ", " - "]
    text = rng.choice(openers).format(first=first, last=last)
    labels: list[Label] = []
    for s in items:
        text += s.text + rng.choice(glue)
        labels += s.labels
    for s in parts:
        text += s.text
    return Seg(text, labels)


def code_text(rng: random.Random, n_pii: int) -> Seg:
    pii = [pii_value(rng) for _ in range(n_pii)]
    negs = [lookalike(rng) for _ in range(rng.randint(1, 4))]
    lines = [rng.choice(["import os\nimport requests\n", "const axios = require('axios');\n", "package main\n\n",
                         "# settings.yaml\n", "-- migration 0042\n"])]
    labels: list[Label] = []
    for kind, value in pii:
        var = {"email": "ADMIN_EMAIL", "phone": "SUPPORT_PHONE", "credit_card": "TEST_CARD", "us_ssn": "fixture_ssn",
               "iban": "PAYOUT_IBAN", "ip_address": "UPSTREAM_HOST", "api_key": "API_KEY"}[kind]
        lines.append(rng.choice([f'{var} = "{value}"\n', f"  {var.lower()}: {value}\n", f'const {var} = "{value}";\n',
                                 f"INSERT INTO users (field) VALUES ('{value}');\n",
                                 f'    "{var.lower()}": "{value}",\n',
                                 f"# contact {value} if this breaks\n", f'client = Client(key="{value}")\n']))
        labels.append((kind, value))
    for neg in negs:
        lines.append(rng.choice([f'VERSION = "{neg}"\n', f"# {neg}\n", f'  ref: "{neg}"\n', f"log.info('{neg}')\n",
                                 f"assert parse('{neg}') is not None\n"]))
    rng.shuffle(lines)
    lines.append(rng.choice(["\nWhy does this fail in CI?", "\nRefactor this.", "\nAdd type hints.", ""]))
    return Seg("".join(lines), labels)


def log_text(rng: random.Random, n_pii: int) -> Seg:
    lines: list[str] = []
    labels: list[Label] = []
    pii_lines = set(rng.sample(range(12), k=min(n_pii, 12)))
    for i in range(rng.randint(max(4, n_pii), 12)):
        ts = (f"2026-0{rng.randint(1, 9)}-{rng.randint(10, 28)}T{rng.randint(10, 23)}:{rng.randint(10, 59)}:"
              f"{rng.randint(10, 59)}Z")
        if i in pii_lines:
            kind, value = pii_value(rng)
            labels.append((kind, value))
            line = rng.choice([
                f"{value} - - [{ts}] \"GET /api/v1/orders HTTP/1.1\" 200 {rng.randint(100, 9999)}",
                f"{ts} INFO user={value} action=login ok",
                f"{ts} WARN payment failed for {value} (code {rng.randint(100, 599)})",
                f"{ts} DEBUG headers={{'x-user': '{value}'}}",
                f"{ts} ERROR could not deliver to {value}: timeout",
            ])
        else:
            neg = lookalike(rng)
            line = rng.choice([f"{_private_ip(rng)} - - [{ts}] \"POST /healthz HTTP/1.1\" 204 0",
                               f"{ts} INFO {neg}", f"{ts} DEBUG worker {rng.randint(1, 64)} ready {neg}",
                               f"{ts} INFO listening on {_private_ip(rng)}:{rng.randint(1024, 65535)}",
                               f"{ts} WARN retrying {neg} attempt {rng.randint(1, 5)}"])
        lines.append(line)
    return Seg("Here are the logs:\n" + "\n".join(lines) + "\nWhat is the root cause?", labels)


def json_text(rng: random.Random, n_pii: int) -> tuple[dict[str, Any], list[Label]]:
    obj: dict[str, Any] = {"id": rng.randint(1, 10**6), "status": rng.choice(["active", "pending", "closed"]),
                           "created_at": _date_time(rng)}
    labels: list[Label] = []
    for _ in range(n_pii):
        kind, value = pii_value(rng)
        key = rng.choice({"email": ["email", "contact", "user"], "phone": ["phone", "mobile", "tel", "contact"],
                          "credit_card": ["card_number", "pan", "payment"], "us_ssn": ["ssn", "tax_id"],
                          "iban": ["iban", "account"], "ip_address": ["ip", "client_ip", "last_seen_from"],
                          "api_key": ["token", "api_key", "credentials"]}[kind])
        while key in obj:
            key += "_2"
        obj[key] = value
        labels.append((kind, value))
    for i in range(rng.randint(1, 4)):
        obj[f"{rng.choice(['note', 'meta', 'value', 'data', 'comment', 'extra', 'field'])}_{i}"] = lookalike(rng)
    return obj, labels


def csv_text(rng: random.Random, n_pii: int) -> Seg:
    cols = ["id", "name", "order_id", "amount", "date"]
    pii_cols = rng.sample(["email", "phone", "iban", "card", "ip", "ssn"], k=min(n_pii, 2)) if n_pii else []
    kinds = {"email": "email", "phone": "phone", "iban": "iban", "card": "credit_card", "ip": "ip_address",
             "ssn": "us_ssn"}
    header = cols + pii_cols
    sep = rng.choice([",", ";", "\t", "|"])
    rows = [sep.join(header)]
    labels: list[Label] = []
    for i in range(rng.randint(2, 6) if n_pii else rng.randint(3, 8)):
        first, last = name(rng)
        row = [str(1000 + i), f"{first} {last}", rng.choice([_digits(rng, 10), f"{_digits(rng, 3)}-{_digits(rng, 7)}",
                                                            f"A{_digits(rng, 8)}"]),
               f"{rng.randint(1, 9999)}.{rng.randint(0, 99):02d}", _date_time(rng)]
        for c in pii_cols:
            _, value = pii_value(rng, kinds[c])
            if sep in value:
                value = value.replace(sep, " ")
            row.append(value)
            labels.append((kinds[c], value))
        rows.append(sep.join(row))
    return Seg(rng.choice(["Clean up this export:\n", "Which rows are duplicates?\n", ""]) + "\n".join(rows), labels)


def ticket_text(rng: random.Random, n_pii: int) -> Seg:
    first, last = name(rng)
    number = rng.randint(10000, 99999)
    topic = rng.choice(["Refund request", "Login issue", "Delivery delayed", "Wrong item"])
    lines = [f"Ticket #{number} — {topic}",
             f"Customer: {first} {last}", _order(rng), _tracking(rng) if rng.random() < 0.5 else _date_time(rng)]
    labels: list[Label] = []
    for _ in range(n_pii):
        s = pii_phrase(rng)
        lines.append(s.text)
        labels += s.labels
    for _ in range(rng.randint(0, 2)):
        lines.append(lookalike(rng))
    lines.append(rng.choice(["Please draft a response.", "Classify the priority.", "What should the agent do next?"]))
    body = lines[:2] + rng.sample(lines[2:-1], k=len(lines) - 3) + lines[-1:]
    return Seg("\n".join(body), labels)


MULTI = [
    ("Bitte kontaktieren Sie mich unter {}. Meine Bestellung ist noch nicht angekommen.", "de"),
    ("Je n'ai pas reçu ma commande, vous pouvez me joindre au {}.", "fr"),
    ("Hola, mis datos son: {}. Gracias.", "es"),
    ("您好，我的联系方式是{}，请尽快回复。", "zh"),  # noqa: RUF001
    ("お問い合わせ：{}までご連絡ください。", "ja"),  # noqa: RUF001
    ("Olá, meus dados: {} — obrigado.", "pt"),
    ("Ciao, i miei dati sono {}.", "it"),
    ("Здравствуйте, мои данные: {}.", "ru"),
    ("नमस्ते, मेरा विवरण {} है।", "hi"),
]
MULTI_NEG = ["Die Version {} behebt den Fehler.", "La commande {} a été expédiée.", "El pedido {} está en camino.",
             "版本 {} 已发布。", "注文 {} は発送済みです。", "O pedido {} foi enviado.", "Заказ {} отправлен."]


def multilingual_text(rng: random.Random, n_pii: int) -> Seg:
    labels: list[Label] = []
    out = []
    for _ in range(n_pii):
        s = pii_phrase(rng)
        out.append(rng.choice(MULTI)[0].format(s.text))
        labels += s.labels
    for _ in range(rng.randint(1, 3)):
        out.append(rng.choice(MULTI_NEG).format(lookalike(rng)))
    rng.shuffle(out)
    return Seg(rng.choice([" ", "\n", ""]).join(out), labels)


TEXT_KINDS: dict[str, Callable[[random.Random, int], Seg]] = {
    "chat": chat_text, "code": code_text, "logs": log_text, "csv": csv_text, "ticket": ticket_text,
    "multilingual": multilingual_text,
}

# --- request bodies ------------------------------------------------------------------------------------------------


def _wrap(rng: random.Random, text: str) -> dict[str, Any]:
    r = rng.random()
    if r < 0.6:
        msgs: list[dict[str, Any]] = [{"role": "user", "content": text}]
        if rng.random() < 0.5:
            msgs.insert(0, {"role": "system", "content": "You are a helpful support assistant."})
        return {"model": "deepseek-chat", "messages": msgs}
    if r < 0.75:
        return {"model": "deepseek-chat", "messages": [{"role": "user", "content": [
            {"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]}]}
    if r < 0.9:
        return {"model": "deepseek-chat", "prompt": [text] if rng.random() < 0.5 else text}
    return {"model": "text-embedding-3-small", "input": [text, "unrelated filler"] if rng.random() < 0.5 else text}


def _tool_record(rng: random.Random, n_pii: int) -> tuple[dict[str, Any], list[Label]]:
    args, labels = json_text(rng, n_pii)
    nested = {"query": rng.choice(FILLER), "filters": {"record": args, "limit": rng.randint(1, 50)}}
    tool_result = rng.choice([json.dumps({"found": True, "order": _order(rng)}), "ok", f"updated {lookalike(rng)}"])
    extra_label: list[Label] = []
    if n_pii and rng.random() < 0.3:
        s = pii_phrase(rng)
        tool_result = f"Customer record: {s.text}"
        extra_label = s.labels
    body = {"model": "deepseek-chat", "messages": [
        {"role": "user", "content": "Update the customer record."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "update_customer", "arguments": json.dumps(nested, ensure_ascii=rng.random() < 0.5)}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": tool_result},
        {"role": "user", "content": rng.choice(FILLER)},
    ]}
    return body, labels + extra_label


def record(rng: random.Random, i: int) -> Record:
    positive = rng.random() < 0.5
    n_pii = (1 if rng.random() < 0.7 else rng.randint(2, 3)) if positive else 0
    kind = rng.choice([*TEXT_KINDS, "json", "tool"])
    if kind == "tool":
        body, labels = _tool_record(rng, n_pii)
    elif kind == "json":
        obj, labels = json_text(rng, n_pii)
        text = rng.choice(["Validate this payload:\n", "What fields are missing?\n", ""]) + json.dumps(obj, indent=2,
                                                                                                       ensure_ascii=False)
        body = _wrap(rng, text)
    else:
        seg = TEXT_KINDS[kind](rng, n_pii)
        body, labels = _wrap(rng, seg.text), seg.labels
    return Record(f"r{i}", kind, body, labels)


# --- families only the held-out half has ---------------------------------------------------------------------------
# Written after the detector was tuned, and never tuned on: phrasings, formats and look-alikes the tune half lacks.

UNSEEN_CTX: dict[str, list[str]] = {
    "phone": ["You can ring me on {}", "Mobil: {}", "Rückruf unter {}", "numéro de portable : {}", "SMS an {}",
              "phone #: {}", "Cell/WhatsApp: {}", "📞 {}", "T: {}", "M: {}", "연락처 {}", "Tel./Fax {}",
              "reach our office at {}", "{} (cell)", "best number: {}", "Kontakt: {}"],
    "email": ["{first} {last} <{}>", "From: {}", "email={}", "Sent by {} via the portal", "[{}]", "author: {}"],
    "credit_card": ["{} exp 09/28 cvv 123", "card no. {}", "Amex {}", "paid by card {} yesterday",
                    "Zahlung mit Karte {}", "la tarjeta {} fue rechazada"],
    "us_ssn": ["Social Security Number (SSN): {}", "SSN#{}", "ssn={}", "his social security no. is {}"],
    "iban": ["Kontonummer (IBAN): {}", "IBAN:{}", "beneficiary account {}", "virement sur {}"],
    "ip_address": ["X-Real-IP: {}", "{}:8443", "ip={},", "Failed password for invalid user admin from {} port 22",
                   "blocked {} after 5 attempts", "geo lookup for {}"],
    "api_key": ["Authorization: token {}", "{}", "key={}", "set the token to {} and restart", "curl -H 'X-Key: {}'"],
}


def _unseen_value(rng: random.Random, kind: str) -> tuple[str, str]:
    """A value of ``kind`` in a format the tune half does not use (or, half the time, a usual one)."""
    if rng.random() < 0.5:
        return kind, PII_MAKERS[kind][0](rng)
    if kind == "phone":
        num = phone_number(rng, rng.choice(PHONE_REGIONS))
        nsn = pn.national_significant_number(num)
        return kind, rng.choice([f"(+{num.country_code}) {nsn}", f"+{num.country_code}-{nsn[:3]}-{nsn[3:]}",
                                 pn.format_number(num, pn.PhoneNumberFormat.INTERNATIONAL) + " x204"])
    if kind == "email":
        return kind, rng.choice([email(rng).replace("@", "@mail."), email(rng).title(), f"{_ascii(rng.choice(LAST))}"
                                 f".{rng.randint(1, 999)}@{rng.choice(COMPANY)}"])
    if kind == "api_key":
        return kind, rng.choice([
            "AccountKey=" + _alnum(rng, 86, B62 + "+/") + "==",
            "AWS_SECRET_ACCESS_KEY=" + _alnum(rng, 40, B62 + "+/"),
            "ASIA" + _alnum(rng, 16, string.ascii_uppercase + "234567"),
            "sk-svcacct-" + _alnum(rng, 64, B62 + "_-"),
            "--password=" + _alnum(rng, 24, B62 + "!#%"),
        ])
    return kind, PII_MAKERS[kind][0](rng)


def _unseen_lookalike(rng: random.Random) -> str:
    hexd = "0123456789abcdef"
    return rng.choice([
        f"cus_{_alnum(rng, 14)}", f"pi_3{_alnum(rng, 23)}", f"arn:aws:iam::{_digits(rng, 12)}:role/deploy",
        f"AWS account {_digits(rng, 12)}", "Call 911", f"{rng.randint(1, 9)} {_digits(rng, 3)} {_digits(rng, 3)} €",
        f"IMEI: {_luhn_complete(rng, '35', 15)}",
        f"serial number SN-{_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 4)}",
        "ISBN 978-0-306-40615-7", f"1.{rng.randint(0, 9)}.{rng.randint(0, 9)}+{rng.randint(2019, 2026)}0101",
        f"1.3.6.1.2.1.2.2.1.10.{rng.randint(1, 48)}", f"registry.example.com:5000/app:1.{rng.randint(0, 30)}.0",
        f"sha1:{_alnum(rng, 40, hexd)}", f"channel C0{_alnum(rng, 8, string.ascii_uppercase + string.digits)}",
        f"{rng.randint(6, 10):02d}:00-{rng.randint(16, 20)}:30", "1-800-FLOWERS", "SWIFT DEUTDEFF500",
        f"VIN 1HGCM8{_digits(rng, 4)}A{_digits(rng, 6)}", f"color #{_alnum(rng, 6, hexd)}",
        f"data:image/png;base64,iVBORw0KGgo{_alnum(rng, 60, B62 + '+/')}", f"UA-{_digits(rng, 8)}-1",
        f"PMID {_digits(rng, 8)}", f"arXiv:{rng.randint(2001, 2412)}.{_digits(rng, 5)}",
        f"DOI 10.{_digits(rng, 4)}/s{_digits(rng, 5)}-0{_digits(rng, 2)}-{_digits(rng, 4)}-{rng.randint(0, 9)}",
        f"{rng.uniform(0, 10):.14f}", f"Patent US {rng.randint(7, 11)},{_digits(rng, 3)},{_digits(rng, 3)} B2",
        f"build {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(100, 999)}.{rng.randint(1, 99)}",
        f"GTIN {_luhn_complete(rng, '0', 14)}", "Bearer {access_token}", "postgres://localhost:5432/app",
    ])


def unseen_record(rng: random.Random, i: int) -> Record:
    """A chat, log or ticket text built only from the held-out families."""
    first, last = name(rng)
    parts: list[str] = []
    labels: list[Label] = []
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 2)):
            kind = rng.choices(list(PII_WEIGHTS), weights=list(PII_WEIGHTS.values()))[0]
            kind, value = _unseen_value(rng, kind)
            parts.append(rng.choice(UNSEEN_CTX[kind]).format(value, first=first, last=last))
            labels.append((kind, value))
    parts += [_unseen_lookalike(rng) for _ in range(rng.randint(1, 4))]
    rng.shuffle(parts)
    shape = rng.choice(["chat", "logs", "ticket"])
    if shape == "logs":
        text = "\n".join(f"2026-02-{rng.randint(10, 28)}T0{rng.randint(0, 9)}:1{rng.randint(0, 9)}:00Z INFO {p}"
                         for p in parts)
    elif shape == "ticket":
        text = f"Case from {first} {last}\n" + "\n".join(parts) + "\nPlease summarise."
    else:
        text = rng.choice(["Hey, ", "Quick question: ", ""]) + "; ".join(parts) + ". " + rng.choice(FILLER)
    return Record(f"u{i}", f"unseen-{shape}", _wrap(rng, text), labels)


def generate(seed: int, n: int, unseen: float = 0.0) -> list[Record]:
    """``n`` records from ``seed``; the same seed gives the same corpus. A share ``unseen`` of them is built from
    the held-out-only families."""
    rng = random.Random(seed)
    return [unseen_record(rng, i) if unseen and rng.random() < unseen else record(rng, i) for i in range(n)]


if __name__ == "__main__":
    import sys
    for r in generate(int(sys.argv[1]) if len(sys.argv) > 1 else TUNE_SEED,
                      int(sys.argv[2]) if len(sys.argv) > 2 else 5):
        print(json.dumps({"id": r.id, "kind": r.kind, "labels": r.labels, "body": r.body}, ensure_ascii=False))
