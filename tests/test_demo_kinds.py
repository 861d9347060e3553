"""The demo plays the dns and icmp checks of config/example.yaml on loopback: a simulated
DNS server that real dnspython queries and the dns probe get answers from, switchable
like the other simulated nodes, and icmp checks aimed at 127.0.0.x addresses."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from config.kinds.dns import DnsCheck
from config.load import parse_config
from core.errors import ErrorType
from core.result import Status
from engine.runner import run_check
from probes.base import ProbeContext
from simulator import Mode, SimDnsNode, Simulator
from simulator import demo as demo_module
from simulator.demo import EXAMPLE, build
from simulator.modes import GARBAGE_BYTES
from tests.cli_run import probe

NAME = "node-a.police110.hotline.invalid"  # the name the example's dns check asks
DNS_CHECK = "dns-police-110"


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(directory=tmp_path) as simulator:
        yield simulator


@pytest.fixture
async def server(sim: Simulator) -> SimDnsNode:
    return await sim.add_dns("dns", "ns-1")


def query(rdtype: str = "A") -> dns.message.Message:
    return dns.message.make_query(NAME, rdtype)


def addresses(response: dns.message.Message) -> list[str]:
    return [rdata.to_text() for rrset in response.answer for rdata in rrset]


async def send_udp(server: SimDnsNode) -> socket.socket:
    """A connected, non-blocking UDP socket that has sent one A query to `server`;
    returns once the server has read it (its reply, if any, is sent by then)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", server.port))
    sock.send(query().to_wire())
    async with asyncio.timeout(2):
        await server.wait_for_requests(server.requests + 1)
    return sock


def pending_reply(sock: socket.socket) -> bytes | None:
    """The reply already waiting on `sock`, or None; never waits (loopback delivers at once)."""
    try:
        return sock.recv(65535)
    except BlockingIOError:
        return None


# --- the simulated server, asked by dnspython ----------------------------------------


async def test_answers_a_queries_over_udp_and_tcp(server: SimDnsNode) -> None:
    """A is answered with the loopback address on UDP and TCP at the same port; AAAA
    with an empty NOERROR answer; every query is counted."""
    assert server.address == f"127.0.0.1:{server.port}"
    udp = await dns.asyncquery.udp(query(), "127.0.0.1", port=server.port, timeout=2)
    tcp = await dns.asyncquery.tcp(query(), "127.0.0.1", port=server.port, timeout=2)
    for response in (udp, tcp):
        assert response.rcode() == dns.rcode.NOERROR
        assert addresses(response) == ["127.0.0.1"]
        assert response.answer[0].name.to_text(omit_final_dot=True) == NAME
    v6 = await dns.asyncquery.udp(query("AAAA"), "127.0.0.1", port=server.port, timeout=2)
    assert (v6.rcode(), v6.answer) == (dns.rcode.NOERROR, [])
    assert server.requests == 3
    assert server.state()["kind"] == "dns"


@pytest.mark.parametrize(
    ("mode", "rcode", "answers"),
    [
        (Mode.ERRORING, dns.rcode.SERVFAIL, []),
        (Mode.WRONG_BODY, dns.rcode.NOERROR, []),
        (Mode.HEALTHY, dns.rcode.NOERROR, ["127.0.0.1"]),
    ],
)
async def test_answering_modes(
    server: SimDnsNode, mode: Mode, rcode: dns.rcode.Rcode, answers: list[str]
) -> None:
    """erroring answers SERVFAIL and wrong_body an empty answer, on UDP and TCP alike."""
    await server.set_mode(mode)
    for ask in (dns.asyncquery.udp, dns.asyncquery.tcp):
        response = await ask(query(), "127.0.0.1", port=server.port, timeout=2)
        assert (response.rcode(), addresses(response)) == (rcode, answers)


async def test_refusing_closes_both_transports_on_the_same_port(server: SimDnsNode) -> None:
    """refusing: UDP port unreachable and TCP refused; healthy serves the same port again."""
    port = server.port
    await server.set_mode(Mode.REFUSING)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        sock.send(query().to_wire())
        with pytest.raises(ConnectionRefusedError):  # the kernel's ICMP port unreachable
            async with asyncio.timeout(2):
                await asyncio.get_running_loop().sock_recv(sock, 512)
    with pytest.raises(ConnectionRefusedError):
        await dns.asyncquery.tcp(query(), "127.0.0.1", port=port, timeout=2)
    await server.set_mode(Mode.HEALTHY)
    assert server.port == port
    response = await dns.asyncquery.udp(query(), "127.0.0.1", port=port, timeout=2)
    assert addresses(response) == ["127.0.0.1"]


async def test_hanging_reads_and_never_answers(server: SimDnsNode) -> None:
    """hanging counts the query and sends nothing back."""
    await server.set_mode(Mode.HANGING)
    with await send_udp(server) as sock:
        assert pending_reply(sock) is None


async def test_garbage_is_not_a_dns_message(server: SimDnsNode) -> None:
    """garbage answers with bytes no DNS parser accepts."""
    await server.set_mode(Mode.GARBAGE)
    with await send_udp(server) as sock:
        assert pending_reply(sock) == GARBAGE_BYTES


async def test_slow_answers_after_slow_delay(server: SimDnsNode) -> None:
    """slow holds the answer back (nothing when the query is read), then sends it."""
    await server.set_mode(Mode.SLOW)
    server.slow_delay = 0.05
    with await send_udp(server) as sock:
        assert pending_reply(sock) is None
        async with asyncio.timeout(2):
            reply = await asyncio.get_running_loop().sock_recv(sock, 65535)
    assert addresses(dns.message.from_wire(reply)) == ["127.0.0.1"]


async def test_unsupported_modes_are_refused(server: SimDnsNode) -> None:
    """Modes that mean nothing to DNS (certificates, HTTP bodies) are a ValueError."""
    for mode in (Mode.EXPIRED_CERTIFICATE, Mode.TRICKLE):
        with pytest.raises(ValueError, match="dns node does not support"):
            await server.set_mode(mode)
    assert server.mode is Mode.HEALTHY


async def test_control_api_switches_the_dns_node(sim: Simulator, server: SimDnsNode) -> None:
    """PUT /nodes/dns/ns-1 switches the simulated DNS server like any other node."""
    import aiohttp

    control = await sim.start_control()
    async with (
        aiohttp.ClientSession() as session,
        session.put(control.url + "nodes/dns/ns-1", json={"mode": "erroring"}) as answer,
    ):
        assert answer.status == 200
        assert (await answer.json())["kind"] == "dns"
    response = await dns.asyncquery.udp(query(), "127.0.0.1", port=server.port, timeout=2)
    assert response.rcode() == dns.rcode.SERVFAIL


# --- the dns probe against it ----------------------------------------------------------


def dns_check(address: str) -> DnsCheck:
    check = parse_config(f"""
checks:
  - name: {DNS_CHECK}
    kind: dns
    query: {{name: {NAME}, type: A}}
    retries: {{attempts: 1}}
    nodes: [{{name: dns-1, address: "{address}"}}]
""").checks[0]
    assert isinstance(check, DnsCheck)
    return check


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        (Mode.HEALTHY, None),
        (Mode.ERRORING, ErrorType.DNS),
        (Mode.WRONG_BODY, ErrorType.ASSERTION),
        (Mode.GARBAGE, ErrorType.PROTOCOL),
        (Mode.REFUSING, ErrorType.CONNECTION_REFUSED),
    ],
)
async def test_probe_reads_each_mode_as_its_error_type(
    server: SimDnsNode, fake_ctx: ProbeContext, mode: Mode, error: ErrorType | None
) -> None:
    """The dns probe sees each switch as the error a real server's fault would give."""
    await server.set_mode(mode)
    result = await run_check(dns_check(server.address), fake_ctx)
    node = result.nodes[0]
    assert (node.error.type if node.error else None) == error
    assert result.status is (Status.UP if error is None else Status.DOWN)


# --- the demo document ----------------------------------------------------------------


async def test_demo_aims_dns_and_icmp_at_loopback_and_drops_outputs(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build(): each dns node is a simulated server on 127.0.0.1, each icmp host a
    127.0.0.x address, and the outputs (/var/log, /var/lib, the SIEM) are gone."""
    monkeypatch.setattr(demo_module, "_can_ping", lambda: True)
    document = await build(sim, EXAMPLE.read_text(encoding="utf-8"))
    assert "outputs" not in document
    checks = {c["name"]: c for c in document["checks"]}
    dns_nodes = checks[DNS_CHECK]["nodes"]
    assert [n["address"] for n in dns_nodes] == [
        sim.node(DNS_CHECK, n["name"]).address for n in dns_nodes
    ]
    assert all(n["address"].startswith("127.0.0.1:") for n in dns_nodes)
    hosts = [n["host"] for c in checks.values() if c["kind"] == "icmp" for n in c["nodes"]]
    assert hosts and all(h.startswith("127.0.0.") for h in hosts)
    assert len(set(hosts)) == len(hosts)
    text = yaml.safe_dump(document, allow_unicode=True)
    assert "/var/" not in text and ".invalid" not in text.replace(NAME, "")
    parse_config(text)  # still a valid config


async def test_demo_leaves_icmp_out_where_it_cannot_ping(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without an ICMP socket the icmp checks are left out, with a one-line note."""
    monkeypatch.setattr(demo_module, "_can_ping", lambda: False)
    document = await build(sim, EXAMPLE.read_text(encoding="utf-8"))
    assert not [c for c in document["checks"] if c["kind"] == "icmp"]
    assert any(c["kind"] == "dns" for c in document["checks"])
    notes = [line for line in capsys.readouterr().out.splitlines() if "icmp" in line]
    assert notes == ["demo: leaving out the icmp checks: this process may open no ICMP socket"]


async def probe_all(config: Path) -> tuple[int, dict[str, Any]]:
    run = await probe("--all", "--json", "--events", "off", "-c", str(config))
    assert run.stdout, run.stderr
    checks = {c["name"]: c for c in json.loads(run.stdout)["checks"]}
    return run.code, checks


@pytest.mark.e2e
async def test_probe_all_against_the_demo_follows_the_dns_switches(
    sim: Simulator, tmp_path: Path
) -> None:
    """`probe --all --json` with the demo's config: the dns check is up; degraded on dns-2
    when dns-1 answers SERVFAIL; down when dns-2 refuses too, each node with its own
    error type; up again once both mend. The icmp checks, when played, are up."""
    document = await build(sim, EXAMPLE.read_text(encoding="utf-8"))
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    dns_1, dns_2 = sim.node(DNS_CHECK, "dns-1"), sim.node(DNS_CHECK, "dns-2")
    seen: list[tuple[str, str | None, list[str | None]]] = []
    for first, second in (
        (Mode.HEALTHY, Mode.HEALTHY),
        (Mode.ERRORING, Mode.HEALTHY),
        (Mode.ERRORING, Mode.REFUSING),
        (Mode.HEALTHY, Mode.HEALTHY),
    ):
        await dns_1.set_mode(first)
        await dns_2.set_mode(second)
        _, checks = await probe_all(config)
        check = checks[DNS_CHECK]
        errors = [(n["error"] or {}).get("type") for n in check["nodes"]]
        seen.append((check["status"], check["active_node"], errors))
        icmp = [c for c in checks.values() if c["kind"] == "icmp"]
        assert all(c["status"] == "up" for c in icmp), icmp
    assert seen == [
        ("up", "dns-1", [None, None]),
        ("degraded", "dns-2", ["dns", None]),
        ("down", None, ["dns", "connection_refused"]),
        ("up", "dns-1", [None, None]),
    ]
    answered = checks[DNS_CHECK]["nodes"][0]
    assert answered["target"] == answered["details"]["server"] == dns_1.address
    assert answered["details"]["answers"] == ["127.0.0.1"]
