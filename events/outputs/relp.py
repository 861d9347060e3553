"""RELP, rsyslog's Reliable Event Logging Protocol: syslog with an acknowledgement.

Plain TCP syslog cannot tell which of the last messages a stopping collector read. RELP
can: the collector answers every message, and a message counts as delivered only when
its answer arrives. What was not answered is sent again after reconnecting; what was
answered never is. rsyslog speaks it with imrelp (Debian's rsyslog-relp).

Frames both ways: ``TXNR SP COMMAND SP DATALEN [SP DATA] LF``; DATALEN counts DATA's
bytes and is 0 (with no SP DATA) when there is none. Transaction numbers run from 1 to
999,999,999 and wrap to 1. The session opens with ``open`` offering ``commands=syslog``,
sends ``syslog`` frames, each answered by ``rsp`` with ``200 OK`` (or an error code),
and ends with ``close``. The collector may announce its own end with ``serverclose``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

_MAX_TXNR = 999_999_999
_MAX_FRAME = 128 * 1024  # a collector's answer is a few bytes; this bounds a hostile one
OFFERS = b"relp_version=0\nrelp_software=hotline-probe\ncommands=syslog"


class RelpError(ConnectionError):
    """The session broke; ``acked`` messages of the batch were answered before it did."""

    def __init__(self, message: str, acked: int = 0, *, refused: bool = False) -> None:
        super().__init__(message)
        self.acked = acked
        self.refused = refused  # the message after the acked ones was refused, not lost


def frame(txnr: int, command: bytes, data: bytes = b"") -> bytes:
    if not data:
        return b"%d %b 0\n" % (txnr, command)
    return b"%d %b %d %b\n" % (txnr, command, len(data), data)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """One frame from the collector: (txnr, command, data)."""
    try:
        head = await reader.readuntil(b" ")
        command = await reader.readuntil(b" ")
        # DATALEN ends at SP (data follows) or at LF (no data).
        length_text = b""
        while True:
            char = await reader.readexactly(1)
            if char in b" \n":
                break
            length_text += char
            if len(length_text) > 9:
                raise RelpError("RELP frame with a DATALEN of more than 9 digits")
        txnr, length = int(head[:-1]), int(length_text or b"0")
        if length > _MAX_FRAME:
            raise RelpError(f"RELP frame of {length} bytes from the collector")
        data = b""
        if char == b" ":
            data = await reader.readexactly(length)
            if await reader.readexactly(1) != b"\n":
                raise RelpError("RELP frame without its LF trailer")
        return txnr, command[:-1], data
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise RelpError("the collector closed the RELP session") from exc
    except ValueError as exc:
        raise RelpError(f"garbled RELP frame from the collector: {exc}") from exc


class RelpSession:
    """One RELP connection. ``send`` returns once every message is answered."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self._txnr = 0
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._reader_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.why = ""

    def _next(self) -> int:
        self._txnr = self._txnr % _MAX_TXNR + 1
        return self._txnr

    async def open(self) -> None:
        self._reader_task = asyncio.create_task(self._read_answers())
        txnr = self._next()
        answer = self._expect(txnr)
        self.writer.write(frame(txnr, b"open", OFFERS))
        status = await asyncio.wait_for(answer, self.timeout)
        if not status:
            raise RelpError(self.why or "the collector closed the RELP session")
        if not status.startswith(b"200"):
            raise RelpError(f"the collector refused the RELP session: {_text(status)}")
        if b"commands=" in status and b"syslog" not in status.split(b"commands=", 1)[1]:
            raise RelpError("the collector does not accept syslog messages over RELP")

    async def send(self, messages: Sequence[bytes]) -> int:
        """Send, then wait for every answer; RelpError says how many were answered."""
        answers = []
        for message in messages:
            txnr = self._next()
            answers.append(self._expect(txnr))
            self.writer.write(frame(txnr, b"syslog", message))
        acked = 0
        try:
            await asyncio.wait_for(self.writer.drain(), self.timeout)
            for answer in answers:
                status = await asyncio.wait_for(answer, self.timeout)
                if not status:
                    raise RelpError(self.why or "the RELP session closed", acked)
                if not status.startswith(b"200"):
                    raise RelpError(
                        f"the collector refused a message: {_text(status)}", acked, refused=True
                    )
                acked += 1
        except RelpError as exc:
            exc.acked = acked
            raise
        except (OSError, TimeoutError) as exc:
            raise RelpError(self.why or _describe(exc, self.timeout), acked) from exc
        finally:
            for answer in answers:
                answer.cancel()
        return acked

    def _expect(self, txnr: int) -> asyncio.Future[bytes]:
        if self.closed.is_set():
            raise RelpError(self.why or "the RELP session is closed")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[txnr] = future
        future.add_done_callback(lambda _: self._waiting.pop(txnr, None))
        return future

    async def _read_answers(self) -> None:
        try:
            while True:
                txnr, command, data = await read_frame(self.reader)
                if command == b"serverclose":
                    raise RelpError("the collector ended the RELP session (serverclose)")
                if command != b"rsp":
                    raise RelpError(f"unexpected RELP command {_text(command)!r}")
                future = self._waiting.get(txnr)
                if future is not None and not future.done():
                    future.set_result(data)
        except (RelpError, OSError) as exc:
            self.why = str(exc) or "the RELP session broke"
        finally:
            self.closed.set()
            for future in list(self._waiting.values()):
                if not future.done():
                    future.set_result(b"")  # "no answer": the waiter raises with self.why

    def abort(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        self.writer.transport.abort()

    async def close(self) -> None:
        """Say goodbye when the session still works; abort it either way."""
        if not self.closed.is_set():
            with contextlib.suppress(Exception):
                txnr = self._next()
                answer = self._expect(txnr)
                self.writer.write(frame(txnr, b"close"))
                await asyncio.wait_for(answer, 1.0)
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        self.writer.transport.abort()


def _text(data: bytes) -> str:
    return data[:200].decode("utf-8", "replace").replace("\n", " ")


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    return str(exc) or type(exc).__name__
