"""One connection as the protocol presets see it: bounded reads, marked phases, a goodbye.

Every byte a peer sends counts against the check's ``max_read_bytes``, so a peer that
declares a huge length or never ends a line costs a bounded amount of memory and ends
in a clear ``protocol`` error instead of a hang or a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from config.checks import AddressNode
from config.kinds.tcp import TcpCheck
from core.errors import ErrorType, ProbeFailure
from probes.base import ProbeContext, attempt_marks
from probes.net import start_tls


class Wire:
    """The stream of one attempt, spoken by one preset (``name`` is shown in errors)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        name: str,
        check: TcpCheck,
        node: AddressNode,
        ctx: ProbeContext,
    ) -> None:
        self.name = name
        self.check = check
        self.node = node
        self._reader = reader
        self._writer = writer
        self.ctx = ctx
        self._marks = attempt_marks()
        self._buffer = b""
        self._received = 0  # bytes taken from the socket, against max_read_bytes

    def mark(self, phase: str) -> None:
        """Record a phase boundary once ("sent", "first_byte", "end")."""
        self._marks.setdefault(phase, self.ctx.clock.monotonic())

    async def send(self, data: bytes) -> None:
        self.mark("sent")
        self._writer.write(data)
        await self._writer.drain()

    async def read_exactly(self, count: int, what: str) -> bytes:
        """``count`` bytes of ``what``; a close before them is half a message."""
        if count > self.check.max_read_bytes - self._received + len(self._buffer):
            raise ProbeFailure(
                ErrorType.PROTOCOL,
                f"{self.name}: the {what} would take {count} bytes, more than max_read_bytes "
                f"({self.check.max_read_bytes}) allows: not {self.name}, or raise max_read_bytes",
            )
        while len(self._buffer) < count:
            await self._fill(what, len(self._buffer), count)
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    async def read_line(self, what: str) -> bytes:
        """One line up to and including its LF (within max_read_bytes)."""
        while (end := self._buffer.find(b"\n")) < 0:
            if self._received >= self.check.max_read_bytes:
                raise ProbeFailure(
                    ErrorType.PROTOCOL,
                    f"{self.name}: no complete {what} in the first "
                    f"{self.check.max_read_bytes} bytes (max_read_bytes)",
                )
            await self._fill(what, len(self._buffer), None)
        line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
        return line

    async def _fill(self, what: str, have: int, want: int | None) -> None:
        chunk = await self._reader.read(self.check.max_read_bytes - self._received)
        if not chunk:
            if self._received == 0:
                raise ProbeFailure(
                    ErrorType.PROTOCOL, f"{self.name}: peer closed the connection without a reply"
                )
            if want is not None:
                cut = f"after {have} of {want} bytes of the {what}"
            else:  # a line: count everything the peer said, lines before it included
                cut = f"after {self._received} bytes, before a complete {what}"
            raise ProbeFailure(ErrorType.PROTOCOL, f"{self.name}: peer closed the connection {cut}")
        self.mark("first_byte")
        self._received += len(chunk)
        self._buffer += chunk

    async def start_tls(self, tls: ssl.SSLContext) -> None:
        """Switch this stream to TLS (a protocol's own upgrade; see postgres)."""
        if self._buffer:  # bytes after the "yes" would be injected plaintext (CVE-2021-23222)
            raise ProbeFailure(
                ErrorType.PROTOCOL, f"{self.name}: unencrypted bytes arrived before TLS started"
            )
        options = self.check.tls
        server_name = (options.server_name if options else None) or self.node.host
        await start_tls(self._writer, tls, server_name, self.node.address, self.ctx)

    async def goodbye(self, data: bytes) -> None:
        """A polite last word (QUIT): sent without waiting for its answer; a peer that
        is already gone (reset, or a TLS session it tore down) changes nothing, the
        attempt has its result."""
        self.mark("end")
        with contextlib.suppress(OSError):
            self._writer.write(data)
            await self._writer.drain()
