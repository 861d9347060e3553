"""``kind: dns``: one query to one server (or to the system resolver), judged against
``expect:``.

A node with an ``address`` is asked directly, once, so that what it answers (garbage,
a reply to another query, an error code) is reported as it is. The node without one is
"the system resolver": dnspython's resolver over the servers of resolv.conf, which tries
them in turn as the host's own lookups would.

Phases follow blackbox_exporter's dns prober: ``resolve`` is the lookup of the server's
own name (when it is given as a name), ``request`` is the query until its answer.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from typing import Any

import dns.asyncbackend
import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.rrset

from config.dns_records import expected, key, shown
from config.kinds.dns import DnsCheck, DnsExpect, DnsNode, DnsQuery, SectionRules
from core.errors import ErrorType, ProbeFailure
from probes.base import Observation, ProbeContext, attempt_marks
from probes.net import os_failure, printable, resolve

# The EDNS buffer size DNS Flag Day 2020 settled on: large enough for most answers,
# small enough not to be fragmented. A larger answer comes back truncated and is asked
# again over TCP.
_EDNS_PAYLOAD = 1232
# A CNAME chain longer than this is a loop or a misconfiguration, not an answer.
_MAX_CHAIN = 16


async def probe(check: DnsCheck, node: DnsNode, ctx: ProbeContext) -> Observation:
    qname = query_name(check.query)
    rdtype = dns.rdatatype.from_text(check.query.type)
    details: dict[str, Any] = {}
    if node.server is None:
        response = await _ask_system(check, qname, rdtype, ctx, details)
    else:
        response = await _ask_server(check, qname, rdtype, node.server, ctx, details)
    _judge(check, qname, rdtype, response, details)
    return Observation(details=details)


def query_name(query: DnsQuery) -> dns.name.Name:
    """The name asked about, absolute (no search list: a monitor asks for what it says)."""
    return _name(query.name)


@functools.lru_cache(maxsize=4096)  # the same few names on every attempt; Name is immutable
def _name(text: str) -> dns.name.Name:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return dns.name.from_text(text)
    return dns.reversename.from_address(text)  # PTR for an address (checked at load)


async def _ask_server(
    check: DnsCheck,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    server: tuple[str, int],
    ctx: ProbeContext,
    details: dict[str, Any],
) -> dns.message.Message:
    host, port = server
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    addresses = await _server_addresses(host, port, ctx)
    query = dns.message.make_query(qname, rdtype, use_edns=0, payload=_EDNS_PAYLOAD)
    if not check.query.recursion:
        query.flags &= ~dns.flags.RD
    details["server"] = where
    marks = attempt_marks()
    marks["request_start"] = ctx.clock.monotonic()
    for index, address in enumerate(addresses):
        try:
            if check.transport == "tcp":
                response, tcp = await dns.asyncquery.tcp(query, address, port=port), True
            else:
                response, tcp = await _udp_with_fallback(query, address, port)
            break
        except Exception as exc:  # every way a peer can fail the query; bugs are re-raised
            # Refused or unreachable at once (an IPv6 address without a route, say): the
            # server's next address may answer, as a browser tries a name's next address.
            if isinstance(exc, OSError) and index + 1 < len(addresses):
                continue
            raise failure(exc, where) from None
    marks["request_end"] = ctx.clock.monotonic()
    details["transport"] = "tcp" if tcp else "udp"
    if tcp and check.transport == "udp":
        details["truncated"] = True  # the UDP answer did not fit: asked again over TCP
    return response


async def _udp_with_fallback(
    query: dns.message.Message, address: str, port: int
) -> tuple[dns.message.Message, bool]:
    # A connected socket: the kernel reports "port unreachable" to it, so a server whose
    # daemon is down fails at once as refused instead of running into the timeout.
    backend = dns.asyncbackend.get_default_backend()
    family = dns.inet.af_for_address(address)
    connected = await backend.make_socket(  # type: ignore[no-untyped-call]
        family, socket.SOCK_DGRAM, 0, None, (address, port)
    )
    async with connected as udp:
        return await dns.asyncquery.udp_with_fallback(query, address, port=port, udp_sock=udp)


async def _server_addresses(host: str, port: int, ctx: ProbeContext) -> list[str]:
    found = await resolve(host, port, ctx, type=socket.SOCK_DGRAM, what=f"the server's name {host}")
    return [address for _, address in found]


async def _ask_system(
    check: DnsCheck,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    ctx: ProbeContext,
    details: dict[str, Any],
) -> dns.message.Message:
    # Read anew on every attempt, as the C library does when the file changes: a
    # resolver switched by DHCP or by an operator is what the next check must see. Off
    # the event loop: a read can block (a file on a stalled network mount).
    try:
        resolver = await asyncio.to_thread(dns.asyncresolver.Resolver, filename=ctx.resolv_conf)
    except dns.resolver.NoResolverConfiguration as exc:
        raise ProbeFailure(
            ErrorType.DNS, f"no usable nameserver in {ctx.resolv_conf}: {exc}"
        ) from None
    resolver.use_edns(0, 0, _EDNS_PAYLOAD)
    if not check.query.recursion:
        resolver.flags = dns.flags.Flag(0)
    servers = ", ".join(str(server) for server in resolver.nameservers)
    details["server"] = f"system ({servers})"
    marks = attempt_marks()
    marks["request_start"] = ctx.clock.monotonic()
    try:
        answer = await resolver.resolve(
            qname,
            rdtype,
            tcp=check.transport == "tcp",
            raise_on_no_answer=False,
            lifetime=check.timeout,
            search=False,
        )
        response: dns.message.Message = answer.response
    except dns.resolver.NXDOMAIN as exc:
        response = exc.response(qname)  # type: ignore[no-untyped-call]
    except dns.resolver.NoNameservers as exc:
        response = _last_answer(exc, servers)
    except dns.resolver.YXDOMAIN:
        raise ProbeFailure(ErrorType.DNS, f"YXDOMAIN for {_asked(qname, rdtype)}") from None
    except dns.exception.Timeout:
        raise ProbeFailure(
            ErrorType.TIMEOUT,
            f"no answer from the system resolver ({servers}) within {check.timeout:g}s",
        ) from None
    marks["request_end"] = ctx.clock.monotonic()
    return response


def _last_answer(exc: dns.resolver.NoNameservers, servers: str) -> dns.message.Message:
    """Every server failed: the last failure speaks for them (one server is the usual case)."""
    errors = exc.kwargs.get("errors") or []
    if not errors:
        raise ProbeFailure(ErrorType.DNS, f"no nameserver answered ({servers})")
    server, _, port, error, response = errors[-1]
    if isinstance(response, dns.message.Message):
        return response  # an error rcode: judged like any answer
    if isinstance(error, Exception):
        raise failure(error, f"{server}:{port}")
    raise ProbeFailure(ErrorType.DNS, f"{server}:{port} failed the query: {error}")


def failure(exc: Exception, where: str) -> ProbeFailure:
    """What a failed exchange with ``where`` means. Unknown exceptions are re-raised."""
    match exc:
        case dns.query.BadResponse():
            return ProbeFailure(
                ErrorType.PROTOCOL,
                f"{where} sent a reply to another query (its id or question do not match)",
            )
        case dns.query.UnexpectedSource():
            return ProbeFailure(
                ErrorType.PROTOCOL, f"a reply to the query to {where} came from elsewhere"
            )
        case dns.message.Truncated():
            return ProbeFailure(ErrorType.PROTOCOL, f"{where} sent a truncated answer over TCP")
        case dns.exception.Timeout():
            return ProbeFailure(ErrorType.TIMEOUT, f"no answer from {where}")
        case dns.exception.DNSException():
            reason = str(exc).rstrip(".") or type(exc).__name__
            return ProbeFailure(
                ErrorType.PROTOCOL, f"{where} sent a malformed DNS message: {reason}"
            )
        case EOFError():
            return ProbeFailure(
                ErrorType.CONNECTION_RESET,
                f"{where} closed the TCP connection before the whole answer",
            )
        case OSError():
            return os_failure(exc, where)
    raise exc


def _asked(qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> str:
    return f"{qname.to_text(omit_final_dot=True)} {dns.rdatatype.to_text(rdtype)}"


def _records(
    response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> tuple[dns.rrset.RRset | None, list[str]]:
    """The answer's records of the asked type, following CNAMEs from the asked name;
    and the names the chain went through."""
    name, chain = qname, list[str]()
    for _ in range(_MAX_CHAIN):
        rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype)
        if rrset is not None:
            return rrset, chain
        cname = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if cname is None:
            break
        name = next(iter(cname)).target
        chain.append(name.to_text(omit_final_dot=True))
    return None, chain


def _judge(
    check: DnsCheck,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    response: dns.message.Message,
    details: dict[str, Any],
) -> None:
    def fail(kind: ErrorType, message: str) -> ProbeFailure:
        return ProbeFailure(kind, message, details=details)

    expect, asked, type_text = check.expect, _asked(qname, rdtype), check.query.type
    rcode = dns.rcode.to_text(response.rcode())
    records, chain = _records(response, qname, rdtype)
    details |= {"rcode": rcode, "answers": [shown(r) for r in records or ()]}
    if chain:
        details["cname"] = chain
    if records:
        details["ttl"] = records.ttl
    if rcode != expect.rcode:
        raise fail(ErrorType.DNS, f"{rcode} for {asked}, expected {expect.rcode}")
    if expect.rcode != "NOERROR":
        _judge_sections(expect, response, details)
        return
    if not records and expect.values != []:
        via = f" (CNAME to {chain[-1]})" if chain else ""
        raise fail(ErrorType.ASSERTION, f"empty answer: no {type_text} records for {asked}{via}")
    marks = attempt_marks()
    elapsed = marks["request_end"] - marks["request_start"]
    if expect.max_latency is not None and elapsed > expect.max_latency:
        raise fail(
            ErrorType.LATENCY,
            f"answered in {elapsed * 1000:.0f} ms, limit {expect.max_latency * 1000:.0f} ms",
        )
    got = {key(type_text, text): text for text in details["answers"]}
    if expect.values is not None:
        wanted = {key(type_text, text): text for text in _expected(check, expect.values)}
        missing = [text for k, text in wanted.items() if k not in got]
        extra = [text for k, text in got.items() if k not in wanted]
        if missing or extra:
            parts = [f"missing {', '.join(missing)}"] if missing else []
            parts += [f"unexpected {', '.join(extra)}"] if extra else []
            raise fail(ErrorType.ASSERTION, f"{asked} answers differ: {'; '.join(parts)}")
    for text in _expected(check, expect.contains):
        if key(type_text, text) not in got:
            raise fail(ErrorType.ASSERTION, f"{asked} answers do not include {text}")
    _judge_sections(expect, response, details)


def _expected(check: DnsCheck, values: list[str]) -> list[str]:
    return [expected(check.query.type, value) for value in values]


def _judge_sections(
    expect: DnsExpect, response: dns.message.Message, details: dict[str, Any]
) -> None:
    """``expect.answer``, ``authority`` and ``additional``: each section's records, one
    zone-file line each, against its patterns."""
    for name, rules, section in (
        ("answer", expect.answer, response.answer),
        ("authority", expect.authority, response.authority),
        ("additional", expect.additional, response.additional),
    ):
        if rules is None:
            continue
        # dnspython keeps the EDNS OPT pseudo-record out of the additional section: only
        # real records are judged.
        records = [line for rrset in section for line in rrset.to_text().splitlines()]
        problem = _broken_rule(rules, records)
        if problem is not None:
            raise ProbeFailure(ErrorType.ASSERTION, f"{name} section, {problem}", details=details)


def _broken_rule(rules: SectionRules, records: list[str]) -> str | None:
    """The first rule the records break, with the pattern and the record that shows it."""

    def rule(name: str, pattern: re.Pattern[str]) -> str:
        return f"{name} /{pattern.pattern}/: "

    for pattern in rules.some:
        if not any(pattern.search(record) for record in records):
            return rule("some", pattern) + _none_or_all("no record matches", records)
    for pattern in rules.every:
        if not records:
            return rule("every", pattern) + "the section is empty"
        misfit = next((record for record in records if not pattern.search(record)), None)
        if misfit is not None:
            return rule("every", pattern) + f"not matched by {_short(misfit)}"
    for pattern in rules.none:
        hit = next((record for record in records if pattern.search(record)), None)
        if hit is not None:
            return rule("none", pattern) + f"matched by {_short(hit)}"
    for pattern in rules.not_every:
        if all(pattern.search(record) for record in records):
            return rule("not_every", pattern) + _none_or_all("every record matches", records)
    return None


def _none_or_all(what: str, records: list[str]) -> str:
    """A rule broken by the section as a whole: how many records, and the first."""
    if not records:
        return "the section is empty"
    count = f"{len(records)} record{'s' if len(records) > 1 else ''}"
    return f"{what} ({count}, the first: {_short(records[0])})"


def _short(record: str) -> str:
    # A TXT record can run to kilobytes; a message is one line in a log or an alert.
    return printable(record.encode(), limit=100)
