"""Moving a daemon under test along its virtual clock."""

from __future__ import annotations

import asyncio

from core.clock import ManualClock, settle
from daemon import Daemon


async def advance_and_finish(daemon: Daemon, clock: ManualClock, seconds: float) -> None:
    """Advance virtual time and wait until the runs it started have finished."""
    await clock.advance(seconds)
    for _ in range(500):
        await settle()
        if daemon.scheduler.running == 0:
            return
        await asyncio.sleep(0.005)  # real I/O (sockets, files) needs real time
    raise AssertionError("runs did not finish")
