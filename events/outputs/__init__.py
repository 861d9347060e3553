"""The places events go. Every output takes an event the pipeline already rendered
(``submit(doc, line)``), never blocks the caller and never raises: a failure is counted,
reported once per episode through ``problems`` and, for the stream outputs, absorbed by
the spool.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from config.outputs import FileOutput, StreamOutput, SyslogOutput, output_names
from events.outputs.base import Output, Problem
from events.outputs.file import FileSink
from events.outputs.stream import StreamSink
from events.outputs.syslog import SyslogSink

__all__ = ["Output", "Problem", "build"]


def build(
    configs: Sequence[StreamOutput | FileOutput | SyslogOutput],
    *,
    problems: Callable[[Problem], None],
    stderr: TextIO | None = None,
    hostname: str = "",
) -> list[Output]:
    """One sink per configured output. ``stderr`` replaces the process's stderr (tests)."""
    sinks: list[Output] = []
    for name, config in zip(output_names(list(configs)), configs, strict=True):
        sink: Any
        if isinstance(config, StreamOutput):
            stream = sys.stdout if config.type == "stdout" else (stderr or sys.stderr)
            sink = StreamSink(name, stream)
        elif isinstance(config, FileOutput):
            sink = FileSink(name, config)
        else:
            sink = SyslogSink(name, config, hostname=hostname)
        sink.problems = problems
        sinks.append(sink)
    return sinks
