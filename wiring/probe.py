"""``probe``'s object graph for a run: the event pipeline (when events are on), the
heartbeats push checks read, and the probe context the runs share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.heartbeats import HeartbeatStore
from probes.base import ProbeContext

if TYPE_CHECKING:
    from config.probe_config import ProbeConfig
    from events.log import Pipeline


@dataclass(frozen=True, slots=True)
class ProbeRun:
    events: Pipeline | None
    """Where the run's events go; None when they are off."""
    heartbeats: HeartbeatStore

    def context(self) -> ProbeContext:
        """The probe context, made on the loop the run takes (``async with`` it)."""
        return ProbeContext(heartbeats=self.heartbeats)


def build_probe(config: ProbeConfig, *, events: bool, scrub: Callable[[str], str]) -> ProbeRun:
    pipeline = None
    if events:
        from events.log import Pipeline  # not imported when events are off: startup time

        pipeline = Pipeline(scrub=scrub)
        pipeline.install()  # structlog's loggers write through it too
    # Push heartbeats are read from the daemon's state directory on this host.
    return ProbeRun(pipeline, HeartbeatStore(config.state_dir))
