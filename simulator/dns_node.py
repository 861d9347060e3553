"""A DNS server of one link (a 政务云 internal resolver), over UDP and TCP on one port.

dnspython parses each query and builds its answer. Every A question is answered with
`answer`, a loopback address, whatever the name; other types get an empty answer. The
demo's names are placeholders, and no answer may lead a client off the machine.
"""

import asyncio
import socket
from collections.abc import Callable
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from simulator.base import LOOPBACK, SimNode, bind_loopback
from simulator.modes import GARBAGE_BYTES, Mode

# refusing closes both sockets (UDP: port unreachable), hanging reads and never answers,
# erroring answers SERVFAIL, wrong_body answers NOERROR without records, garbage sends
# bytes that are no DNS message.
_MODES = frozenset(
    {
        Mode.HEALTHY,
        Mode.REFUSING,
        Mode.HANGING,
        Mode.SLOW,
        Mode.ERRORING,
        Mode.WRONG_BODY,
        Mode.GARBAGE,
    }
)
_PORT_TRIES = 20

Send = Callable[[bytes], None]


def bind_udp(port: int) -> socket.socket:
    """A UDP socket bound to 127.0.0.1:`port` (0 lets the OS pick)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock


class SimDnsNode(SimNode):
    """Answers queries on UDP and TCP (two-byte length framing) at the same port.

    `answer` (the A record), `ttl` and `slow_delay` are plain attributes so tests can
    change them; `requests` counts queries that parsed.
    """

    kind = "dns"

    def __init__(self, *, link: str, node: str, mode: Mode = Mode.HEALTHY) -> None:
        super().__init__(link=link, node=node, mode=mode)
        self.answer = LOOPBACK
        self.ttl = 60
        # Slower than the example's max_latency of 200ms, well inside the demo's timeout.
        self.slow_delay = 0.5
        self._udp: asyncio.DatagramTransport | None = None
        self._streams: set[asyncio.Transport] = set()
        self._delayed: set[asyncio.TimerHandle] = set()

    @property
    def modes(self) -> frozenset[Mode]:
        return _MODES

    @property
    def scheme(self) -> str:
        return "dns"

    async def start(self) -> None:
        """Bind one port for both transports, as a real server has, then listen."""
        for _ in range(_PORT_TRIES):
            udp = bind_udp(0)
            try:
                tcp = bind_loopback(udp.getsockname()[1])
            except OSError:  # the OS's UDP pick is taken for TCP: pick again
                udp.close()
                continue
            break
        else:
            raise OSError(f"no port on {LOOPBACK} free for both UDP and TCP")
        self._port = udp.getsockname()[1]
        if self._mode is Mode.REFUSING:
            udp.close()
            tcp.close()
            return
        self._server = await self._listen(tcp, None)
        self._udp = await self._open_udp(udp)

    async def _apply_listener(self) -> None:
        await super()._apply_listener()  # the TCP listener
        async with self._lock:
            if self._stopping:
                return
            if self._mode is Mode.REFUSING:
                await self._close_udp()
            elif self._udp is None:
                self._udp = await self._open_udp(bind_udp(self._port))

    async def _open_udp(self, sock: socket.socket) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _UdpServer(self), sock=sock)
        except BaseException:
            sock.close()
            raise
        return transport

    async def _close_udp(self) -> None:
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
        if self._udp is not None:
            udp, self._udp = self._udp, None
            protocol = cast(_UdpServer, udp.get_protocol())
            udp.close()
            # asyncio closes the socket a loop turn later; once it is, the port is
            # unreachable and the kernel answers queries with ICMP.
            await protocol.closed

    def _protocol_factory(self) -> Callable[[], asyncio.BaseProtocol]:
        return lambda: _TcpStream(self)

    def _drop_connections(self) -> None:
        for transport in list(self._streams):
            transport.abort()

    async def _shutdown(self) -> None:
        await self._close_udp()

    def _query(self, wire: bytes, send: Send) -> None:
        """Answer one query per the mode; `send` delivers the reply on its transport."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return  # not a DNS message: a server drops it
        if query.flags & dns.flags.QR:
            return  # a response, not a question
        self._count_request()
        mode = self._mode
        if self._stopping or mode in (Mode.REFUSING, Mode.HANGING):
            return
        if mode is Mode.GARBAGE:
            send(GARBAGE_BYTES)
            return
        reply = self._reply(query, mode).to_wire()
        if mode is not Mode.SLOW:
            send(reply)
            return

        def late() -> None:
            self._delayed.discard(handle)
            send(reply)

        handle = asyncio.get_running_loop().call_later(self.slow_delay, late)
        self._delayed.add(handle)

    def _reply(self, query: dns.message.Message, mode: Mode) -> dns.message.Message:
        # Posing as a recursive resolver, as the 政务云 internal servers are.
        response = dns.message.make_response(query, recursion_available=True)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif mode is Mode.ERRORING:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif mode is not Mode.WRONG_BODY:
            for question in query.question:
                if question.rdtype == dns.rdatatype.A and question.rdclass == dns.rdataclass.IN:
                    answer = dns.rrset.from_text(question.name, self.ttl, "IN", "A", self.answer)
                    response.answer.append(answer)
        return response


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, node: SimDnsNode) -> None:
        self._node = node
        self._transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        transport = self._transport
        if transport is not None:
            self._node._query(data, lambda reply: transport.sendto(reply, addr))


class _TcpStream(asyncio.Protocol):
    """One TCP connection: messages framed by a two-byte length (RFC 1035 4.2.2)."""

    def __init__(self, node: SimDnsNode) -> None:
        self._node = node
        self._transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._node._streams.add(transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                return
            wire, self._buffer = self._buffer[2 : 2 + length], self._buffer[2 + length :]
            self._node._query(wire, self._send)

    def _send(self, reply: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(len(reply).to_bytes(2, "big") + reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._node._streams.discard(self._transport)
            self._transport = None
