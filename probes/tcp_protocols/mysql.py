"""MySQL / MariaDB: the server speaks first, with its handshake (or an error packet).

Nothing is sent: a handshake response would have to name a user. Closing after the
greeting is what a TCP load-balancer check does; see the docs on max_connect_errors.
"""

from __future__ import annotations

from core.errors import ErrorType, ProbeFailure
from probes.base import Observation
from probes.net import printable
from probes.tcp_protocols.wire import Wire

_HANDSHAKE_V10 = 0x0A
_ERROR_PACKET = 0xFF
_CLIENT_SSL = 0x0800  # capability flag: the server accepts an SSL request
# Error packets that mean "alive, but taking no connections now": the apps see it too.
_UNAVAILABLE = {1040: "too many connections", 1053: "server shutdown in progress"}
_HOST_BLOCKED = 1129  # our own aborted greetings can cause it; still an answering server
# MariaDB prefixes its real version with this so that old replication clients cope.
_MARIADB_PREFIX = "5.5.5-"


async def talk(wire: Wire) -> Observation:
    wire.mark("sent")  # the server talks first: waiting starts at once
    header = await wire.read_exactly(4, "packet header")
    length = int.from_bytes(header[:3], "little")
    if length == 0:
        raise ProbeFailure(ErrorType.PROTOCOL, "mysql: empty greeting packet")
    payload = await wire.read_exactly(length, "greeting")
    wire.mark("end")
    if payload[0] == _ERROR_PACKET:
        return _error_packet(payload)
    if payload[0] != _HANDSHAKE_V10:
        raise ProbeFailure(
            ErrorType.PROTOCOL,
            f"mysql: greeting starts with byte 0x{payload[0]:02x}, not a v10 handshake",
        )
    return Observation(details=_handshake(payload))


def _handshake(payload: bytes) -> dict[str, object]:
    end = payload.find(b"\x00", 1)
    if end < 0:
        raise ProbeFailure(ErrorType.PROTOCOL, "mysql: server version is not terminated")
    version = printable(payload[1:end])
    if version.startswith(_MARIADB_PREFIX) and "MariaDB" in version:
        version = version.removeprefix(_MARIADB_PREFIX)
    details: dict[str, object] = {"server_version": version}
    # After the version: connection id (4), auth data (8), filler (1), capabilities (2).
    flags_at = end + 1 + 4 + 8 + 1
    if len(payload) >= flags_at + 2:
        flags = int.from_bytes(payload[flags_at : flags_at + 2], "little")
        details["tls_offered"] = bool(flags & _CLIENT_SSL)
    plugin = _auth_plugin(payload, flags_at)
    if plugin:
        details["auth_plugin"] = plugin
    return details


def _auth_plugin(payload: bytes, flags_at: int) -> str:
    # charset (1), status (2), upper capabilities (2), auth data length (1), reserved (10),
    # then the rest of the auth data (at least 13 bytes), then the plugin name. A greeting
    # without them (old servers) simply has no plugin to report.
    data_len_at = flags_at + 2 + 1 + 2 + 2
    if len(payload) <= data_len_at:
        return ""
    rest_at = data_len_at + 1 + 10 + max(13, payload[data_len_at] - 8)
    name = payload[rest_at:].split(b"\x00", 1)[0]
    return printable(name) if name.isascii() else ""


def _error_packet(payload: bytes) -> Observation:
    if len(payload) < 3:
        raise ProbeFailure(ErrorType.PROTOCOL, "mysql: error packet without an error code")
    code = int.from_bytes(payload[1:3], "little")
    text = payload[3:]
    if text.startswith(b"#"):  # "#" + SQLSTATE, when the server sends one
        text = text[6:]
    message = printable(text, limit=200)
    if code in _UNAVAILABLE:
        raise ProbeFailure(
            ErrorType.UNAVAILABLE,
            f"mysql: {_UNAVAILABLE[code]} (error {code}: {message})",
            details={"error_code": code},
        )
    details: dict[str, object] = {"error_code": code, "error": message}
    # The server answered in its own protocol: alive, though it refuses this host.
    warnings: tuple[str, ...] = ()
    if code == _HOST_BLOCKED:
        warnings = (
            f"mysql blocks this probe's host ({message}); raise max_connect_errors "
            "on the server and FLUSH HOSTS",
        )
    return Observation(details=details, warnings=warnings)
