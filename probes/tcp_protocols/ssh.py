"""SSH: the server's identification string (RFC 4253 4.2), e.g. the jump host's banner."""

from __future__ import annotations

from core.errors import ErrorType, ProbeFailure
from probes.base import Observation
from probes.net import printable
from probes.tcp_protocols.wire import Wire

# Sent back so that sshd sees a client that went away, not a broken handshake.
_IDENTIFICATION = b"SSH-2.0-hotline_probe\r\n"
_MAX_LINE = 255  # RFC 4253: the identification line, CR LF included


async def talk(wire: Wire) -> Observation:
    wire.mark("sent")  # the server talks first
    # The server may send other lines before its identification (a legal notice).
    while not (line := await wire.read_line("identification string")).startswith(b"SSH-"):
        pass
    wire.mark("end")
    text = line.rstrip(b"\r\n")
    if len(line) > _MAX_LINE:
        raise ProbeFailure(
            ErrorType.PROTOCOL,
            f"ssh: identification line of {len(line)} bytes, more than {_MAX_LINE}",
        )
    ident, _, comments = text.partition(b" ")
    parts = ident.split(b"-", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ProbeFailure(
            ErrorType.PROTOCOL, f"ssh: '{printable(text)}' is not SSH-version-software"
        )
    details: dict[str, object] = {
        "banner": printable(text, limit=_MAX_LINE),
        "protocol_version": printable(parts[1]),
        "software_version": printable(parts[2]),
    }
    if comments:
        details["comments"] = printable(comments)
    await wire.goodbye(_IDENTIFICATION)
    warnings: tuple[str, ...] = ()
    if parts[1] not in (b"2.0", b"1.99"):
        warnings = (f"ssh server speaks only protocol {details['protocol_version']}",)
    return Observation(details=details, warnings=warnings)
