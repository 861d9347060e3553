"""The running daemon's ``/status`` document and its one-line summary (systemd STATUS=).

The same shape as ``probe --all --json`` (engine.report builds that), each check extended
with its state; ``checks`` is an iterator, so /status writes the entries out as they are
made (the whole list for 10,000 checks was 20 MB at its peak).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from core.clock import Clock
from core.result import CheckResult
from engine import report
from engine.notify import Notifier
from engine.state import StateTracker

if TYPE_CHECKING:
    from config.probe_config import ProbeConfig


def status_stream(
    config: ProbeConfig, state: StateTracker, latest: Mapping[str, CheckResult]
) -> dict[str, Any]:
    """What `probe --all --json` prints, each check extended with its state, with
    ``checks`` an iterator."""
    counts = state.counts()
    worst = next((s for s in ("down", "unreachable", "degraded", "unknown") if counts.get(s)), "up")
    return {"status": worst, "counts": counts, "checks": _entries(config, state, latest)}


def _entries(
    config: ProbeConfig, state: StateTracker, latest: Mapping[str, CheckResult]
) -> Iterator[dict[str, Any]]:
    for check in config.checks:  # the list of when it began, if a reload comes
        try:
            view = state.check_state(check.name)
        except KeyError:
            continue  # removed by a reload while the page was being written
        result = latest.get(check.name)
        entry = (
            report.check_document(result)
            if result
            else {
                "name": check.name,
                "title": check.title,
                "kind": check.kind,
                "active_node": None,
                "nodes": [],
            }
        )
        entry["status"] = str(view.hard)  # the hard state; soft and streak beside it
        entry["active_node"] = view.active_node  # sticky: may differ from who answered last
        entry["state"] = view.as_dict()
        yield entry


def status_line(checks: int, counts: Mapping[str, int]) -> str:
    """``N checks: 3 up, 0 degraded, 1 down, 0 unreachable`` (systemd's STATUS=)."""
    parts = [f"{counts.get(s, 0)} {s}" for s in ("up", "degraded", "down", "unreachable")]
    return f"{checks} checks: " + ", ".join(parts)


class StatusNotice:
    """systemd's STATUS= line, kept current as runs change states."""

    def __init__(self, notifier: Notifier, clock: Clock, line: Callable[[], str]) -> None:
        self.line = line
        self._notifier = notifier
        self._clock = clock
        self._last = ""
        self._at = float("-inf")

    def update(self) -> None:
        """Send the line if it changed. Counting states walks every check: at most once
        a second, not once per run."""
        now = self._clock.monotonic()
        if now - self._at >= 1.0:
            self._at = now
            line = self.line()
            if line != self._last:
                self._last = line
                self._notifier.status(line)
