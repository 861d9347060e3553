"""``kind: tcp`` with ``dialogue:``: send and expect in turn (blackbox_exporter's
query_response), with at most one STARTTLS upgrade, judged as ``kind: tls`` judges.

An expect reads lines (up to LF; matched without their CR LF) and passes over those
that do not match, as blackbox_exporter does: ``^250 `` waits past the ``250-`` lines
of an SMTP multi-line reply. Lines, not the bytes so far, because a pattern that could
match a line's first half would leave its other half to the next step and capture a
cut-off value. An unterminated last line is matched only when the peer closes after it.
Each expect looks at no more than ``max_read_bytes``, so a chatty or hostile peer costs
a bounded amount of memory.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any

from config.checks import AddressNode
from config.kinds.tcp import DialogueStep, TcpCheck
from core.errors import ErrorType, ProbeFailure
from probes.base import Observation, ProbeContext, attempt_marks
from probes.net import os_failure, printable, start_tls
from probes.tls_common import inspect_certificate, ssl_failure

_SHOWN = 120  # how much of what an expect read goes into its failure message


async def talk(
    check: TcpCheck,
    node: AddressNode,
    ctx: ProbeContext,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> Observation:
    return await _Dialogue(check, node, ctx, reader, writer).run()


class _Dialogue:
    def __init__(
        self,
        check: TcpCheck,
        node: AddressNode,
        ctx: ProbeContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._check = check
        self._node = node
        self._ctx = ctx
        self._reader = reader
        self._writer = writer
        self._marks = attempt_marks()
        self._buffer = b""  # read from the socket, not yet taken as a line
        self._captured: dict[str, bytes] = {}
        self._details: dict[str, Any] = {}
        self._warnings: tuple[str, ...] = ()

    async def run(self) -> Observation:
        assert self._check.dialogue is not None
        self._mark("sent")  # the server may speak first: from here on it is its turn
        for index, step in enumerate(self._check.dialogue):
            try:
                await self._step(index, step)
            except ProbeFailure as failure:
                raise self._with_details(failure) from None
            except ssl.SSLError as exc:  # on the upgraded connection, after its handshake
                broken = ssl_failure(exc, what=f"TLS failed at dialogue[{index}]")
                raise self._with_details(broken) from None
            except OSError as exc:
                # asyncio's own "Connection lost" carries no errno: a reset all the same.
                kind = ErrorType.CONNECTION_RESET if isinstance(exc, ConnectionError) else None
                lost = os_failure(
                    exc, self._node.address, during=f"at dialogue[{index}]", kind=kind
                )
                raise self._with_details(lost) from None
        self._marks.waiting_for = None
        self._mark("end")
        if self._captured:
            self._details["captured"] = {k: printable(v) for k, v in self._captured.items()}
        return Observation(details=self._details, warnings=self._warnings)

    async def _step(self, index: int, step: DialogueStep) -> None:
        if step.send is not None:
            self._waiting(index, "the peer to take what is sent")
            self._writer.write(step.send.render(self._captured))
            await self._writer.drain()
        elif step.expect is not None:
            await self._expect(index, step.expect)
        else:
            await self._starttls(index)

    async def _expect(self, index: int, pattern: re.Pattern[bytes]) -> None:
        shown = f"/{printable(pattern.pattern)}/"
        self._waiting(index, f"a line matching {shown}")
        limit = self._check.max_read_bytes
        too_much = f"in the first {limit} bytes (max_read_bytes)"
        seen = b""  # the lines this step passed over, for its failure message
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
            elif len(seen) + len(self._buffer) >= limit:
                raise self._no_match(index, shown, seen + self._buffer, too_much)
            elif chunk := await self._reader.read(limit - len(seen) - len(self._buffer)):
                self._mark("first_byte")
                self._buffer += chunk
                continue
            elif self._buffer:
                line, self._buffer = self._buffer, b""  # the peer's last words, unterminated
            else:
                raise self._closed(index, shown, seen)
            seen += line
            match = pattern.search(line.removesuffix(b"\n").removesuffix(b"\r"))
            if match is not None:
                # An optional group that took no part is an empty value, as re.sub has it.
                self._captured |= {k: v or b"" for k, v in match.groupdict().items()}
                self._details["reply"] = printable(line.rstrip(b"\r\n"))
                return
            if len(seen) >= limit:
                raise self._no_match(index, shown, seen, too_much)

    async def _starttls(self, index: int) -> None:
        self._waiting(index, "the TLS handshake")
        if self._buffer:
            # Bytes the peer sent after its "go ahead" would be read as if they had come
            # over TLS: the STARTTLS command injection of CVE-2011-0411.
            raise ProbeFailure(
                ErrorType.PROTOCOL,
                f"dialogue[{index}]: unencrypted bytes arrived before TLS started: "
                f"'{printable(self._buffer)}'",
            )
        options = self._check.tls
        server_name = (options.server_name if options else None) or self._node.host
        tls = self._ctx.ssl_context(options)
        await start_tls(self._writer, tls, server_name, self._node.address, self._ctx)
        ssl_object = self._writer.get_extra_info("ssl_object")
        self._details |= {"tls_version": ssl_object.version(), "tls_cipher": ssl_object.cipher()[0]}
        details, warnings = inspect_certificate(
            ssl_object.getpeercert(), options, self._ctx.clock.now()
        )
        self._details |= details
        self._warnings += warnings

    def _no_match(self, index: int, shown: str, seen: bytes, where: str) -> ProbeFailure:
        return ProbeFailure(
            ErrorType.ASSERTION,
            f"dialogue[{index}]: no line matches {shown} {where}: "
            f"'{printable(seen, limit=_SHOWN)}'",
        )

    def _closed(self, index: int, shown: str, seen: bytes) -> ProbeFailure:
        if seen:
            return self._no_match(index, shown, seen, "before the peer closed the connection")
        if "first_byte" not in self._marks:  # as a plain tcp check says it
            return ProbeFailure(ErrorType.PROTOCOL, "peer closed the connection without a reply")
        return ProbeFailure(
            ErrorType.CONNECTION_RESET,
            f"connection closed by {self._node.address} at dialogue[{index}], before a line "
            f"matching {shown}",
        )

    def _with_details(self, failure: ProbeFailure) -> ProbeFailure:
        """A failure after STARTTLS still reports the certificate it saw."""
        failure.details = {**self._details, **failure.details}
        return failure

    def _waiting(self, index: int, what: str) -> None:
        self._marks.waiting_for = f"dialogue[{index}] ({what})"

    def _mark(self, phase: str) -> None:
        self._marks.setdefault(phase, self._ctx.clock.monotonic())
