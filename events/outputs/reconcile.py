"""Which outputs a reload keeps, opens and closes.

An output whose settings did not change is kept as it is (connection, queue, spool); the
others are closed only after the new set is in place, so that no event falls between
the two, except one whose spool directory a new output takes over: that one is closed
first (its unsent events go to the spool, which the new one then replays).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from config.outputs import Output as OutputConfig
from config.outputs import output_names
from events.outputs import Output, build_one

OUTPUT_GRACE = 3.0  # seconds queued events get to reach a collector on stop; then the spool


class OutputSet:
    """The outputs of the running config, each beside the settings it was opened with."""

    def __init__(self, *, stderr: TextIO | None = None, hostname: str = "") -> None:
        """``stderr`` stands in for the process's stderr (tests)."""
        self.outputs: list[Output] = []
        self._configs: list[OutputConfig] = []
        self._stderr = stderr
        self._hostname = hostname

    async def reconcile(self, entries: Sequence[OutputConfig]) -> list[Output]:
        """Open what ``entries`` adds, keep what it keeps; return the outputs that went
        stale, for the caller to close once events are routed to the new set."""
        previous = {(o.name, c): o for o, c in zip(self.outputs, self._configs, strict=True)}
        current: list[Output] = []
        for name, entry in zip(output_names(list(entries)), entries, strict=True):
            output = previous.pop((name, entry), None)
            if output is None:
                spool = _spool_of(entry)
                for key in [k for k in previous if spool and _spool_of(k[1]) == spool]:
                    await previous.pop(key).close(grace=OUTPUT_GRACE)
                output = build_one(name, entry, stderr=self._stderr, hostname=self._hostname)
                await output.start()
            else:
                output.kept()
            current.append(output)
        self.outputs, self._configs = current, list(entries)
        return list(previous.values())

    async def close(self) -> None:
        for output in self.outputs:
            await output.close(grace=OUTPUT_GRACE)


async def close_all(outputs: Sequence[Output]) -> None:
    for output in outputs:
        await output.close(grace=OUTPUT_GRACE)


def _spool_of(entry: OutputConfig) -> Path | None:
    return getattr(entry, "spool_dir", None)
