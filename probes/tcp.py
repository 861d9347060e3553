"""``kind: tcp``: connect, optionally send bytes and match the reply (a middleware banner)."""

from __future__ import annotations

import asyncio
import re

from config.models import AddressNode, TcpCheck
from probes.base import ErrorType, Observation, ProbeContext, ProbeFailure
from probes.net import close, open_stream, phases


async def probe(check: TcpCheck, node: AddressNode, ctx: ProbeContext) -> Observation:
    marks: dict[str, float] = {}
    reader, writer = await open_stream(node.host, node.port, ctx, marks)
    try:
        marks["sent"] = ctx.clock.monotonic()
        if check.payload:
            writer.write(check.payload)
            await writer.drain()
        details: dict[str, object] = {}
        if check.expect.reply_regex is not None:
            reply = await _read_until(reader, check.expect.reply_regex, check.max_read_bytes, marks)
            marks["reply"] = ctx.clock.monotonic()
            details["reply"] = printable(reply)
    except ConnectionError as exc:
        raise ProbeFailure(
            ErrorType.CONNECTION_RESET,
            f"connection lost during the exchange: {exc}",
            phases=phases(marks),
        ) from None
    finally:
        close(writer)
    return Observation(phases=phases(marks), details=details)


async def _read_until(
    reader: asyncio.StreamReader, pattern: re.Pattern[bytes], limit: int, marks: dict[str, float]
) -> bytes:
    received = b""
    while len(received) < limit:
        chunk = await reader.read(limit - len(received))
        if not chunk:
            if not received:
                raise ProbeFailure(
                    ErrorType.PROTOCOL,
                    "peer closed the connection without a reply",
                    phases=phases(marks),
                )
            break
        received += chunk
        if pattern.search(received):
            return received
    raise ProbeFailure(
        ErrorType.ASSERTION,
        f"reply {printable(received)!r} does not match /{printable(pattern.pattern)}/",
        phases=phases(marks),
    )


def printable(data: bytes, limit: int = 80) -> str:
    """Peer bytes made safe for a log line: control characters escaped, length capped."""
    text = data[:limit].decode("utf-8", errors="backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text + ("..." if len(data) > limit else "")
