"""A raw TCP endpoint (jump host, Redis-like middleware), optionally behind TLS."""

import asyncio
import ssl
from collections.abc import Callable

from simulator.base import SimNode, reset_connection
from simulator.certs import CertAuthority, CertVariant
from simulator.modes import GARBAGE_BYTES, TLS_MODES, Mode

_PLAIN_MODES = frozenset({Mode.HEALTHY, Mode.REFUSING, Mode.HANGING, Mode.RESET, Mode.GARBAGE})
# Modes in which the node still talks once connected.
_TALKING = frozenset({Mode.HEALTHY}) | TLS_MODES
# On a TLS node these misbehave before the handshake, which is what a TLS probe must see:
# no ServerHello at all, an RST instead of one, or bytes that are not TLS.
_CERT_FOR_MODE = {
    Mode.HEALTHY: CertVariant.GOOD,
    Mode.BAD_CERTIFICATE: CertVariant.SELF_SIGNED,
    Mode.EXPIRED_CERTIFICATE: CertVariant.EXPIRED,
}
_MAX_LINE = 4096


def _mysql_greeting() -> bytes:
    """A MariaDB 10.11 handshake (protocol v10), as the server sends it on connect."""
    payload = b"".join(
        (
            b"\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00",  # protocol, version (MariaDB prefix)
            (42).to_bytes(4, "little"),  # connection id
            b"scramble",  # first 8 bytes of the auth data (a fixed, meaningless salt)
            b"\x00",
            (0xF7FE).to_bytes(2, "little"),  # capabilities, low half: no SSL
            b"\x2d",  # charset utf8mb4
            (0x0002).to_bytes(2, "little"),  # status: autocommit
            (0x81FF).to_bytes(2, "little"),  # capabilities, high half: plugin auth
            b"\x15" + b"\x00" * 10,  # auth data length 21, reserved
            b"rest-of-salt\x00",  # the other 13 bytes of the auth data, NUL included
            b"mysql_native_password\x00",
        )
    )
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


# What a node sends on connect to pass for a server of ``protocol:`` (the tcp presets).
# Redis needs none: the node answers PING. PostgreSQL and AMQP speak only when spoken to
# in their own binary framing, which these nodes do not play.
GREETINGS: dict[str, bytes] = {
    "mysql": _mysql_greeting(),
    "ssh": b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
    "smtp": b"220 mail.hotline.invalid ESMTP Postfix (Debian/GNU)\r\n",
    "redis": b"",
}


class SimTcpNode(SimNode):
    """Sends `banner` on connect and answers ``PING\\r\\n`` with ``+PONG\\r\\n``.

    `requests` counts accepted connections. TLS when `certs` is given.
    """

    kind = "tcp"

    def __init__(
        self,
        *,
        link: str,
        node: str,
        banner: bytes = b"",
        certs: CertAuthority | None = None,
        mode: Mode = Mode.HEALTHY,
    ) -> None:
        self._certs = certs
        super().__init__(link=link, node=node, mode=mode)
        self.banner = banner
        self._transports: set[asyncio.Transport] = set()

    @property
    def tls(self) -> bool:
        return self._certs is not None

    @property
    def modes(self) -> frozenset[Mode]:
        return _PLAIN_MODES | TLS_MODES if self.tls else _PLAIN_MODES

    @property
    def scheme(self) -> str:
        return "tls" if self.tls else "tcp"

    def _tls_context(self, mode: Mode) -> ssl.SSLContext | None:
        if self._certs is None or mode not in _CERT_FOR_MODE:
            return None
        return self._certs.server_context(_CERT_FOR_MODE[mode])

    def _protocol_factory(self) -> Callable[[], asyncio.BaseProtocol]:
        return lambda: _TcpPeer(self)

    def _drop_connections(self) -> None:
        for transport in list(self._transports):
            transport.abort()

    async def _shutdown(self) -> None:
        pass  # connections are plain callbacks: dropping them left nothing running

    def _connected(self, transport: asyncio.Transport) -> None:
        self._count_request()
        self._transports.add(transport)
        mode = self._mode
        if self._stopping or mode in (Mode.REFUSING, Mode.RESET):
            reset_connection(transport)
        elif mode is Mode.GARBAGE:
            transport.write(GARBAGE_BYTES)
            transport.close()
        elif mode in _TALKING and self.banner:
            transport.write(self.banner)

    def _disconnected(self, transport: asyncio.Transport) -> None:
        self._transports.discard(transport)

    def _talking(self) -> bool:
        return self._mode in _TALKING


class _TcpPeer(asyncio.Protocol):
    """One accepted connection; plain callbacks, so no task can outlive the node."""

    def __init__(self, node: SimTcpNode) -> None:
        self._node = node
        self._transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._node._connected(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None or not self._node._talking():
            return  # hanging: swallow everything, answer nothing
        *lines, rest = (self._buffer + data).split(b"\n")
        # A client that never sends a newline must not grow the buffer forever.
        self._buffer = rest[-_MAX_LINE:]
        for line in lines:
            if line.rstrip(b"\r") == b"PING":
                self._transport.write(b"+PONG\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._node._disconnected(self._transport)
            self._transport = None
