"""The network PII types: e-mail addresses and public IP addresses.

E-mail: found from each ``@`` outwards (so prose without one costs a single ``str.find``), with a real domain
(labels, an alphabetic TLD that is not a file extension: ``icon@2x.png``), and without the look-alikes that carry no
person: git remotes (``git@github.com:org/repo``), package pins (``lodash@4.17.21``, ``@babel/core``), decorators,
handles and role mailboxes (``noreply@``, ``postmaster@``). IP: only addresses that can point at someone, which
``ipaddress`` decides (private, loopback, link-local, CGNAT, multicast, reserved and documentation ranges, netmasks
such as 255.255.255.0 and wildcards such as 0.0.0.255 are not global), written alone (not part of a longer dotted
run such as an OID or ``10.0.19045.3693``, not a CIDR block), and not where context says "version", "build" or
"OID"; a dotted quad of small numbers (``2.5.4.3``, ``4.8.1.0``) needs context saying it is an address. IPv6 must be
global unicast (2000::/3). Pure; spans only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

from llmroute.core.pii_context import Context

Hit = tuple[str, int, int, float]

# --- e-mail --------------------------------------------------------------------------------------------------------

_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![A-Za-z0-9_-])")
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
"""What local parts are made of in practice (RFC 5322 allows more, which prose and code use as delimiters)."""
_LOCAL_MAX = 64
_NOT_TLDS = frozenset(
    {
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "webp",
        "ico",
        "css",
        "js",
        "mjs",
        "ts",
        "tsx",
        "jsx",
        "py",
        "go",
        "rs",
        "md",
        "json",
        "yaml",
        "yml",
        "toml",
        "lock",
        "txt",
        "html",
        "htm",
        "xml",
        "map",
        "wasm",
        "git",
        "sh",
        "exe",
        "dll",
        "so",
        "zip",
        "gz",
        "tar",
        "pdf",
        "local",
        "localhost",
        "internal",
        "invalid",
        "lan",
        "home",
        "corp",
    }
)
"""File extensions and non-public suffixes: what follows ``@`` in asset names and host-only addresses."""
_ROLE = frozenset(
    {
        "noreply",
        "no-reply",
        "donotreply",
        "do-not-reply",
        "do_not_reply",
        "mailer-daemon",
        "postmaster",
        "bounce",
        "bounces",
        "git",
        "hostmaster",
        "abuse",
        "root",
        "nobody",
    }
)
"""Local parts that name a system mailbox, not a person."""


def emails(text: str, ctx: Context | None = None) -> list[Hit]:
    """Every e-mail address in ``text`` (``ctx`` unused: no context decides one): ``_pii_clusters.emails`` where it is
    built, else ``emails_py`` (the same hits: tests compare the two)."""
    if _compiled_emails is not None:
        return _compiled_emails(text, _NOT_TLDS, _ROLE)
    return list(emails_py(text))


def emails_py(text: str) -> Iterator[Hit]:
    """The e-mail addresses in ``text``, from each ``@`` outwards (``_email_at``)."""
    at = text.find("@")
    while at != -1:
        hit = _email_at(text, at)
        if hit is not None:
            yield hit
        at = text.find("@", hit[2] if hit is not None else at + 1)


def _email_at(text: str, at: int) -> Hit | None:
    start = at
    while start > 0 and at - start < _LOCAL_MAX and text[start - 1] in _LOCAL_CHARS:
        start -= 1
    while start < at and text[start] in ".-+%":
        start += 1
    local = text[start:at]
    m = _DOMAIN.match(text, at + 1)
    if not local or m is None or local.endswith(".") or ".." in local:
        return None
    if m.group(1).lower() in _NOT_TLDS or local.lower() in _ROLE:
        return None
    end = m.end()
    if end < len(text) and text[end] == ":" and end + 1 < len(text) and not text[end + 1].isspace():
        return None  # user@host:path - a git or scp remote
    if start > 2 and text[start - 3 : start] == "://":
        return None  # scheme://user@host - a user in a URL, not a mailbox
    return ("email", start, end, 0.95)


_compiled_emails: Callable[[str, frozenset[str], frozenset[str]], list[Hit]] | None
try:
    from llmroute.core._pii_clusters import emails as _compiled_emails
except ImportError:  # not built
    _compiled_emails = None


# --- IP addresses --------------------------------------------------------------------------------------------------

_IPV4 = re.compile(
    r"[0-9](?<![0-9A-Za-z_.\-][0-9])[0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9A-Za-z_\-]|\.[0-9])"
)
_NOT_PUBLIC_V4 = tuple(
    (int(net.network_address), int(net.netmask))
    for net in map(
        ipaddress.IPv4Network,
        (
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "224.0.0.0/4",
            "240.0.0.0/4",
        ),
    )
)
"""IANA special-purpose, private, shared (CGNAT), loopback, link-local, documentation, benchmarking, multicast and
reserved ranges (netmasks like 255.255.255.0 fall in 240/4, wildcards like 0.0.0.255 in 0/8): nobody's address."""


_NOT_PUBLIC_FIRST = frozenset(a for net, mask in _NOT_PUBLIC_V4 for a in range(256) if a & mask >> 24 == net >> 24)
"""First octets of the ranges above: an address starting with any other is public without testing each range."""


_NOT_PUBLIC_BY_FIRST = {
    a: tuple((net, mask) for net, mask in _NOT_PUBLIC_V4 if a & mask >> 24 == net >> 24) for a in _NOT_PUBLIC_FIRST
}
"""The ranges above that an address with each of those first octets may fall in (no other can hold it)."""


def public_v4(a: int, b: int, c: int, d: int) -> bool:
    ranges = _NOT_PUBLIC_BY_FIRST.get(a)
    if ranges is None:
        return True
    value = a << 24 | b << 16 | c << 8 | d
    return all(value & mask != net for net, mask in ranges)


_PINS = frozenset({"==", ">=", "<=", "~=", "!=", "^=", "@v"})
"""Right before a dotted quad, these make it a version pin (``pkg==4.21.0.135``)."""
_CIDR = re.compile(r"/[0-9]{1,2}(?![0-9])")
_LEADING_ZERO = re.compile(r"(?<![0-9])0[0-9]")
"""An octet written with a leading zero (``010``): octal to some parsers, no address we report."""
_IPV6 = re.compile(r"[23](?<![0-9A-Za-z_:.][23])[0-9A-Fa-f]{3}:[0-9A-Fa-f:]{2,35}(?![0-9A-Za-z_:%]|\.[0-9])")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_MAYBE_PUBLIC_V4 = re.compile(
    r"(?<![0-9A-Za-z_.\-])(?!(?:0|10|127|22[4-9]|2[3-5][0-9]|192\.168|172\.(?:1[6-9]|2[0-9]|3[01])|169\.254)\.)"
    rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?![0-9A-Za-z_\-]|\.[0-9])"
)
"""What every ``_IPV4`` match that ``ipv4_candidates`` may report also matches, at the same start and end: octets of at
most 255 without a leading zero (``_LEADING_ZERO``), not in a /8 that holds no public address (0, 10, 127, 224 and
up) nor in 172.16/12, 192.168/16 or 169.254/16. Each of its matches is an ``_IPV4`` match (the same boundaries, and
octets of one to three digits), and a match of either is a whole dotted run, so neither overlaps another: its matches
in a window are the ``_IPV4`` matches there less ones no test below would let through (private addresses in logs,
versions such as ``6.5.745.72``), and ``ipv4_candidates`` tests only those. Its four groups are the octets."""


def ipv4_candidates(text: str, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """The IPv4 addresses in ``text[lo:hi]`` that may be public, before their context is read: (start, end, 1 if both
    first octets are below 10, else 0). Not in a range that holds no public address, not a version pin
    (``pkg==4.21.0.135``), not a CIDR block below /32.

    The matches are walked with ``search`` from the end of the last one, as ``finditer`` walks them (none is empty),
    without setting up an iterator for what is mostly one match; the octets are read from the groups, the last three
    only where the first does not settle it."""
    found: list[tuple[int, int, int]] = []
    search = _MAYBE_PUBLIC_V4.search
    m = search(text, lo, hi)
    while m is not None:
        start, end = m.span()
        a = int(m.group(1))
        if (
            (a not in _NOT_PUBLIC_BY_FIRST or public_v4(a, int(m.group(2)), int(m.group(3)), int(m.group(4))))
            and text[start - 2 if start > 2 else 0 : start] not in _PINS
            and not (end < len(text) and text[end] == "/" and _cidr_below_32(text, end))
        ):
            found.append((start, end, int(a < 10 and int(m.group(2)) < 10)))
        m = search(text, end, hi)
    return found


def _cidr_below_32(text: str, end: int) -> bool:
    """A prefix length below 32 follows the address at ``end`` (a CIDR block, not an address)."""
    cidr = _CIDR.match(text, end)
    return cidr is not None and int(cidr.group()[1:]) < 32


def ipv6_at(text: str, start: int, end: int) -> Iterator[Hit]:
    """The global unicast IPv6 address at ``start`` (within ``end`` plus what the address pattern takes), if any."""
    m = _IPV6.match(text, start)
    if m is None:
        return
    candidate = m.group().rstrip(":")
    if candidate.count(":") < 2:
        return
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return
    if address in _GLOBAL_UNICAST and address.is_global:
        yield ("ip_address", start, start + len(candidate), 0.9)
