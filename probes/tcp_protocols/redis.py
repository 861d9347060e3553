"""Redis: PING. PONG is alive, and so is an error about authentication or access:
only a server that can answer says "you must log in first"."""

from __future__ import annotations

from core.errors import ErrorType, ProbeFailure
from probes.base import Observation
from probes.net import printable
from probes.tcp_protocols.wire import Wire

# Error prefixes that mean "alive, but not serving commands now": the apps see it too.
_UNAVAILABLE = {
    "LOADING": "loading its dataset into memory",
    "BUSY": "busy running a script",
    "MASTERDOWN": "a replica that lost its primary",
}


async def talk(wire: Wire) -> Observation:
    await wire.send(b"PING\r\n")
    line = await wire.read_line("reply to PING")
    wire.mark("end")
    if not line.endswith(b"\r\n") or line[:1] not in (b"+", b"-"):
        raise ProbeFailure(ErrorType.PROTOCOL, f"redis: '{printable(line)}' is not a reply to PING")
    reply = printable(line[1:-2], limit=200)
    if line.startswith(b"-"):
        prefix = reply.split(" ", 1)[0]
        if prefix in _UNAVAILABLE:
            raise ProbeFailure(ErrorType.UNAVAILABLE, f"redis: {_UNAVAILABLE[prefix]} ({reply})")
    # NOAUTH (a password is set), DENIED (protected mode) or PONG: the server answers.
    await wire.goodbye(b"QUIT\r\n")
    return Observation(details={"reply": reply})
