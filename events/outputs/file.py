"""A JSON-lines file that log shippers can tail.

Each event is one ``write`` of a whole line on an O_APPEND descriptor, so a reader never
sees half a line, and a write cut short by a full disk is taken back out. Rotation is by
rename (events.jsonl -> .1 -> .2 ...), which Filebeat and Fluent Bit follow by inode; the
live file is then created anew.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from config.outputs import FileOutput
from events.formats import utf8
from events.outputs.base import Output


class FileSink(Output):
    kind = "file"

    def __init__(self, name: str, config: FileOutput) -> None:
        super().__init__(name)
        self.path = config.path
        self.max_bytes = int(config.max_bytes)
        self.backups = config.backups
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def submit(self, doc: Mapping[str, Any], line: str) -> None:
        data = utf8(line + "\n")
        try:
            fd = self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
                fd = self._open()
            written = os.write(fd, data)
            if written != len(data):
                os.ftruncate(fd, self._size)  # no partial line for the tailer to choke on
                raise OSError(28, "short write, the disk is full")
        except OSError as exc:
            self._close_fd()  # reopened (and re-sized) on the next event
            self.dropped(1, f"cannot write {self.path}: {exc.strerror or exc}")
            return
        self._size += written
        self.counts["sent"] += 1
        if self._episode_dropped:
            self.recovered(f"writing {self.path} again")

    def _rotate(self) -> None:
        self._close_fd()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    async def close(self, grace: float = 2.0) -> None:
        self._close_fd()
