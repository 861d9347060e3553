"""SMTP: the server's greeting, then QUIT. No EHLO: the greeting answers the question."""

from __future__ import annotations

import re

from core.errors import ErrorType, ProbeFailure
from probes.base import Observation
from probes.net import printable
from probes.tcp_protocols.wire import Wire

# RFC 5321 4.2: each line is the code, "-" on all lines but the last, and optional text:
# a bare "220" is a complete greeting.
_REPLY_LINE = re.compile(rb"^(\d{3})(?:([ -])(.*?))?\r?\n$", re.DOTALL)
_READY = "220"
_UNAVAILABLE = "421"  # RFC 5321 4.3.2: "service not available, closing channel"
_NO_SERVICE = "554"  # RFC 5321 3.1: "no SMTP service here", often for this client only


async def talk(wire: Wire) -> Observation:
    wire.mark("sent")  # the server talks first
    code, text = await _reply(wire)
    wire.mark("end")
    if code == _UNAVAILABLE:
        raise ProbeFailure(ErrorType.UNAVAILABLE, f"smtp: service not available: {code} {text}")
    if code not in (_READY, _NO_SERVICE):
        raise ProbeFailure(ErrorType.PROTOCOL, f"smtp: greeting code {code} ({text}), expected 220")
    await wire.goodbye(b"QUIT\r\n")
    greeting = f"{code} {text}".rstrip()
    details = {"greeting": greeting}
    if code == _NO_SERVICE:
        return Observation(details=details, warnings=(f"smtp refuses this host: {greeting}",))
    return Observation(details=details)


async def _reply(wire: Wire) -> tuple[str, str]:
    """A (possibly multi-line) reply: its code and its first line's text."""
    first: tuple[str, str] | None = None
    while True:
        line = await wire.read_line("greeting")
        match = _REPLY_LINE.match(line)
        if match is None:
            raise ProbeFailure(
                ErrorType.PROTOCOL, f"smtp: '{printable(line)}' is not an SMTP reply line"
            )
        code, more = match.group(1).decode(), match.group(2) == b"-"
        if first is None:
            first = code, printable(match.group(3) or b"", limit=200)
        elif code != first[0]:
            raise ProbeFailure(
                ErrorType.PROTOCOL, f"smtp: reply changes its code from {first[0]} to {code}"
            )
        if not more:
            return first
