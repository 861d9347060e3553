"""When each job runs: fixed intervals, a stable splay, a global bound, no self-overlap.

A job is a key and an interval; what running it means is the daemon's business. The
scheduler measures lateness (actual start minus planned start, including the wait for
a concurrency slot) and records how recently its own loop turned, which is what the
systemd watchdog asks about.
"""

from __future__ import annotations

import asyncio
import heapq
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from core.clock import Clock

# The loop wakes at least this often, so its liveness is fresh even when every
# interval is long; the watchdog judges the scheduler by it.
TICK = 1.0

# Wake-ups are coalesced, as timer slack and systemd's AccuracySec= do: a run starts at
# most this late, and thousands of spread checks cost a loop turn per COALESCE rather
# than one per run (at 10,000 checks a minute, a third of the loop's own CPU).
COALESCE = 0.02


@dataclass(frozen=True, slots=True)
class Job:
    key: str  # unique: "police-110", "police-110/standby"
    interval: float  # seconds


RunJob = Callable[[Job], Awaitable[None]]
OnLateness = Callable[[Job, float], None]


def splay(key: str, interval: float) -> float:
    """A stable offset in [0, interval): checks do not fire together, and a restart keeps
    each check at the same phase (a hash, not a random number)."""
    return (zlib.crc32(key.encode()) / 2**32) * interval


class Scheduler:
    def __init__(
        self,
        *,
        clock: Clock,
        concurrency: int,
        run: RunJob,
        on_lateness: OnLateness | None = None,
        on_skip: Callable[[Job], None] | None = None,
        spread: bool = True,
    ) -> None:
        """``spread=False`` starts every new job at once instead of at its splay offset."""
        self._clock = clock
        self._spread = spread
        self._run = run
        self._on_lateness = on_lateness
        self._on_skip = on_skip
        self._slots = asyncio.Semaphore(concurrency)
        self._jobs: dict[str, Job] = {}
        self._due: list[tuple[float, int, str]] = []  # (when, seq, key): a heap
        self._next_due: dict[str, float] = {}
        self._seq = 0
        self._running: dict[str, asyncio.Task[None]] = {}
        self._waiter: asyncio.Future[None] | None = None  # the loop's pause, if it sleeps
        self._stopping = False
        self.last_tick = clock.monotonic()

    # --- configuration ---------------------------------------------------------------

    def set_jobs(self, jobs: Iterable[Job], *, concurrency: int | None = None) -> None:
        """Install a job set; jobs that persist keep their phase (a reload does not
        make every check fire at once)."""
        now = self._clock.monotonic()
        new = {job.key: job for job in jobs}
        for key in list(self._jobs):
            if key not in new:
                self._next_due.pop(key, None)
        for key, job in new.items():
            old = self._jobs.get(key)
            if key not in self._next_due:
                self._next_due[key] = now + (splay(key, job.interval) if self._spread else 0.0)
            elif old is not None and old.interval != job.interval:
                # Next run at most one new interval away.
                self._next_due[key] = min(self._next_due[key], now + job.interval)
        self._jobs = new
        self._due = [(when, i, key) for i, (key, when) in enumerate(self._next_due.items())]
        heapq.heapify(self._due)
        self._seq = len(self._due)
        if concurrency is not None:
            self._slots = asyncio.Semaphore(concurrency)
        self._wake_up()

    # --- the loop --------------------------------------------------------------------

    async def run_forever(self) -> None:
        while not self._stopping:
            now = self._clock.monotonic()
            self.last_tick = now
            if not self._due:
                await self._pause(TICK)
                continue
            when, _, key = self._due[0]
            if when > now:
                # Never sooner than COALESCE: the runs falling due meanwhile start
                # together on the next turn, one wake-up for several of them.
                await self._pause(min(max(when - now, COALESCE), TICK))
                continue
            heapq.heappop(self._due)
            job = self._jobs.get(key)
            if job is None or self._next_due.get(key) != when:
                continue  # removed or rescheduled by a reload
            self._start(job, when)
            # Next slot: one interval after the planned start; a loop that fell far behind
            # skips missed slots rather than firing a burst to catch up.
            following = when + job.interval
            if following <= now:
                following = now + job.interval - ((now - when) % job.interval)
            self._next_due[key] = following
            self._seq += 1
            heapq.heappush(self._due, (following, self._seq, key))

    def _start(self, job: Job, planned: float) -> None:
        if job.key in self._running:
            # The previous run is still going: never overlap a check with itself.
            if self._on_skip is not None:
                self._on_skip(job)
            return
        task = asyncio.create_task(self._execute(job, planned), name=f"job:{job.key}")
        self._running[job.key] = task
        task.add_done_callback(lambda _: self._running.pop(job.key, None))

    async def _execute(self, job: Job, planned: float) -> None:
        async with self._slots:
            if self._on_lateness is not None:
                self._on_lateness(job, max(0.0, self._clock.monotonic() - planned))
            await self._run(job)

    async def _pause(self, seconds: float) -> None:
        """Sleep on the injected clock, or until set_jobs/stop wakes the loop.

        The loop pauses before nearly every run (runs are spread, so the next is a few
        milliseconds off): one future and one sleeping task per pause, rather than a
        task per wake-up source and asyncio.wait, halves what a pause costs.
        """
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))

        def wake(_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        sleeper.add_done_callback(wake)
        try:
            await waiter
        finally:
            self._waiter = None
            sleeper.cancel()  # after it finished, a no-op

    def _wake_up(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- state and shutdown ----------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._running)

    def is_running(self, key: str) -> bool:
        return key in self._running

    def healthy(self, now: float, slack: float = 3 * TICK) -> bool:
        """The loop turned recently: not stalled behind a blocked event loop or a bug."""
        return not self._stopping and now - self.last_tick <= slack

    async def stop(self, grace: float) -> int:
        """Stop starting jobs; give running ones ``grace`` seconds, then cancel them.

        Returns how many were cancelled.
        """
        self._stopping = True
        self._wake_up()
        running = list(self._running.values())
        if not running:
            return 0
        _, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)
