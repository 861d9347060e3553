"""Time as a dependency: the system clock in production, a fake one in tests."""

from __future__ import annotations

import asyncio
import functools
import heapq
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


def rfc3339(moment: datetime) -> str:
    """UTC with milliseconds and a Z, the form ECS ``@timestamp`` and our JSON use."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for durations and deadlines."""

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC; for timestamps people read."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    # The C functions themselves, not methods wrapping them: a run reads the clock a
    # dozen times, and each Python frame saved counts at hundreds of runs a second.
    monotonic = staticmethod(time.monotonic)
    now = staticmethod(functools.partial(datetime.now, UTC))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to, or when something sleeps on it.

    ``sleep`` advances time at once and yields to the loop, so a retry backoff or a
    schedule of minutes runs in microseconds while the waits are still recorded.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._mono = 1000.0
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


class ManualClock:
    """Virtual time for schedules: ``sleep`` waits until a test calls ``advance``.

    ``FakeClock`` jumps at every sleep, which suits one task retrying; a scheduler has
    many tasks sleeping at once, so their wake-ups must be ordered on one timeline.
    ``advance`` moves time forward wake-up by wake-up and lets the woken tasks run.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._mono = 1000.0
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self._mono + seconds, self._seq, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order and letting them run."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._move_to(deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self._move_to(target)
        await settle()

    def _move_to(self, mono: float) -> None:
        if mono > self._mono:
            self._wall += timedelta(seconds=mono - self._mono)
            self._mono = mono


async def settle(rounds: int = 50) -> None:
    """Let every task that can run do so (woken sleepers, the tasks they start)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
