"""``kind: tcp``: connect, optionally send bytes and match the reply (a middleware banner),
speak a protocol preset (``protocol: mysql``, see probes/tcp_protocols/) or hold the
check's own dialogue (probes/tcp_dialogue.py)."""

from __future__ import annotations

import asyncio
import re
import ssl

from config.checks import AddressNode
from config.kinds.tcp import TcpCheck
from core.errors import ErrorType, ProbeFailure
from probes import tcp_dialogue
from probes.base import Observation, ProbeContext, attempt_marks
from probes.net import close, open_stream, os_failure, printable
from probes.tcp_protocols import CONVERSATIONS, Wire
from probes.tls_common import ssl_failure


async def probe(check: TcpCheck, node: AddressNode, ctx: ProbeContext) -> Observation:
    reader, writer = await open_stream(node.host, node.port, ctx)
    try:
        if check.protocol is not None:
            return await _converse(check, node, ctx, reader, writer)
        if check.dialogue is not None:
            return await tcp_dialogue.talk(check, node, ctx, reader, writer)
        return await _raw(check, ctx, reader, writer)
    except ssl.SSLError as exc:  # over a connection a preset upgraded (postgres)
        raise ssl_failure(exc, what="TLS failed during the exchange") from None
    except OSError as exc:  # reset, or unreachable or timed out mid-way (keepalive)
        # asyncio's own "Connection lost" carries no errno: a reset all the same.
        kind = ErrorType.CONNECTION_RESET if isinstance(exc, ConnectionError) else None
        raise os_failure(exc, node.address, during="during the exchange", kind=kind) from None
    finally:
        close(writer)


async def _converse(
    check: TcpCheck,
    node: AddressNode,
    ctx: ProbeContext,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> Observation:
    assert check.protocol is not None
    wire = Wire(reader, writer, name=check.protocol, check=check, node=node, ctx=ctx)
    seen = await CONVERSATIONS[check.protocol](wire)
    wire.mark("end")  # where a preset did not mark it sooner
    details = {"protocol": check.protocol, **seen.details}
    return Observation(phases=seen.phases, details=details, warnings=seen.warnings)


async def _raw(
    check: TcpCheck,
    ctx: ProbeContext,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> Observation:
    marks = attempt_marks()
    details: dict[str, object] = {}
    marks["sent"] = ctx.clock.monotonic()
    if check.payload:
        writer.write(check.payload)
        await writer.drain()
    if check.expect.reply_regex is not None:
        reply = await _read_until(reader, check.expect.reply_regex, check.max_read_bytes, ctx)
        marks["end"] = ctx.clock.monotonic()
        details["reply"] = printable(reply)
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
