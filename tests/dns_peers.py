"""DNS servers for the tests: a real dnsmasq, and tiny servers that misbehave on purpose.

dnsmasq (Debian's dnsmasq-base) serves the records below from its command line on a
loopback address, without reading any file of the machine. The fault servers answer
each UDP query with whatever their ``answer`` function makes of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rrset

DNSMASQ = Path("/usr/sbin/dnsmasq")
ZONE = "hotline.test"
LONG_TEXT = "x" * 250  # several of these overflow a 1232-byte UDP answer: TCP fallback

RECORDS = [
    f"--host-record=app.{ZONE},127.0.20.1,::1",
    f"--host-record=app.{ZONE},127.0.20.2",
    f"--host-record=v4only.{ZONE},127.0.20.9",
    f"--cname=www.{ZONE},app.{ZONE}",
    f"--cname=dangling.{ZONE},v4only.{ZONE}",
    f"--txt-record=txt.{ZONE},v=spf1 -all",
    *(f"--txt-record=big.{ZONE},{i}{LONG_TEXT}" for i in range(6)),
    f"--mx-host={ZONE},mail.{ZONE},10",
    f"--srv-host=_sip._tcp.{ZONE},app.{ZONE},5060,1,2",
]

SOA = f"ns1.{ZONE}. hostmaster.{ZONE}. 2024010101 3600 600 86400 300"
"""The zone's SOA when dnsmasq serves it authoritatively, as dnspython writes its data."""


def authoritative(host: str) -> list[str]:
    """dnsmasq's options to serve the zone as its primary server at ``host``: answers
    carry the zone's NS records in authority, and NXDOMAIN or an empty answer its SOA.
    dnsmasq answers so only at an address an interface holds (127.0.0.1, not the rest
    of 127/8), and sends no glue in additional."""
    return [
        f"--auth-server=ns1.{ZONE},{host}",
        f"--auth-zone={ZONE}",
        f"--auth-soa=2024010101,hostmaster.{ZONE},3600,600,86400",
        f"--auth-sec-servers=ns2.{ZONE}",
        "--auth-ttl=300",
    ]


def free_udp_and_tcp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (dnsmasq serves both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
        return port


@dataclass(frozen=True)
class Dnsmasq:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@contextlib.contextmanager
def dnsmasq(
    host: str = "127.0.0.1", port: int | None = None, *, auth: bool = False
) -> Iterator[Dnsmasq]:
    """dnsmasq in the foreground on ``host``, answering only for hotline.test (NXDOMAIN
    for other names there, REFUSED elsewhere: it has no upstream); with ``auth``, as the
    zone's authoritative server."""
    for _ in range(3):  # a free port can be taken between the check and the bind
        chosen = port or free_udp_and_tcp_port(host)
        proc = subprocess.Popen(
            [
                str(DNSMASQ),
                "--keep-in-foreground",
                "--conf-file=/dev/null",  # nothing from /etc/dnsmasq.conf
                "--pid-file",  # none: several may run at once
                f"--port={chosen}",
                f"--listen-address={host}",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--log-facility=-",
                f"--local=/{ZONE}/",
                "--local-ttl=300",
                *RECORDS,
                *(authoritative(host) if auth else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if _answers(host, chosen, proc):
                yield Dnsmasq(host, chosen)
                return
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
    raise RuntimeError("dnsmasq did not start (three tries)")


def _answers(host: str, port: int, proc: subprocess.Popen[bytes]) -> bool:
    query = dns.message.make_query(f"app.{ZONE}", "A")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError, dns.exception.Timeout):
            dns.query.udp(query, host, port=port, timeout=0.2)
            return True
        time.sleep(0.02)
    return False


# --- servers that misbehave ----------------------------------------------------------

Answer = Callable[[dns.message.Message, bytes], bytes | None]
"""(the parsed query, its bytes) -> the bytes to send back, or None for silence."""


class FaultServer(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[dns.message.Message] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        self.queries.append(query)
        reply = self.answer(query, data)
        if reply is not None and self.transport is not None:
            asyncio.get_running_loop().call_later(self.delay, self.transport.sendto, reply, addr)


@contextlib.asynccontextmanager
async def fault_server(
    answer: Answer, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0
) -> AsyncIterator[tuple[str, FaultServer]]:
    """A UDP server at ``host:port`` (the OS picks the port when 0) answering with
    ``answer`` after ``delay`` seconds; yields its address and the server."""
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: FaultServer(answer, delay), local_addr=(host, port)
    )
    try:
        sockname = transport.get_extra_info("sockname")
        yield f"{sockname[0]}:{sockname[1]}", server
    finally:
        transport.close()


def reply_with(
    rcode: dns.rcode.Rcode | None = None,
    *,
    answer: Sequence[str] = (),
    authority: Sequence[str] = (),
    additional: Sequence[str] = (),
    flags: int = 0,
) -> Answer:
    """A well-formed reply: ``rcode``, records of each section as zone lines, extra
    header flags."""

    def make(query: dns.message.Message, wire: bytes) -> bytes:
        response = dns.message.make_response(query)
        if rcode is not None:
            response.set_rcode(rcode)
        for section, lines in (
            (response.answer, answer),
            (response.authority, authority),
            (response.additional, additional),
        ):
            for line in lines:
                name, ttl, _, rdtype, value = line.split(maxsplit=4)
                section.append(dns.rrset.from_text(name, int(ttl), "IN", rdtype, value))
        response.flags |= flags
        return response.to_wire()

    return make
