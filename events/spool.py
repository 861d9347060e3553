"""A bounded, ordered queue of records on disk, for events waiting for their collector.

Segments ``<number>.seg`` hold records exactly as they go on the wire over TCP (RFC 6587
octet counting: ``LEN SP FRAME``), so replay copies bytes and a reader can check every
record's length. ``cursor`` says how far replay has got (segment and offset), written
by rename, so a restart neither loses nor repeats what was already sent. Segment numbers
only grow (a new spool starts at 10^9, leaving room below for ``prepend``), and a cursor
names a segment by number, so no later segment can be mistaken for a finished one.

When the spool passes its size, it drops what matters least first: the diagnostic records
(``low``, the owner says which) of the oldest segment that can be rewritten, then of the
next, and only then whole oldest segments; all dropped records are counted. Check results
and state changes so outlive a flood of diagnostics (refused heartbeats, an output's own
trouble), and among equals the newest events matter most to whoever reads the SIEM after
an outage. A lock file keeps a
second process (or a second output) from using the same directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_SUFFIX = ".seg"
_HEADER_MAX = 10  # "LEN SP": up to 9 digits and the space
_FIRST_NUMBER = 1_000_000_000

Token = tuple[int, int]
"""What ``read_batch`` hands out and ``commit`` takes: on disk (segment number, offset
after the batch), in memory (numbers of the batch's first record and of the one after its
last, in the order of arrival)."""


class SpoolError(OSError):
    """The spool cannot be written (disk full, directory not writable, in use)."""


@dataclass
class _Segment:
    number: int
    size: int = 0
    records: int = 0
    path: Path = field(default_factory=Path)
    low: int = 0  # records of low value (diagnostics) in it


def frame_records(data: bytes) -> tuple[list[bytes], int]:
    """Complete octet-counted records at the start of ``data`` and the bytes they take."""
    records: list[bytes] = []
    pos = 0
    while True:
        space = data.find(b" ", pos, pos + _HEADER_MAX)
        if space < 0 or not data[pos:space].isdigit():
            return records, pos
        end = space + 1 + int(data[pos:space])
        if end > len(data):
            return records, pos
        records.append(data[pos:end])
        pos = end


def _fail(directory: Path, exc: OSError) -> SpoolError:
    return SpoolError(f"spool {directory}: {exc.strerror or exc}")


def _never_low(record: bytes) -> bool:
    return False


class DiskSpool:
    def __init__(
        self, directory: Path, max_bytes: int, low: Callable[[bytes], bool] = _never_low
    ) -> None:
        """``low`` tells the records to drop first when the spool is full."""
        self.directory = directory
        self.max_bytes = max_bytes
        self.low = low
        self.segment_bytes = max(16 * 1024, min(max_bytes // 8, 8 * 1024 * 1024))
        self.dropped = 0  # records lost to the size bound since start
        self.damaged = 0  # bytes skipped because a record was cut (a crash mid-write)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(directory / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"spool directory {directory}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise SpoolError(
                f"spool directory {directory} is in use by another process or output"
            ) from None
        self._segments: deque[_Segment] = deque()
        for path in sorted(directory.glob("*" + _SUFFIX), key=lambda p: p.stem.zfill(20)):
            if path.stem.isdigit():
                self._segments.append(self._scan(int(path.stem), path))
        self._read_segment, self._read_offset = self._load_cursor()
        self._last_number = max(
            [s.number for s in self._segments] + [self._read_segment, _FIRST_NUMBER - 1]
        )
        self._fd: int | None = None
        self._fd_number = 0  # the segment that _fd appends to
        self.cursor_problem: str | None = None  # set when the cursor could not be saved
        self._skip_finished()

    # --- writing -----------------------------------------------------------------

    def append(self, record: bytes) -> None:
        """Add one octet-counted record at the end; SpoolError when the disk refuses."""
        tail = self._segments[-1] if self._segments else None
        if tail is None or self._fd is None or tail.size + len(record) > self.segment_bytes:
            tail = self._roll()
        assert self._fd is not None
        try:
            written = os.write(self._fd, record)
        except OSError as exc:
            raise _fail(self.directory, exc) from None
        if written != len(record):  # disk full half-way: take the piece back out
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, tail.size)
            raise SpoolError(f"spool {self.directory}: short write (disk full?)")
        tail.size += written
        tail.records += 1
        tail.low += self.low(record)
        self._enforce_bound()  # the record is stored: nothing below may fail the append

    def prepend(self, records: list[bytes]) -> None:
        """Put records before everything else (a batch that was on its way when the
        connection broke is older than what the spool holds)."""
        if not records:
            return
        if self.empty:
            for record in records:
                self.append(record)
            return
        self._skip_finished()
        number = self._segments[0].number - 1
        path = self.directory / f"{number:012d}{_SUFFIX}"
        data = b"".join(records)
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            raise _fail(self.directory, exc) from None
        low = sum(map(self.low, records))
        self._segments.appendleft(_Segment(number, len(data), len(records), path, low))
        self._read_segment, self._read_offset = number, 0
        self._save_cursor_quietly()

    def _roll(self) -> _Segment:
        self._close_fd()
        self._last_number += 1
        number = self._last_number
        path = self.directory / f"{number:012d}{_SUFFIX}"
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            self._last_number -= 1
            raise _fail(self.directory, exc) from None
        self._fd_number = number
        segment = _Segment(number, path=path)
        self._segments.append(segment)
        return segment

    def _enforce_bound(self) -> None:
        # Diagnostics go first, oldest segment first. Neither the segment being read
        # (a batch from it may be on its way, its token naming offsets in it) nor the one
        # being written is rewritten, so a full spool of two segments drops as before.
        for segment in list(self._segments)[1:-1]:
            if self.size <= self.max_bytes:
                return
            if segment.low and segment.number != self._read_segment:
                self._drop_low(segment)
        while self.size > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments.popleft()
            lost = oldest.records
            if oldest.number == self._read_segment:
                lost -= self._records_before(oldest, self._read_offset)
                # The cursor moves on; a batch read from this segment and still on its
                # way will find its commit refused (its token names this segment).
                self._read_segment, self._read_offset = self._segments[0].number, 0
                self._save_cursor_quietly()
            self.dropped += lost
            with contextlib.suppress(OSError):
                oldest.path.unlink()

    def _drop_low(self, segment: _Segment) -> None:
        """Rewrite a segment without its low records (by rename: a crash leaves the old
        file or the new one, never half of one)."""
        tmp = segment.path.with_suffix(".tmp")
        try:
            records, _ = frame_records(segment.path.read_bytes())
            kept = [r for r in records if not self.low(r)]
            tmp.write_bytes(b"".join(kept))
            os.replace(tmp, segment.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return  # the whole oldest segments still make room
        self.dropped += len(records) - len(kept)
        segment.size, segment.records, segment.low = sum(map(len, kept)), len(kept), 0

    # --- reading -----------------------------------------------------------------

    def read_batch(self, max_bytes: int = 256 * 1024) -> tuple[list[bytes], Token]:
        """The oldest unsent records (at least one if any), and a token for ``commit``."""
        self._skip_finished()
        if not self._segments:
            return [], (self._read_segment, self._read_offset)
        segment = self._segments[0]
        try:
            with open(segment.path, "rb") as f:
                f.seek(self._read_offset)
                data = f.read(max_bytes)
                records, used = frame_records(data)
                if not records and data:
                    # One record longer than the batch, or a cut one: read it whole.
                    rest = data + f.read()
                    records, used = frame_records(rest)
                    if not records:  # a cut record: skip it, it cannot be sent
                        self.damaged += len(rest)
                        used = len(rest)
        except OSError as exc:
            raise _fail(self.directory, exc) from None
        return records, (segment.number, self._read_offset + used)

    def commit(self, token: Token) -> None:
        """The records of a batch reached the collector: move the cursor past them.
        A token of a segment dropped meanwhile (the spool was full) changes nothing."""
        number, offset = token
        if number != self._read_segment or offset < self._read_offset:
            return
        self._read_offset = offset
        self._skip_finished()
        self._save_cursor()

    def token_after(self, records: list[bytes], token: Token) -> Token:
        """The token that commits only ``records``, the first ones of the batch."""
        number, _ = token
        return number, self._read_offset + sum(len(r) for r in records)

    def _skip_finished(self) -> None:
        moved = False
        while self._segments:
            head = self._segments[0]
            if head.number < self._read_segment:
                self._drop_file(self._segments.popleft())
                continue
            if head.number > self._read_segment:
                self._read_segment, self._read_offset, moved = head.number, 0, True
            writing = head is self._segments[-1] and self._fd is not None
            if self._read_offset >= head.size and not writing:
                self._drop_file(self._segments.popleft())
                if self._segments:
                    self._read_segment, self._read_offset = self._segments[0].number, 0
                moved = True
                continue
            break
        if moved:
            self._save_cursor_quietly()

    @property
    def empty(self) -> bool:
        self._skip_finished()
        if not self._segments:
            return True
        return len(self._segments) == 1 and self._read_offset >= self._segments[0].size

    @property
    def size(self) -> int:
        return sum(s.size for s in self._segments)

    def close(self) -> None:
        self._close_fd()
        with contextlib.suppress(OSError):
            os.close(self._lock)  # releases the lock

    # --- bookkeeping -------------------------------------------------------------

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _drop_file(self, segment: _Segment) -> None:
        if segment.number == self._fd_number:
            self._close_fd()
        with contextlib.suppress(OSError):
            segment.path.unlink()

    def _scan(self, number: int, path: Path) -> _Segment:
        data = path.read_bytes()
        records, used = frame_records(data)
        if used < len(data):  # a crash cut the last record: drop the piece
            self.damaged += len(data) - used
            with open(path, "r+b") as f:
                f.truncate(used)
        low = sum(map(self.low, records))
        return _Segment(number, size=used, records=len(records), path=path, low=low)

    def _records_before(self, segment: _Segment, offset: int) -> int:
        with contextlib.suppress(OSError), open(segment.path, "rb") as f:
            return len(frame_records(f.read(offset))[0])
        return 0

    def _cursor_path(self) -> Path:
        return self.directory / "cursor"

    def _load_cursor(self) -> tuple[int, int]:
        first = self._segments[0].number if self._segments else _FIRST_NUMBER
        try:
            number_text, offset_text = self._cursor_path().read_text().split()
            number, offset = int(number_text), int(offset_text)
        except (OSError, ValueError):
            return first, 0
        if not self._segments:
            return number, 0  # keeps numbering above it
        if number < first:
            return first, 0
        if number > self._segments[-1].number:  # from another spool: trust the files
            return first, 0
        return number, offset

    def _save_cursor(self) -> None:
        tmp = self.directory / "cursor.tmp"
        try:
            tmp.write_text(f"{self._read_segment} {self._read_offset}\n")
            os.replace(tmp, self._cursor_path())
        except OSError as exc:
            self.cursor_problem = f"cannot save the replay position: {exc.strerror or exc}"
            raise _fail(self.directory, exc) from None
        self.cursor_problem = None

    def _save_cursor_quietly(self) -> None:
        """Save the cursor where a failure must not undo the caller's work (an append
        that is already on disk); the problem is kept for the output to report."""
        with contextlib.suppress(SpoolError):
            self._save_cursor()


class MemorySpool:
    """The same queue in memory, for a stream output without ``spool_dir``: it bridges a
    collector restart but not a daemon restart. Bounded by records and by bytes, and
    when full it drops as the disk spool does: the oldest diagnostic (``low``) first,
    the oldest record of any kind only when no diagnostic is left."""

    def __init__(
        self,
        max_records: int,
        max_bytes: int = 16 * 1024 * 1024,
        low: Callable[[bytes], bool] = _never_low,
    ) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.low = low
        # Numbered in the order of arrival; an OrderedDict so that a diagnostic can leave
        # from the middle and the oldest from the front, both in constant time.
        self._records: OrderedDict[int, bytes] = OrderedDict()
        self._low: deque[int] = deque()  # numbers of diagnostics, some maybe gone already
        self._next = 0
        self._bytes = 0
        self._batch: list[int] = []  # numbers of the batch last read, for token_after
        self.dropped = 0

    def append(self, record: bytes) -> None:
        number = self._next
        self._next += 1
        self._records[number] = record
        self._bytes += len(record)
        if self.low(record):
            self._low.append(number)
        while len(self._records) > self.max_records or (
            self._bytes > self.max_bytes and len(self._records) > 1
        ):
            self._evict()
            self.dropped += 1

    def _evict(self) -> None:
        while self._low:
            number = self._low.popleft()
            if number in self._records:  # not already sent or dropped
                self._bytes -= len(self._records.pop(number))
                return
        self._bytes -= len(self._records.popitem(last=False)[1])

    def read_batch(self, max_bytes: int = 256 * 1024) -> tuple[list[bytes], Token]:
        batch: list[bytes] = []
        self._batch = []
        size = 0
        for number, record in self._records.items():
            if batch and size + len(record) > max_bytes:
                break
            batch.append(record)
            self._batch.append(number)
            size += len(record)
        return batch, self._token(len(batch))

    def _token(self, count: int) -> Token:
        """(first number, number after the last) of the first ``count`` of the batch."""
        if not count:
            return self._next, self._next
        return self._batch[0], self._batch[count - 1] + 1

    def commit(self, token: Token) -> None:
        """Remove the batch's records that are still here (the bound may have dropped
        some of them while the batch was on its way)."""
        _, end = token
        while self._records:
            number = next(iter(self._records))
            if number >= end:
                break
            self._bytes -= len(self._records.popitem(last=False)[1])

    def token_after(self, records: list[bytes], token: Token) -> Token:
        return self._token(len(records))

    @property
    def empty(self) -> bool:
        return not self._records

    @property
    def size(self) -> int:
        return self._bytes
