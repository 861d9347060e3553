"""``kind: tcp``: connect, optionally send bytes and match the reply (a middleware banner)."""

from __future__ import annotations

import asyncio
import re

from config.models import AddressNode, TcpCheck
from probes.base import ErrorType, Observation, ProbeContext, ProbeFailure, attempt_marks
from probes.net import close, open_stream


async def probe(check: TcpCheck, node: AddressNode, ctx: ProbeContext) -> Observation:
    reader, writer = await open_stream(node.host, node.port, ctx)
    marks = attempt_marks()
    details: dict[str, object] = {}
    try:
        marks["sent"] = ctx.clock.monotonic()
        if check.payload:
            writer.write(check.payload)
            await writer.drain()
        if check.expect.reply_regex is not None:
            reply = await _read_until(reader, check.expect.reply_regex, check.max_read_bytes, ctx)
            marks["end"] = ctx.clock.monotonic()
            details["reply"] = printable(reply)
    except ConnectionError as exc:
        raise ProbeFailure(
            ErrorType.CONNECTION_RESET, f"connection lost during the exchange: {exc}"
        ) from None
    finally:
        close(writer)
    return Observation(details=details)


async def _read_until(
    reader: asyncio.StreamReader, pattern: re.Pattern[bytes], limit: int, ctx: ProbeContext
) -> bytes:
    received = b""
    while len(received) < limit:
        chunk = await reader.read(limit - len(received))
        if not chunk:
            if not received:
                raise ProbeFailure(ErrorType.PROTOCOL, "peer closed the connection without a reply")
            break
        if not received:
            attempt_marks()["first_byte"] = ctx.clock.monotonic()
        received += chunk
        if pattern.search(received):
            return received
    raise ProbeFailure(
        ErrorType.ASSERTION,
        f"reply '{printable(received)}' does not match /{printable(pattern.pattern)}/",
    )


def printable(data: bytes, limit: int = 80) -> str:
    """Peer bytes made safe for a log line: control characters escaped, length capped."""
    text = data[:limit].decode("utf-8", errors="backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text + ("..." if len(data) > limit else "")
