"""A bounded, ordered queue of frames on disk, for events waiting for their collector.

Segments ``0000000001.seg``, ``0000000002.seg``... hold records exactly as they go on the
wire over TCP (RFC 6587 octet counting: ``LEN SP FRAME``), so replay copies bytes and a
reader can check every record's length. ``cursor`` says how far replay has got (segment
and offset), written by rename after each batch, so a restart neither loses nor repeats
what was already sent. When the spool passes its size, whole oldest segments are dropped
and counted: the newest events matter most to whoever reads the SIEM after an outage.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

_SUFFIX = ".seg"
_HEADER_MAX = 10  # "LEN SP": up to 9 digits and the space


class SpoolError(OSError):
    """The spool cannot be written (disk full, directory not writable)."""


@dataclass
class _Segment:
    number: int
    size: int = 0
    records: int = 0
    path: Path = field(default_factory=Path)


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


class DiskSpool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(16 * 1024, min(max_bytes // 8, 8 * 1024 * 1024))
        self.dropped = 0  # records lost to the size bound since start
        self.damaged = 0  # bytes skipped because a record was cut (a crash mid-write)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise PermissionError(13, "not writable", str(directory))
        except OSError as exc:
            raise SpoolError(f"spool directory {directory}: {exc.strerror or exc}") from None
        self._segments: deque[_Segment] = deque()
        for path in sorted(directory.glob("*" + _SUFFIX)):
            if path.stem.isdigit():
                self._segments.append(self._scan(int(path.stem), path))
        self._read_segment, self._read_offset = self._load_cursor()
        self._fd: int | None = None

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
            raise SpoolError(f"spool {self.directory}: {exc.strerror or exc}") from None
        if written != len(record):  # disk full half-way: take the piece back out
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, tail.size)
            raise SpoolError(f"spool {self.directory}: short write (disk full?)")
        tail.size += written
        tail.records += 1
        self._enforce_bound()

    def _roll(self) -> _Segment:
        self._close_fd()
        number = self._segments[-1].number + 1 if self._segments else 1
        path = self.directory / f"{number:010d}{_SUFFIX}"
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise SpoolError(f"spool {self.directory}: {exc.strerror or exc}") from None
        segment = _Segment(number, path=path)
        self._segments.append(segment)
        return segment

    def _enforce_bound(self) -> None:
        while self.size > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments.popleft()
            lost = oldest.records
            if oldest.number == self._read_segment:
                lost -= self._records_before(oldest, self._read_offset)
            self.dropped += lost
            with contextlib.suppress(OSError):
                oldest.path.unlink()
            if oldest.number >= self._read_segment:
                self._read_segment, self._read_offset = self._segments[0].number, 0
                self._save_cursor()

    # --- reading -----------------------------------------------------------------

    def read_batch(self, max_bytes: int = 256 * 1024) -> tuple[list[bytes], int]:
        """The oldest unsent records (at least one if any), and a token for ``commit``."""
        self._skip_finished()
        if not self._segments:
            return [], 0
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
                    if not records:  # a cut record at the end of a finished segment
                        self.damaged += len(rest)
                        used = len(rest)
        except OSError as exc:
            raise SpoolError(f"spool {self.directory}: {exc.strerror or exc}") from None
        return records, used

    def commit(self, used: int) -> None:
        """The records of the last batch reached the collector: move the cursor past them."""
        self._read_offset += used
        self._skip_finished()
        self._save_cursor()

    def _skip_finished(self) -> None:
        while self._segments:
            head = self._segments[0]
            if head.number < self._read_segment:
                self._drop_file(self._segments.popleft())
                continue
            writing = head is self._segments[-1] and self._fd is not None
            if self._read_offset >= head.size and not writing:
                self._drop_file(self._segments.popleft())
                self._read_segment = self._segments[0].number if self._segments else 0
                self._read_offset = 0
                continue
            if head.number > self._read_segment:
                self._read_segment, self._read_offset = head.number, 0
            break

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

    # --- bookkeeping -------------------------------------------------------------

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _drop_file(self, segment: _Segment) -> None:
        if segment.number == (self._segments[-1].number if self._segments else None):
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
        return _Segment(number, size=used, records=len(records), path=path)

    def _records_before(self, segment: _Segment, offset: int) -> int:
        with contextlib.suppress(OSError), open(segment.path, "rb") as f:
            return len(frame_records(f.read(offset))[0])
        return 0

    def _cursor_path(self) -> Path:
        return self.directory / "cursor"

    def _load_cursor(self) -> tuple[int, int]:
        first = self._segments[0].number if self._segments else 0
        try:
            number_text, offset_text = self._cursor_path().read_text().split()
            number, offset = int(number_text), int(offset_text)
        except (OSError, ValueError):
            return first, 0
        if number < first:
            return first, 0
        return number, offset

    def _save_cursor(self) -> None:
        tmp = self.directory / "cursor.tmp"
        try:
            tmp.write_text(f"{self._read_segment} {self._read_offset}\n")
            os.replace(tmp, self._cursor_path())
        except OSError as exc:
            raise SpoolError(f"spool {self.directory}: {exc.strerror or exc}") from None


class MemorySpool:
    """The same queue in memory, for a stream output without ``spool_dir``: it bridges a
    collector restart but not a daemon restart, and it holds ``max_records`` at most."""

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self._records: deque[bytes] = deque()
        self.dropped = 0
        self.damaged = 0

    def append(self, record: bytes) -> None:
        if len(self._records) >= self.max_records:
            self._records.popleft()
            self.dropped += 1
        self._records.append(record)

    def read_batch(self, max_bytes: int = 256 * 1024) -> tuple[list[bytes], int]:
        batch: list[bytes] = []
        size = 0
        for record in self._records:
            if batch and size + len(record) > max_bytes:
                break
            batch.append(record)
            size += len(record)
        return batch, len(batch)

    def commit(self, used: int) -> None:
        for _ in range(used):
            self._records.popleft()

    @property
    def empty(self) -> bool:
        return not self._records

    @property
    def size(self) -> int:
        return sum(len(r) for r in self._records)

    def close(self) -> None:
        pass


Spool = DiskSpool | MemorySpool
