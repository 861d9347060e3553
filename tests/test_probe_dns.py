"""``kind: dns`` against a real dnsmasq on loopback and against servers that misbehave.

Every failure a server can cause (garbage, a truncated or mismatched reply, an error
rcode, an empty answer, silence) gets its own error.type and message, never a crash.
The system-resolver tests point the probe at a resolv.conf of their own: the machine's
names a server off the host, and tests/conftest.py fails any query sent there.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest

from config.kinds.dns import SYSTEM_RESOLVER, DnsCheck
from config.load import parse_config
from core.errors import ErrorType
from core.result import CheckResult, NodeStatus, Status
from engine.runner import run_check
from probes.base import ProbeContext
from tests.conftest import DnsGuard
from tests.dns_peers import (
    DNSMASQ,
    ZONE,
    Dnsmasq,
    dnsmasq,
    fault_server,
    free_udp_and_tcp_port,
    reply_with,
)
from tests.ports import free_port

pytestmark = pytest.mark.skipif(not DNSMASQ.exists(), reason=f"{DNSMASQ} is missing (dnsmasq-base)")


@pytest.fixture(scope="module")
def server() -> Iterator[Dnsmasq]:
    with dnsmasq() as running:
        yield running


def dns_check(nodes: str | None, query: str, **opts: Any) -> DnsCheck:
    lines = ["  - name: c", "    kind: dns", f"    query: {query}", "    retries: {attempts: 1}"]
    if nodes is not None:
        lines.append(f"    nodes: {nodes}")
    lines += [f"    {key}: {value}" for key, value in opts.items()]
    check = parse_config("checks:\n" + "\n".join(lines) + "\n").checks[0]
    assert isinstance(check, DnsCheck)
    return check


async def ask(address: str, query: str, ctx: ProbeContext, **opts: Any) -> CheckResult:
    return await run_check(dns_check(f'[{{name: ns, address: "{address}"}}]', query, **opts), ctx)


def error_of(result: CheckResult) -> tuple[ErrorType, str]:
    error = result.nodes[0].error
    assert error is not None, "expected the node to fail"
    return error.type, error.message


def details_of(result: CheckResult) -> dict[str, Any]:
    attempt = result.nodes[0].last
    assert attempt is not None
    return dict(attempt.details)


# --- answers from dnsmasq ------------------------------------------------------------


async def test_a_records_with_values_and_request_phase(server: Dnsmasq, ctx: ProbeContext) -> None:
    """Both A records match expect.values in any order; the query's time is the request phase."""
    result = await ask(
        server.address, f"{{name: app.{ZONE}}}", ctx, expect="{values: [127.0.20.2, 127.0.20.1]}"
    )
    assert result.status is Status.UP
    details = details_of(result)
    assert sorted(details["answers"]) == ["127.0.20.1", "127.0.20.2"]
    assert details["rcode"] == "NOERROR"
    assert details["ttl"] == 300
    assert details["transport"] == "udp"
    assert details["server"] == server.address
    phases = result.nodes[0].attempts[0].phases
    assert set(phases) == {"request"}  # an address needs no lookup of its own
    assert 0 <= phases["request"] < 1


@pytest.mark.parametrize(
    ("name", "rdtype", "value"),
    [
        (f"app.{ZONE}", "AAAA", "0:0:0::1"),  # written differently, same address
        (f"www.{ZONE}", "CNAME", f"APP.{ZONE.upper()}."),  # names compare without case or dot
        (ZONE, "MX", f"10 mail.{ZONE}"),
        (f"txt.{ZONE}", "TXT", "v=spf1 -all"),
        (f"_sip._tcp.{ZONE}", "SRV", f"1 2 5060 app.{ZONE}"),
        ("127.0.20.1", "PTR", f"app.{ZONE}"),  # an address is turned into its reverse name
    ],
)
async def test_record_types(
    server: Dnsmasq, ctx: ProbeContext, name: str, rdtype: str, value: str
) -> None:
    """Each record type's values are compared in their normal form."""
    query, expect = f'{{name: "{name}", type: {rdtype}}}', f'{{values: ["{value}"]}}'
    result = await ask(server.address, query, ctx, expect=expect)
    assert result.status is Status.UP, result.nodes[0].error
    assert len(details_of(result)["answers"]) == 1


async def test_cname_chain_is_followed(server: Dnsmasq, ctx: ProbeContext) -> None:
    """An A query for an alias reports the target's addresses and the chain it went through."""
    result = await ask(
        server.address, f"{{name: www.{ZONE}}}", ctx, expect="{contains: 127.0.20.1}"
    )
    details = details_of(result)
    assert result.status is Status.UP
    assert details["cname"] == [f"app.{ZONE}"]
    assert sorted(details["answers"]) == ["127.0.20.1", "127.0.20.2"]


async def test_values_that_differ_are_named(server: Dnsmasq, ctx: ProbeContext) -> None:
    """A changed record set is an assertion failure naming what is missing and what is extra."""
    result = await ask(
        server.address, f"{{name: app.{ZONE}}}", ctx, expect="{values: [127.0.20.1, 127.0.20.3]}"
    )
    assert error_of(result) == (
        ErrorType.ASSERTION,
        f"app.{ZONE} A answers differ: missing 127.0.20.3; unexpected 127.0.20.2",
    )
    assert sorted(details_of(result)["answers"]) == ["127.0.20.1", "127.0.20.2"]


async def test_contains_missing_value(server: Dnsmasq, ctx: ProbeContext) -> None:
    """expect.contains fails when one of its values is not among the answers."""
    result = await ask(server.address, f"{{name: app.{ZONE}}}", ctx, expect="{contains: 127.9.9.9}")
    assert error_of(result) == (
        ErrorType.ASSERTION,
        f"app.{ZONE} A answers do not include 127.9.9.9",
    )


async def test_nxdomain_is_a_dns_failure_unless_expected(
    server: Dnsmasq, ctx: ProbeContext
) -> None:
    """NXDOMAIN fails a check that expects NOERROR, and passes one that expects NXDOMAIN."""
    query = f"{{name: gone.{ZONE}}}"
    result = await ask(server.address, query, ctx)
    assert error_of(result) == (ErrorType.DNS, f"NXDOMAIN for gone.{ZONE} A, expected NOERROR")
    assert details_of(result)["rcode"] == "NXDOMAIN"
    expected = await ask(server.address, query, ctx, expect="{rcode: nxdomain}")
    assert expected.status is Status.UP


async def test_refused(server: Dnsmasq, ctx: ProbeContext) -> None:
    """A server that will not answer for a zone says REFUSED, and the error says so."""
    result = await ask(server.address, "{name: elsewhere.example}", ctx)
    assert error_of(result) == (ErrorType.DNS, "REFUSED for elsewhere.example A, expected NOERROR")


async def test_empty_answer(server: Dnsmasq, ctx: ProbeContext) -> None:
    """NOERROR without records of the type is an empty answer, through a CNAME too."""
    result = await ask(server.address, f"{{name: v4only.{ZONE}, type: AAAA}}", ctx)
    assert error_of(result) == (
        ErrorType.ASSERTION,
        f"empty answer: no AAAA records for v4only.{ZONE} AAAA",
    )
    chained = await ask(server.address, f"{{name: dangling.{ZONE}, type: AAAA}}", ctx)
    assert error_of(chained)[1].endswith(f"(CNAME to v4only.{ZONE})")


async def test_empty_answer_when_values_say_so(server: Dnsmasq, ctx: ProbeContext) -> None:
    """expect.values: [] asks for no records of the type (a name that must stay v4-only)."""
    result = await ask(
        server.address, f"{{name: v4only.{ZONE}, type: AAAA}}", ctx, expect="{values: []}"
    )
    assert result.status is Status.UP


async def test_truncated_udp_answer_is_asked_again_over_tcp(
    server: Dnsmasq, ctx: ProbeContext
) -> None:
    """An answer too large for UDP comes back truncated and is fetched whole over TCP."""
    result = await ask(server.address, f"{{name: big.{ZONE}, type: TXT}}", ctx)
    details = details_of(result)
    assert result.status is Status.UP
    assert details["transport"] == "tcp"
    assert details["truncated"] is True
    assert len(details["answers"]) == 6


async def test_tcp_transport(server: Dnsmasq, ctx: ProbeContext) -> None:
    """transport: tcp asks over TCP from the start."""
    result = await ask(server.address, f"{{name: app.{ZONE}}}", ctx, transport="tcp")
    assert result.status is Status.UP
    assert details_of(result)["transport"] == "tcp"
    assert "truncated" not in details_of(result)


async def test_server_given_by_name_has_a_resolve_phase(server: Dnsmasq, ctx: ProbeContext) -> None:
    """A server written as a name is looked up first: blackbox's resolve phase."""
    result = await ask(f"localhost:{server.port}", f"{{name: app.{ZONE}}}", ctx)
    assert result.status is Status.UP, result.nodes[0].error
    assert {"resolve", "request"} <= set(result.nodes[0].attempts[0].phases)


async def test_server_name_that_does_not_resolve(ctx: ProbeContext) -> None:
    """A server whose own name does not resolve fails as dns, naming the server."""
    result = await ask("ns1.example.invalid:53", f"{{name: app.{ZONE}}}", ctx)
    error_type, message = error_of(result)
    assert error_type is ErrorType.DNS
    assert message.startswith("cannot resolve the server's name ns1.example.invalid")


# --- servers that misbehave ------------------------------------------------------------


def _garbage(query: dns.message.Message, wire: bytes) -> bytes:
    return b"\x00\x01this is not DNS at all"


def _short(query: dns.message.Message, wire: bytes) -> bytes:
    return wire[:2] + b"\x81"  # the query's id, then the header stops


def _cut(query: dns.message.Message, wire: bytes) -> bytes:
    full = reply_with(answer=[f"{query.question[0].name} 60 IN A 127.1.1.1"])(query, wire)
    assert full is not None
    return full[:-3]  # the record's address is cut short


def _wrong_id(query: dns.message.Message, wire: bytes) -> bytes:
    response = dns.message.make_response(query)
    response.id = (query.id + 1) % 65536
    return response.to_wire()


def _wrong_question(query: dns.message.Message, wire: bytes) -> bytes:
    other = dns.message.make_query("other.example", "A")
    other.id = query.id
    return dns.message.make_response(other).to_wire()


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (_garbage, ErrorType.PROTOCOL, "sent a malformed DNS message"),
        (_short, ErrorType.PROTOCOL, "sent a malformed DNS message"),
        (_cut, ErrorType.PROTOCOL, "sent a malformed DNS message"),
        (_wrong_id, ErrorType.PROTOCOL, "sent a reply to another query"),
        (_wrong_question, ErrorType.PROTOCOL, "sent a reply to another query"),
        (reply_with(dns.rcode.SERVFAIL), ErrorType.DNS, "SERVFAIL for app.hotline.test A"),
        (reply_with(), ErrorType.ASSERTION, "empty answer"),
    ],
    ids=["garbage", "short", "cut", "wrong-id", "wrong-question", "servfail", "empty"],
)
async def test_bad_replies(ctx: ProbeContext, answer: Any, kind: ErrorType, words: str) -> None:
    """Each way a reply can be wrong has its own error.type and words."""
    async with fault_server(answer) as (address, peer):
        result = await ask(address, f"{{name: app.{ZONE}}}", ctx, timeout="2s")
    error_type, message = error_of(result)
    assert (error_type, words in message) == (kind, True), message
    assert len(peer.queries) == 1


async def test_silent_server_times_out_in_the_request(ctx: ProbeContext) -> None:
    """A server that never answers is a timeout while waiting for the DNS answer."""
    async with fault_server(lambda query, wire: None) as (address, _):
        started = time.monotonic()
        result = await ask(address, f"{{name: app.{ZONE}}}", ctx, timeout="300ms")
    assert error_of(result) == (
        ErrorType.TIMEOUT,
        "no answer within 300ms, waiting for the DNS answer",
    )
    assert time.monotonic() - started < 1


async def test_nothing_listening_is_refused_at_once(ctx: ProbeContext) -> None:
    """A closed UDP port is refused (the kernel's port-unreachable), not a timeout."""
    port = free_port(socket.SOCK_DGRAM)
    result = await ask(f"127.0.0.1:{port}", f"{{name: app.{ZONE}}}", ctx, timeout="2s")
    refused = (ErrorType.CONNECTION_REFUSED, f"connection refused by 127.0.0.1:{port}")
    assert error_of(result) == refused
    assert result.nodes[0].duration < 1


async def test_truncated_answer_with_tcp_refused(ctx: ProbeContext) -> None:
    """A truncated UDP answer from a server without TCP is refused on the TCP retry."""
    truncated = reply_with(flags=dns.flags.TC)
    port = free_udp_and_tcp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))  # bound, never listening: connections refused
        async with fault_server(truncated, port=port) as (address, _):
            result = await ask(address, f"{{name: app.{ZONE}}}", ctx, timeout="2s")
    assert error_of(result) == (ErrorType.CONNECTION_REFUSED, f"connection refused by {address}")


async def test_tcp_server_closing_mid_answer(ctx: ProbeContext) -> None:
    """Over TCP, a server that closes before the whole answer is a reset, not garbage."""

    async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(512)
        writer.write(b"\x00\x40\x12\x34")  # announces 64 bytes, sends 2
        await writer.drain()
        writer.close()

    peer = await asyncio.start_server(half_answer, "127.0.0.1", 0)
    async with peer:
        port = peer.sockets[0].getsockname()[1]
        result = await ask(f"127.0.0.1:{port}", f"{{name: app.{ZONE}}}", ctx, transport="tcp")
    assert error_of(result) == (
        ErrorType.CONNECTION_RESET,
        f"127.0.0.1:{port} closed the TCP connection before the whole answer",
    )


async def test_slow_answer_breaks_max_latency(ctx: ProbeContext) -> None:
    """An answer slower than expect.max_latency is latency, not timeout."""
    good = reply_with(answer=[f"app.{ZONE}. 60 IN A 127.1.1.1"])
    async with fault_server(good, delay=0.15) as (address, _):
        result = await ask(address, f"{{name: app.{ZONE}}}", ctx, expect="{max_latency: 50ms}")
    error_type, message = error_of(result)
    assert error_type is ErrorType.LATENCY
    assert message.endswith("limit 50 ms")


async def test_fuzzed_replies_never_crash_the_probe(ctx: ProbeContext) -> None:
    """Random bytes and randomly damaged answers always get a classified error, never internal."""
    rng = random.Random(5)
    good = reply_with(answer=[f"app.{ZONE}. 60 IN A 127.1.1.1", f"app.{ZONE}. 60 IN A 127.1.1.2"])

    def damaged(query: dns.message.Message, wire: bytes) -> bytes:
        reply = bytearray(good(query, wire) or b"")
        if rng.random() < 0.3:
            # at least one byte: asyncio sends no empty datagram, and silence is a timeout
            return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 80)))
        for _ in range(rng.randrange(1, 4)):
            reply[rng.randrange(2, len(reply))] = rng.getrandbits(8)  # the id stays intact
        return bytes(reply[: rng.randrange(12, len(reply) + 1)])

    seen: set[ErrorType | None] = set()
    async with fault_server(damaged) as (address, _):
        node = f'[{{name: ns, address: "{address}"}}]'
        check = dns_check(node, f"{{name: app.{ZONE}}}", timeout="1s")
        for _ in range(150):
            result = await run_check(check, ctx)
            seen.add(result.nodes[0].error.type if result.nodes[0].error else None)
    assert ErrorType.INTERNAL not in seen
    assert ErrorType.PROTOCOL in seen


# --- the system resolver ----------------------------------------------------------------

needs_port_53 = pytest.mark.skipif(
    os.geteuid() != 0, reason="resolv.conf has no port: the server must listen on 53 (root)"
)


def random_loopback() -> str:
    """An address of 127/8 of its own, so that port 53 is free there even on a busy host."""
    return f"127.{random.randrange(1, 255)}.{random.randrange(0, 255)}.{random.randrange(1, 255)}"


def resolv_conf(tmp_path: Path, *servers: str) -> str:
    path = tmp_path / "resolv.conf"
    path.write_text("".join(f"nameserver {s}\n" for s in servers) + "options timeout:1\n")
    return str(path)


@pytest.fixture
async def system_ctx(tmp_path: Path) -> AsyncIterator[tuple[ProbeContext, str]]:
    host = random_loopback()
    async with ProbeContext(resolv_conf=resolv_conf(tmp_path, host)) as context:
        yield context, host


def system_check(query: str, **opts: Any) -> DnsCheck:
    return dns_check(None, query, **opts)


@pytest.mark.parametrize(
    ("address", "server"),
    [
        ("127.0.0.53", ("127.0.0.53", 53)),
        ("ns1.example.invalid", ("ns1.example.invalid", 53)),
        ("ns1.example.invalid:5353", ("ns1.example.invalid", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_server_address_forms(address: str, server: tuple[str, int]) -> None:
    """A server is a host with an optional port (53 by default), IPv6 bare or in brackets."""
    check = dns_check(f'[{{name: ns, address: "{address}"}}]', "{name: app.example.invalid}")
    assert check.nodes[0].server == server


def test_no_nodes_means_the_system_resolver() -> None:
    """A dns check without nodes has one node, `system`, that asks the system resolver."""
    check = system_check("{name: app.example.invalid}")
    assert list(check.nodes) == [SYSTEM_RESOLVER]
    assert check.nodes[0].server is None


@needs_port_53
async def test_system_resolver_answers(system_ctx: tuple[ProbeContext, str]) -> None:
    """The system node asks the servers of resolv.conf; its target is `system`."""
    ctx, host = system_ctx
    with dnsmasq(host, 53):
        result = await run_check(system_check(f"{{name: www.{ZONE}}}"), ctx)
    assert result.status is Status.UP, result.nodes[0].error
    node = result.nodes[0]
    assert (node.name, node.target) == ("system", "system")
    assert sorted(details_of(result)["answers"]) == ["127.0.20.1", "127.0.20.2"]
    assert details_of(result)["server"] == f"system ({host})"


@needs_port_53
async def test_system_resolver_nxdomain(system_ctx: tuple[ProbeContext, str]) -> None:
    """NXDOMAIN through the system resolver is judged like a server's."""
    ctx, host = system_ctx
    with dnsmasq(host, 53):
        result = await run_check(system_check(f"{{name: gone.{ZONE}}}"), ctx)
    assert error_of(result) == (ErrorType.DNS, f"NXDOMAIN for gone.{ZONE} A, expected NOERROR")


@needs_port_53
async def test_system_resolver_servfail(system_ctx: tuple[ProbeContext, str]) -> None:
    """When every server of resolv.conf answers SERVFAIL, the check fails as dns."""
    ctx, host = system_ctx
    async with fault_server(reply_with(dns.rcode.SERVFAIL), host=host, port=53):
        result = await run_check(system_check(f"{{name: app.{ZONE}}}"), ctx)
    assert error_of(result) == (ErrorType.DNS, f"SERVFAIL for app.{ZONE} A, expected NOERROR")


@needs_port_53
@pytest.mark.parametrize("answer", [_garbage, _wrong_id, lambda query, wire: None])
async def test_system_resolver_ignores_bad_replies(
    system_ctx: tuple[ProbeContext, str], answer: Any
) -> None:
    """Like the C library's, the system resolver drops replies that are not an answer to
    its query (a defence against spoofing): garbage alone looks like silence, a timeout."""
    ctx, host = system_ctx
    async with fault_server(answer, host=host, port=53) as (_, peer):
        result = await run_check(system_check(f"{{name: app.{ZONE}}}", timeout="1s"), ctx)
    error_type, message = error_of(result)
    assert error_type is ErrorType.TIMEOUT
    assert message.startswith("no answer")
    assert peer.queries


async def test_missing_resolv_conf(tmp_path: Path) -> None:
    """Without a usable resolv.conf the system node fails as dns, naming the file."""
    missing = tmp_path / "none.conf"
    async with ProbeContext(resolv_conf=str(missing)) as ctx:
        result = await run_check(system_check(f"{{name: app.{ZONE}}}"), ctx)
    error_type, message = error_of(result)
    assert error_type is ErrorType.DNS
    assert message.startswith(f"no usable nameserver in {missing}")
    assert result.nodes[0].status is NodeStatus.DOWN


async def test_resolv_conf_is_read_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resolv.conf is read anew each attempt (a resolver switched by DHCP counts at once),
    in a worker thread: a file on a stalled mount must not stall every other check."""
    import threading

    import dns.asyncresolver

    threads: list[threading.Thread] = []
    real = dns.asyncresolver.Resolver

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(dns.asyncresolver, "Resolver", spy)
    async with ProbeContext(resolv_conf=str(tmp_path / "none.conf")) as ctx:
        for _ in range(2):
            await run_check(system_check(f"{{name: app.{ZONE}}}"), ctx)
    assert len(threads) == 2
    assert threading.main_thread() not in threads


def test_guard_refuses_queries_off_loopback(dns_guard: DnsGuard) -> None:
    """The suite's guard stops a query to a server off the host before it is sent."""
    from dns import _asyncio_backend

    assert _asyncio_backend._DatagramSocket.sendto.__name__ == "guarded_sendto"
    assert _asyncio_backend.Backend.make_socket.__name__ == "guarded_make_socket"
    dns_guard.check(("127.0.0.53", 53))
    # Neither is loopback, and neither names a host off this one: the unspecified
    # address (the address branch) and a name that never resolves (the name branch).
    with pytest.raises(PermissionError, match=r"not 0\.0\.0\.0"):
        dns_guard.check(("0.0.0.0", 53))  # noqa: S104 - data for the guard, never bound
    with pytest.raises(PermissionError, match=r"not resolver\.hotline\.invalid"):
        dns_guard.check(("resolver.hotline.invalid", 53))
    assert dns_guard.refused == ["0.0.0.0", "resolver.hotline.invalid"]  # noqa: S104
    dns_guard.refused.clear()  # seen: this test must not fail at teardown
