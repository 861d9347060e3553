"""``kind: dns``: ask a server (or the system resolver) and check the answer."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from config.checks import CheckBase, Node
from config.common import ADDRESS, Model, split_address
from config.dns_records import RecordType
from config.fields import PositiveDuration, TextPattern, upper
from config.registry import KINDS

DNS_PORT = 53


def split_server(address: str) -> tuple[str, int]:
    """A DNS server as ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address;
    the port is 53 unless given."""
    text = address.strip()
    if ADDRESS.match(text):
        return split_address(text)
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare)), DNS_PORT
    except ValueError:
        pass
    if not bare or any(c in bare for c in ":[]/") or any(c.isspace() for c in bare):
        raise ValueError(
            "address must be a host, host:port, [IPv6]:port or an IPv6 address (port 53 if omitted)"
        )
    return bare, DNS_PORT


def _check_server(address: str) -> str:
    split_server(address)
    return address


class DnsNode(Node):
    address: Annotated[str, AfterValidator(_check_server)] | None = None
    """The server to ask; without one, the system resolver (the servers in resolv.conf)."""

    @property
    def server(self) -> tuple[str, int] | None:
        return split_server(self.address) if self.address is not None else None


SYSTEM_RESOLVER = DnsNode(name="system")
"""The node of a dns check that names no servers."""

Rcode = Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class DnsQuery(Model):
    name: str = Field(min_length=1)
    """Asked as written (absolute: no search domains). An IP address with type PTR is
    turned into its reverse name (127.0.0.1 -> 1.0.0.127.in-addr.arpa)."""
    type: Annotated[RecordType, BeforeValidator(upper)] = "A"
    recursion: bool = True
    """Sets the RD flag; turn it off to ask an authoritative server about its own zone."""

    @model_validator(mode="after")
    def _valid_name(self) -> DnsQuery:
        try:
            literal = ipaddress.ip_address(self.name)
        except ValueError:
            literal = None
        if literal is not None and self.type != "PTR":
            raise ValueError(f"name {self.name} is an address; a reverse lookup needs type: PTR")
        if literal is None:
            import dns.exception
            import dns.name

            try:
                dns.name.from_text(self.name)
            except dns.exception.DNSException as exc:
                raise ValueError(f"name {self.name!r} is not a valid domain name: {exc}") from None
        return self


# A tab written as itself or as the escape \t (an odd number of backslashes before t).
_TAB = re.compile(r"\t|(?<!\\)(?:\\\\)*\\t")


def _no_tab(pattern: re.Pattern[str]) -> re.Pattern[str]:
    # Records are matched in dnspython's text form, fields separated by one space, and a
    # tab inside TXT data written as \009: a tab never occurs. Patterns copied from
    # blackbox_exporter (whose records are tab-separated) would never match, and a `none:`
    # rule holding one would pass for ever.
    if _TAB.search(pattern.pattern):
        shown = pattern.pattern.replace("\t", "\\t")
        raise ValueError(
            f"/{shown}/ looks for a tab, which a record never holds: its fields are "
            "separated by one space (blackbox_exporter's by tabs); write a space or \\s"
        )
    return pattern


RecordPattern = Annotated[TextPattern, AfterValidator(_no_tab)]
RecordPatterns = Annotated[list[RecordPattern], BeforeValidator(_as_list)]


class SectionRules(Model):
    """Regular expressions over the records of one section of the answer, each record
    in its zone-file line (``app.example.invalid. 300 IN A 127.0.0.1``). Every pattern
    is a rule of its own; a list asks for all of them."""

    some: RecordPatterns = Field(default_factory=list)
    """At least one record matches each pattern (an empty section fails)."""
    every: RecordPatterns = Field(default_factory=list)
    """Every record matches each pattern (an empty section fails)."""
    none: RecordPatterns = Field(default_factory=list)
    """No record matches any pattern (an empty section passes)."""
    not_every: RecordPatterns = Field(default_factory=list)
    """At least one record does not match each pattern (an empty section fails)."""


def _rules_by_name(value: Any) -> Any:
    # A bare list is the likely slip; pydantic alone would answer with a class name.
    if isinstance(value, str | list):
        raise ValueError(
            "write the patterns under a rule: some, every, none or not_every, "
            "e.g. {some: [' IN SOA ']}"
        )
    return value


Section = Annotated[SectionRules | None, BeforeValidator(_rules_by_name)]


class DnsExpect(Model):
    rcode: Annotated[Rcode, BeforeValidator(upper)] = "NOERROR"
    values: list[str] | None = None
    """The answer must hold exactly these records of the query's type, in any order."""
    contains: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list)
    """Records of the query's type that must be among the answers (others may be too)."""
    max_latency: PositiveDuration | None = None
    # Judged with any rcode, unlike values and contains: an error answer has no records
    # of the type, but NXDOMAIN carries the zone's SOA in authority, and the CNAME that
    # led to the missing name in answer.
    answer: Section = None
    authority: Section = None
    additional: Section = None


@KINDS.register(probe="probes.dns")
class DnsCheck(CheckBase):
    kind: Literal["dns"]
    query: DnsQuery
    transport: Literal["udp", "tcp"] = "udp"
    """udp retries over TCP when the answer comes back truncated, as resolvers do."""
    expect: DnsExpect = DnsExpect()
    nodes: list[DnsNode] = Field(default_factory=lambda: [SYSTEM_RESOLVER], min_length=1)

    @model_validator(mode="after")
    def _values_of_the_type(self) -> DnsCheck:
        from config.dns_records import expected

        wanted = self.expect
        if wanted.rcode != "NOERROR" and (wanted.values is not None or wanted.contains):
            raise ValueError(
                f"expect.values and expect.contains need rcode NOERROR, not {wanted.rcode}: "
                "an error answer has no records"
            )
        for field, values in (("values", wanted.values or []), ("contains", wanted.contains)):
            for index, value in enumerate(values):
                try:
                    expected(self.query.type, value)
                except ValueError as exc:
                    raise ValueError(f"expect.{field}[{index}]: {exc}") from None
        return self
