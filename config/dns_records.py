"""What a DNS record value means, for ``kind: dns``: one text form per record.

The config's ``expect.values`` and the server's answers are compared in this form, so
that ``0:0::1`` matches ``::1`` and ``Mail.Example.invalid.`` matches
``mail.example.invalid``. The config validates expected values with it at load time,
and the probe reads answers with it. dnspython is imported here only when a dns check
exists: it costs a config without one about 30 ms of start-up.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from dns.rdata import Rdata

RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "PTR", "SOA"]

_FORM = {
    "A": "an IPv4 address",
    "AAAA": "an IPv6 address",
    "CNAME": "a host name",
    "NS": "a host name",
    "PTR": "a host name",
    "MX": "'preference host', e.g. '10 mail.example.invalid'",
    "SRV": "'priority weight port target', e.g. '1 10 5060 sip.example.invalid'",
    "SOA": "'mname rname serial refresh retry expire minimum'",
    "TXT": "text",
}


def shown(rdata: Rdata) -> str:
    """A record's value as a person writes it: names without the final dot; TXT as the
    text itself (its character strings joined, as SPF and DKIM readers do)."""
    import dns.name
    import dns.rdatatype

    if rdata.rdtype == dns.rdatatype.TXT:
        strings: tuple[bytes, ...] = rdata.strings  # type: ignore[attr-defined]
        return b"".join(strings).decode("utf-8", errors="backslashreplace")
    return rdata.to_text(origin=dns.name.root, relativize=True)


def key(rdtype: str, text: str) -> str:
    """The form two values of ``rdtype`` are compared in (names are case-insensitive)."""
    return text if rdtype == "TXT" else text.lower()


@functools.lru_cache(maxsize=4096)  # checked at load, asked again on every attempt
def expected(rdtype: RecordType, text: str) -> str:
    """A value written in the config, in the form ``shown`` gives; ValueError if it is
    not a valid value of that type."""
    if rdtype == "TXT":
        return text
    import dns.exception
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    try:
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text, origin=dns.name.root
        )
    except (dns.exception.DNSException, ValueError) as exc:
        reason = str(exc).rstrip(".") or type(exc).__name__
        raise ValueError(
            f"{text!r} is not a valid {rdtype} value ({reason}); write {_FORM[rdtype]}"
        ) from None
    return shown(rdata)
