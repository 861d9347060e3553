"""AMQP 0-9-1 (RabbitMQ): send the protocol header, read Connection.Start.

Connection.Start carries the broker's product, version and platform. There is no
polite way out before Connection.Start-Ok (which needs credentials), so the probe just
closes; RabbitMQ logs that as a client that closed during the handshake.
"""

from __future__ import annotations

from core.errors import ErrorType, ProbeFailure
from probes.base import Observation
from probes.net import printable
from probes.tcp_protocols.wire import Wire

_HEADER = b"AMQP\x00\x00\x09\x01"
_METHOD_FRAME = 1
_FRAME_END = 0xCE
_CONNECTION_START = (10, 10)  # class, method
# Server properties reported, under the names every preset uses ("version" is the
# server's version: server_version, as mysql and postgres report it).
_REPORTED = {
    "product": "product",
    "version": "server_version",
    "platform": "platform",
    "cluster_name": "cluster_name",
}
# Field-table value types with a fixed size; S, x, F and A carry a 32-bit length instead.
_FIXED = {
    **{b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"I": 4, b"i": 4, b"f": 4},
    **{b"l": 8, b"L": 8, b"d": 8, b"T": 8, b"D": 5, b"V": 0},
}
_SIZED = frozenset({b"S", b"x", b"F", b"A"})


async def talk(wire: Wire) -> Observation:
    await wire.send(_HEADER)
    head = await wire.read_exactly(7, "frame header")
    if head.startswith(b"AMQP"):  # it refuses our version and names the one it speaks
        offered = head[4:] + await wire.read_exactly(1, "protocol header")
        wire.mark("end")
        version = ".".join(str(b) for b in offered[1:])
        return Observation(
            details={"server_protocol": f"AMQP {version}"},
            warnings=(f"amqp server does not speak 0-9-1; it offers AMQP {version}",),
        )
    kind, channel = head[0], int.from_bytes(head[1:3], "big")
    size = int.from_bytes(head[3:7], "big")
    if kind != _METHOD_FRAME or channel != 0:
        raise ProbeFailure(
            ErrorType.PROTOCOL, f"amqp: first frame is type {kind} on channel {channel}"
        )
    payload = await wire.read_exactly(size + 1, "Connection.Start frame")
    wire.mark("end")
    if payload[-1] != _FRAME_END:
        raise ProbeFailure(ErrorType.PROTOCOL, "amqp: frame does not end with 0xCE")
    return Observation(details=_connection_start(payload[:-1]))


def _connection_start(payload: bytes) -> dict[str, object]:
    method = (int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big"))
    if len(payload) < 10 or method != _CONNECTION_START:
        raise ProbeFailure(
            ErrorType.PROTOCOL, f"amqp: first method is {method}, not Connection.Start"
        )
    # Connection.Start names major and minor only: 0-9 for every 0-9-1 broker.
    details: dict[str, object] = {"amqp_version": f"{payload[4]}-{payload[5]}"}
    table_length = int.from_bytes(payload[6:10], "big")
    table = payload[10 : 10 + table_length]
    if len(table) != table_length:
        raise ProbeFailure(ErrorType.PROTOCOL, "amqp: server-properties run past the frame")
    for name, value in _string_fields(table).items():
        if name in _REPORTED:
            details[_REPORTED[name]] = value
    return details


def _string_fields(table: bytes) -> dict[str, str]:
    """The top-level string values of an AMQP field table; nested ones are skipped."""
    found: dict[str, str] = {}
    at = 0
    while at < len(table):
        name_end = at + 1 + table[at]
        name, kind = table[at + 1 : name_end], table[name_end : name_end + 1]
        at = name_end + 1
        if not kind:
            raise ProbeFailure(ErrorType.PROTOCOL, "amqp: server-properties end inside a field")
        if kind in _FIXED:
            at += _FIXED[kind]
        elif kind in _SIZED and at + 4 <= len(table):
            length = int.from_bytes(table[at : at + 4], "big")
            if kind == b"S":
                found[printable(name)] = printable(table[at + 4 : at + 4 + length], limit=120)
            at += 4 + length
        else:
            raise ProbeFailure(
                ErrorType.PROTOCOL, f"amqp: server-properties field of unknown type {kind!r}"
            )
    if at != len(table):
        raise ProbeFailure(ErrorType.PROTOCOL, "amqp: server-properties run past their length")
    return found
