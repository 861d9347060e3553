"""JSON lines on stdout or stderr: under systemd, journald stores them."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, TextIO

from events.outputs.base import Output


class StreamSink(Output):
    kind = "stream"

    def __init__(self, name: str, stream: TextIO) -> None:
        super().__init__(name)
        self.stream = stream

    def submit(self, doc: Mapping[str, Any], line: str) -> None:
        try:
            self.stream.write(line + "\n")
        except (OSError, ValueError) as exc:  # a closed pipe, a closed file in a test
            self.counts["dropped"] += 1
            self.failed(f"cannot write to {self.name}: {exc}")
            return
        self.counts["sent"] += 1

    async def close(self, grace: float = 2.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()
