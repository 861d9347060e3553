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
Answers come in the order of the messages, which is what lets a batch of hundreds wait
on one future instead of one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Sequence

_MAX_TXNR = 999_999_999
_RSP_OK = re.compile(rb"(\d{1,9}) rsp 6 200 OK\n")
_MAX_FRAME = 128 * 1024  # a collector's answer is a few bytes; this bounds a hostile one
OFFERS = b"relp_version=0\nrelp_software=hotline-probe\ncommands=syslog"


class RelpError(ConnectionError):
    """The session broke; ``acked`` messages of the batch were answered before it did."""

    def __init__(self, message: str, acked: int = 0) -> None:
        super().__init__(message)
        self.acked = acked


def frame(txnr: int, command: bytes, data: bytes = b"") -> bytes:
    if not data:
        return b"%d %b 0\n" % (txnr, command)
    return b"%d %b %d %b\n" % (txnr, command, len(data), data)


def parse_frames(buffer: bytes | bytearray) -> tuple[list[tuple[int, bytes, bytes]], int]:
    """Complete frames at the start of ``buffer`` and the bytes they take; RelpError on
    bytes that cannot be RELP."""
    frames: list[tuple[int, bytes, bytes]] = []
    pos = 0
    end = len(buffer)
    while pos < end:
        if ok := _RSP_OK.match(buffer, pos):  # nearly every answer: "N rsp 6 200 OK\n"
            frames.append((int(ok.group(1)), b"rsp", b"200 OK"))
            pos = ok.end()
            continue
        first = buffer.find(b" ", pos, pos + 11)
        second = buffer.find(b" ", first + 1, first + 34) if first >= 0 else -1
        if first < 0 or second < 0:
            if end - pos > 44:  # longer than any txnr and command could be
                raise RelpError("garbled RELP frame from the collector")
            break
        digits = second + 1
        while digits < end and digits - second <= 10 and 48 <= buffer[digits] <= 57:
            digits += 1
        if digits >= end:
            break
        if digits == second + 1 or digits - second > 10:
            raise RelpError("garbled RELP frame from the collector (DATALEN)")
        try:
            txnr = int(buffer[pos:first])
        except ValueError:
            raise RelpError("garbled RELP frame from the collector (TXNR)") from None
        length = int(buffer[second + 1 : digits])
        if length > _MAX_FRAME:
            raise RelpError(f"RELP frame of {length} bytes from the collector")
        command = bytes(buffer[first + 1 : second])
        if buffer[digits] == 10 and length == 0:  # LF: no data
            frames.append((txnr, command, b""))
            pos = digits + 1
            continue
        if buffer[digits] != 32:
            raise RelpError("garbled RELP frame from the collector")
        stop = digits + 1 + length
        if stop >= end:
            break
        if buffer[stop] != 10:
            raise RelpError("RELP frame without its LF trailer")
        frames.append((txnr, command, bytes(buffer[digits + 1 : stop])))
        pos = stop + 1
    return frames, pos


class RelpSession:
    """One RELP connection. ``send`` returns once every message is answered."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self._txnr = 0
        self._outstanding: deque[int] = deque()
        self._done: asyncio.Future[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._last_answer = b""
        self.closed = asyncio.Event()
        self.why = ""
        self.progress = 0  # answered messages of the batch being sent
        self.refused = 0  # of them, refused by the collector
        self.refusal = ""  # the collector's words the last time it refused a message

    def _next(self) -> int:
        self._txnr = self._txnr % _MAX_TXNR + 1
        return self._txnr

    async def open(self) -> None:
        self._reader_task = asyncio.create_task(self._read_answers())
        txnr = self._next()
        await self._exchange([txnr], [frame(txnr, b"open", OFFERS)])
        status = self._last_answer
        if not status.startswith(b"200"):
            raise RelpError(f"the collector refused the RELP session: {_text(status)}")
        if b"commands=" in status and b"syslog" not in status.split(b"commands=", 1)[1]:
            raise RelpError("the collector does not accept syslog messages over RELP")

    async def send(self, messages: Sequence[bytes]) -> int:
        """Send, then wait for every answer; returns how many the collector refused.

        ``progress`` counts the answered messages as the answers come: when the session
        breaks (RelpError) or the caller is cancelled, the first ``progress`` messages
        were taken and must not be sent again."""
        txnrs = [self._next() for _ in messages]
        frames = [frame(t, b"syslog", m) for t, m in zip(txnrs, messages, strict=True)]
        await self._exchange(txnrs, frames)
        return self.refused

    async def _exchange(self, txnrs: list[int], frames: list[bytes]) -> None:
        if self.closed.is_set():
            raise RelpError(self.why or "the RELP session is closed")
        self.progress = self.refused = 0
        self._outstanding = deque(txnrs)
        self._done = asyncio.get_running_loop().create_future()
        self.writer.write(b"".join(frames))
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
                await self._done
        except RelpError:
            raise
        except (OSError, TimeoutError) as exc:
            raise RelpError(self.why or _describe(exc, self.timeout), self.progress) from exc
        finally:
            self._done = None

    def _answered(self, txnr: int, data: bytes) -> None:
        if not self._outstanding or txnr != self._outstanding[0]:
            raise RelpError(f"RELP answer to transaction {txnr}, which was not the next one")
        self._outstanding.popleft()
        self._last_answer = data
        if not data.startswith(b"200"):
            # Refused for good (a 500 repeats on every try): counted as done so that
            # the messages after it are not sent twice.
            self.refused += 1
            self.refusal = _text(data)
        self.progress += 1
        if not self._outstanding and self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def _read_answers(self) -> None:
        buffer = bytearray()
        try:
            while chunk := await self.reader.read(65536):
                buffer += chunk
                frames, used = parse_frames(buffer)
                del buffer[:used]
                for txnr, command, data in frames:
                    if command == b"serverclose":
                        raise RelpError("the collector ended the RELP session (serverclose)")
                    if command != b"rsp":
                        raise RelpError(f"unexpected RELP command {_text(command)!r}")
                    self._answered(txnr, data)
                if len(buffer) > _MAX_FRAME + 64:
                    raise RelpError("an endless RELP frame from the collector")
            self.why = "the collector closed the RELP session"
        except (RelpError, OSError) as exc:
            self.why = str(exc) or "the RELP session broke"
        finally:
            self.closed.set()
            if self._done is not None and not self._done.done():
                self._done.set_exception(RelpError(self.why, self.progress))

    def abort(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        self.writer.transport.abort()

    async def close(self) -> None:
        """Say goodbye when the session still works; abort it either way."""
        if not self.closed.is_set() and self._done is None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    txnr = self._next()
                    await self._exchange([txnr], [frame(txnr, b"close")])
        self.abort()
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task


def _text(data: bytes) -> str:
    return data[:200].decode("utf-8", "replace").replace("\n", " ")


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    return str(exc) or type(exc).__name__
