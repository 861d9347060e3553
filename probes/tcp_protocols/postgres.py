"""PostgreSQL: ask for SSL, then start a session as a user that needs no password to ask.

As pg_isready does, the answer to the startup message is what counts: any authentication
request, or an error about this user, proves a server that accepts connections. Only
"starting up / shutting down / in recovery" (57P03) and "too many clients" (53300)
mean it does not, and those are down (``unavailable``). No password is ever sent: at
an authentication request the probe just closes, which the server does not log.
"""

from __future__ import annotations

import functools
import ssl
import struct

from core.errors import ErrorType, ProbeFailure
from probes.base import Observation
from probes.net import printable
from probes.tcp_protocols.wire import Wire

_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
_PROTOCOL_3_0 = 196608
# A role name a DBA can recognise in the log (and give a pg_hba line of its own).
PROBE_USER = "hotline_probe"
_TERMINATE = b"X" + struct.pack("!i", 4)
_AUTH_METHODS = {
    0: "trust",  # AuthenticationOk: no authentication asked
    2: "kerberos-v5",
    3: "password",
    5: "md5",
    7: "gss",
    9: "sspi",
    10: "sasl",
}
_UNAVAILABLE = {
    "57P03": "cannot accept connections now (starting up, shutting down or in recovery)",
    "53300": "too many connections",
}
_MAX_MESSAGES = 64  # after AuthenticationOk: parameter statuses, then ReadyForQuery


async def talk(wire: Wire) -> Observation:
    await wire.send(_SSL_REQUEST)
    answer = await wire.read_exactly(1, "answer to SSLRequest")
    details: dict[str, object] = {}
    if answer == b"E":  # a server refusing before any session answers with an error
        return _error(await _body(wire, b"E"), details)
    if answer not in (b"S", b"N"):
        raise ProbeFailure(
            ErrorType.PROTOCOL, f"postgres: answer to SSLRequest is {answer!r}, not S or N"
        )
    details["tls_offered"] = answer == b"S"  # the same name as mysql's
    if answer == b"S":
        await wire.start_tls(_tls_context(wire))
    await wire.send(_startup_message())
    kind, body = await _message(wire)
    if kind == b"v":  # NegotiateProtocolVersion: it speaks an older minor version; fine
        kind, body = await _message(wire)
    if kind == b"E":
        return _error(body, details)
    if kind != b"R" or len(body) < 4:
        raise ProbeFailure(
            ErrorType.PROTOCOL, f"postgres: expected an authentication request, got {kind!r}"
        )
    code = int.from_bytes(body[:4], "big", signed=True)
    details["auth_method"] = _AUTH_METHODS.get(code, f"code {code}")
    if code == 10:
        details["sasl_mechanisms"] = [printable(m) for m in body[4:].split(b"\x00") if m]
    if code == 0:
        return await _session_opened(wire, details)
    wire.mark("end")
    return Observation(details=details)


async def _session_opened(wire: Wire, details: dict[str, object]) -> Observation:
    """Trust let us in: note the version from the status messages, then say goodbye."""
    for _ in range(_MAX_MESSAGES):
        kind, body = await _message(wire)
        if kind == b"S":
            name, _, value = body.partition(b"\x00")
            if name == b"server_version":
                details["server_version"] = printable(value.rstrip(b"\x00"))
        elif kind == b"E":
            return _error(body, details)
        elif kind == b"Z":
            break
    await wire.goodbye(_TERMINATE)
    return Observation(details=details)


async def _message(wire: Wire) -> tuple[bytes, bytes]:
    kind = await wire.read_exactly(1, "message type")
    return kind, await _body(wire, kind)


async def _body(wire: Wire, kind: bytes) -> bytes:
    length = int.from_bytes(await wire.read_exactly(4, "message length"), "big", signed=True)
    if length < 4:
        raise ProbeFailure(
            ErrorType.PROTOCOL, f"postgres: message {kind!r} declares a length of {length}"
        )
    return await wire.read_exactly(length - 4, f"message {kind!r}")


def _error(body: bytes, details: dict[str, object]) -> Observation:
    fields = {chunk[:1]: printable(chunk[1:], limit=200) for chunk in body.split(b"\x00") if chunk}
    sqlstate, message = fields.get(b"C", "?"), fields.get(b"M", "(no message)")
    if sqlstate in _UNAVAILABLE:
        raise ProbeFailure(
            ErrorType.UNAVAILABLE,
            f"postgres: {_UNAVAILABLE[sqlstate]} ({sqlstate}: {message})",
            details={**details, "sqlstate": sqlstate},
        )
    # Refused for this user or host (28000, 28P01, 3D000 ...): the server is answering.
    return Observation(details={**details, "sqlstate": sqlstate, "error": message})


def _startup_message() -> bytes:
    params = b"".join(
        key + b"\x00" + value.encode() + b"\x00"
        for key, value in ((b"user", PROBE_USER), (b"application_name", "hotline-probe"))
    )
    body = struct.pack("!i", _PROTOCOL_3_0) + params + b"\x00"
    return struct.pack("!i", len(body) + 4) + body


def _tls_context(wire: Wire) -> ssl.SSLContext:
    """The check's ``tls:`` block when it has one; otherwise encryption without
    verification, as libpq's default sslmode=prefer does: liveness is the question."""
    if wire.check.tls is not None:
        return wire.ctx.ssl_context(wire.check.tls)
    return _unverified_context()


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
