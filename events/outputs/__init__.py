"""The places events go. Every output takes an event the pipeline already rendered
(``submit(doc, line)``), never blocks the caller and never raises: a failure is counted,
reported once per episode through ``problems`` and, for the stream outputs, absorbed by
the spool.
"""

from __future__ import annotations

import sys
from typing import TextIO

from config.outputs import FileOutput, StreamOutput, SyslogOutput
from events.outputs.base import Output, Problem
from events.outputs.file import FileSink
from events.outputs.stream import StreamSink
from events.outputs.syslog import SyslogSink

__all__ = ["Output", "Problem", "build_one"]


def build_one(
    name: str,
    config: StreamOutput | FileOutput | SyslogOutput,
    *,
    stderr: TextIO | None = None,
    hostname: str = "",
) -> Output:
    """The sink for one configured output. ``stderr`` stands in for the process's stderr
    (tests). The pipeline that routes events to it sets its ``problems`` and ``scrub``."""
    if isinstance(config, StreamOutput):
        return StreamSink(name, sys.stdout if config.type == "stdout" else (stderr or sys.stderr))
    if isinstance(config, FileOutput):
        return FileSink(name, config)
    return SyslogSink(name, config, hostname=hostname)
