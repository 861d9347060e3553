"""The scheduler on virtual time: intervals, splay, the concurrency bound, no overlap."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import pytest

from core.clock import ManualClock, settle
from engine.schedule import Job, Scheduler, splay


class Recorder:
    """Runs jobs by recording their start times; a job may be told to take a while."""

    def __init__(self, clock: ManualClock, cost: Callable[[Job], float] = lambda _: 0.0) -> None:
        self.clock = clock
        self.cost = cost
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.in_flight = 0
        self.peak = 0
        self.lateness: list[float] = []
        self.skips: list[str] = []

    async def run(self, job: Job) -> None:
        self.starts[job.key].append(self.clock.monotonic())
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if (seconds := self.cost(job)) > 0:
                await self.clock.sleep(seconds)
        finally:
            self.in_flight -= 1


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[None]:
    task = asyncio.create_task(scheduler.run_forever())
    await settle()
    try:
        yield
    finally:
        await scheduler.stop(grace=0.1)
        await task


def make(
    clock: ManualClock, recorder: Recorder, concurrency: int = 100, spread: bool = True
) -> Scheduler:
    return Scheduler(
        clock=clock,
        concurrency=concurrency,
        run=recorder.run,
        spread=spread,
        on_lateness=lambda job, late: recorder.lateness.append(late),
        on_skip=lambda job: recorder.skips.append(job.key),
    )


async def test_jobs_run_at_their_interval_after_a_stable_splay(clock: ManualClock) -> None:
    """Each job starts at its splay offset, then exactly every interval."""
    recorder = Recorder(clock)
    scheduler = make(clock, recorder)
    start = clock.monotonic()
    scheduler.set_jobs([Job("police-110", 60.0), Job("db-1", 30.0)])
    async with running(scheduler):
        await clock.advance(300)
    police = recorder.starts["police-110"]
    assert police[0] == pytest.approx(start + splay("police-110", 60.0))
    assert [round(b - a, 6) for a, b in itertools.pairwise(police)] == [60.0] * 4
    assert len(recorder.starts["db-1"]) == 10
    assert all(late == 0 for late in recorder.lateness)


def test_splay_is_stable_and_spreads_checks() -> None:
    """The same key always gets the same offset; many keys spread over the interval."""
    assert splay("police-110", 60) == splay("police-110", 60)
    offsets = sorted(splay(f"check-{i}", 60) for i in range(200))
    assert 0 <= offsets[0] < 5
    assert 55 < offsets[-1] < 60
    assert len({int(o // 6) for o in offsets}) == 10  # every sixth of the minute is used


async def test_a_check_never_overlaps_itself(clock: ManualClock) -> None:
    """A run longer than the interval makes the next slot skip, not pile up."""
    recorder = Recorder(clock, cost=lambda job: 25.0)
    scheduler = make(clock, recorder)
    scheduler.set_jobs([Job("slow", 10.0)])
    async with running(scheduler):
        await clock.advance(100)
    assert recorder.peak == 1
    starts = recorder.starts["slow"]
    assert all(b - a >= 25.0 for a, b in itertools.pairwise(starts))
    assert len(recorder.skips) >= 5


async def test_global_bound_and_lateness(clock: ManualClock) -> None:
    """Ten jobs due together under a bound of two: at most two run; the rest are late."""
    recorder = Recorder(clock, cost=lambda job: 1.0)
    scheduler = make(clock, recorder, concurrency=2, spread=False)
    scheduler.set_jobs([Job(f"c{i}", 60.0) for i in range(10)])
    async with running(scheduler):
        await clock.advance(10)
    assert recorder.peak == 2
    assert sum(len(v) for v in recorder.starts.values()) == 10
    assert sorted(recorder.lateness) == pytest.approx([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])


async def test_reload_keeps_phase_and_drops_removed_jobs(clock: ManualClock) -> None:
    """set_jobs again: a kept job keeps its rhythm, a removed one stops, a new one starts."""
    recorder = Recorder(clock)
    scheduler = make(clock, recorder)
    scheduler.set_jobs([Job("kept", 60.0), Job("removed", 60.0)])
    async with running(scheduler):
        await clock.advance(120)
        kept_before = list(recorder.starts["kept"])
        removed_before = len(recorder.starts["removed"])
        scheduler.set_jobs([Job("kept", 60.0), Job("new", 60.0)])
        await clock.advance(120)
    kept = recorder.starts["kept"]
    assert kept[: len(kept_before)] == kept_before
    assert [round(b - a, 6) for a, b in itertools.pairwise(kept)] == [60.0] * (len(kept) - 1)
    assert len(recorder.starts["removed"]) == removed_before
    assert len(recorder.starts["new"]) == 2


async def test_stop_waits_for_quick_runs_and_cancels_hung_ones(clock: ManualClock) -> None:
    """Shutdown lets a run that finishes within the grace end, and cancels one that hangs."""
    finished: list[str] = []
    hang = asyncio.Event()

    async def run(job: Job) -> None:
        if job.key == "hung":
            await hang.wait()
        else:
            await asyncio.sleep(0.01)
        finished.append(job.key)

    scheduler = Scheduler(clock=clock, concurrency=10, run=run, spread=False)
    scheduler.set_jobs([Job("quick", 60.0), Job("hung", 60.0)])
    loop_task = asyncio.create_task(scheduler.run_forever())
    await settle()
    assert scheduler.running == 2
    cancelled = await scheduler.stop(grace=0.2)
    await loop_task
    assert cancelled == 1
    assert finished == ["quick"]


async def test_health_follows_the_loop(clock: ManualClock) -> None:
    """Healthy while the loop turns; unhealthy when it has not turned for a while, or stopped."""
    scheduler = make(clock, Recorder(clock))
    scheduler.set_jobs([Job("c", 3600.0)])
    await clock.advance(10)  # the loop has not started: its last tick is old
    assert not scheduler.healthy(clock.monotonic())
    async with running(scheduler):
        await clock.advance(5)
        assert scheduler.healthy(clock.monotonic())
    assert not scheduler.healthy(clock.monotonic())


async def test_wake_ups_are_coalesced_and_no_run_starts_more_than_that_late(
    clock: ManualClock,
) -> None:
    """1,000 spread jobs: the loop wakes at most once per COALESCE, starting what fell
    due meanwhile together, and no run starts before its plan or more than COALESCE
    after it."""
    from engine.schedule import COALESCE

    recorder = Recorder(clock)
    scheduler = make(clock, recorder, concurrency=2000)
    start = clock.monotonic()
    jobs = [Job(f"check-{i}", 10.0) for i in range(1000)]
    scheduler.set_jobs(jobs)
    async with running(scheduler):
        await clock.advance(10.0 + COALESCE)  # the last first run may be that late
    planned = {job.key: start + splay(job.key, 10.0) for job in jobs}
    firsts = {key: times[0] for key, times in recorder.starts.items()}
    assert len(firsts) == 1000
    late = [firsts[key] - planned[key] for key in firsts]
    assert min(late) >= 0
    assert max(late) <= COALESCE + 1e-9
    assert len(set(firsts.values())) <= 10.0 / COALESCE + 1  # wake-ups, not one per run
    assert max(recorder.lateness) <= COALESCE + 1e-9
