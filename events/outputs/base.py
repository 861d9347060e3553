"""What every output shares: counters, and reporting a problem once per episode."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """Something an output could not do, or recovered from (becomes an ``output-*`` event)."""

    output: str
    action: str  # output-failed | output-recovered | output-dropped
    message: str
    level: str = "warning"
    dropped: int = 0


OUTCOMES = ("sent", "spooled", "replayed", "dropped")


class Output:
    """Base of the sinks. Subclasses implement ``submit`` and may override start/close."""

    kind = "output"
    needs_json = True  # does submit() use the rendered JSON line? (CEF syslog does not)

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter({outcome: 0 for outcome in OUTCOMES})
        # Problems found before the pipeline connects (an unusable spool_dir, seen when
        # the output is built and started) are held and reported when it does.
        self._held: list[Problem] = []
        self._problems: Callable[[Problem], None] = self._held.append
        self.scrub: Callable[[str], str] = str  # the pipeline sets the config's scrubber
        self._failing: str | None = None  # the message of the episode under way
        self._episode_dropped = 0

    @property
    def problems(self) -> Callable[[Problem], None]:
        return self._problems

    @problems.setter
    def problems(self, report: Callable[[Problem], None]) -> None:
        self._problems = report
        held, self._held = self._held, []
        for problem in held:
            report(problem)

    def submit(self, doc: Mapping[str, Any], line: str) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Open connections and background tasks (the daemon calls it inside its loop)."""

    async def close(self, grace: float = 2.0) -> None:
        """Flush what can be flushed within ``grace`` seconds; keep the rest (the spool)."""

    def kept(self) -> None:
        """A reload kept this output as it is: report again what is still wrong with it."""

    def gauges(self) -> dict[str, float]:
        """Extra per-output figures for /metrics (spool size, queue length)."""
        return {}

    # --- problem episodes --------------------------------------------------------

    def failed(self, message: str, *, level: str = "warning") -> None:
        """Report a failure once: a collector down for an hour is one event, not 10,000."""
        if self._failing != message:
            first = self._failing is None
            self._failing = message
            if first or level == "error":
                self.problems(Problem(self.name, "output-failed", message, level))

    def recovered(self, message: str) -> None:
        if self._failing is not None or self._episode_dropped:
            if self._episode_dropped:
                message += f"; {self._episode_dropped} events were dropped meanwhile"
            self._failing = None
            self._episode_dropped = 0
            self.problems(Problem(self.name, "output-recovered", message, "info"))

    def dropped(self, count: int, why: str) -> None:
        """Count lost events; the first loss of an episode is reported at once, the total
        when the output recovers (and always in /metrics)."""
        self.counts["dropped"] += count
        first = not self._episode_dropped
        self._episode_dropped += count
        if first:
            self.problems(
                Problem(self.name, "output-dropped", f"events dropped: {why}", "error", count)
            )
