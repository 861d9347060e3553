"""The daemon's jobs run: a regular run of a check, or a standby run of its alternates.

What a run means is decided here and in engine/failover.py (which node first, when the
preferred node is probed for failback, which parents are asked first); what is done with
it (metrics, events, systemd's STATUS=) is the caller's, through three callbacks: the
upper floors (events, web) are not the engine's to import.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.result import CheckResult, NodeResult, Status
from engine.failover import STANDBY, parents_in, refresh_first, run_standby, run_tracked
from engine.schedule import Job
from engine.state import CheckStateView, StateTracker, Transition
from probes.base import ProbeContext

if TYPE_CHECKING:
    from config.checks import CheckBase
    from config.probe_config import ProbeConfig

OnRun = Callable[["CheckBase", CheckResult, CheckStateView, list[Transition]], None]
"""A regular run was judged: its result, the check's state after it, what changed."""
OnStandby = Callable[["CheckBase", NodeResult, list[Transition]], None]
"""An idle alternate was probed: its result, what changed."""
OnError = Callable[[str, Exception], None]
"""A run of the named check failed with a bug (never a probe failure: those are results)."""

_NO_LOCK: contextlib.nullcontext[None] = contextlib.nullcontext()


class Monitor:
    """Runs the scheduler's jobs against the state tracker; one per daemon."""

    def __init__(
        self,
        config: ProbeConfig,
        ctx: ProbeContext,
        state: StateTracker,
        *,
        on_run: OnRun,
        on_standby: OnStandby,
        on_error: OnError,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.state = state
        self.latest: dict[str, CheckResult] = {}
        """Each check's last regular result (the /status document shows it)."""
        self._on_run = on_run
        self._on_standby = on_standby
        self._on_error = on_error
        self._parents = parents_in(config)
        self._locks: dict[str, asyncio.Lock] = {}

    def reconfigure(self, config: ProbeConfig) -> None:
        """Run the reloaded config's checks from now on (the state follows separately)."""
        self.config = config
        self._parents = parents_in(config)

    def forget_removed(self) -> None:
        """Drop the last results of checks the config no longer has."""
        names = {c.name for c in self.config.checks}
        self.latest = {k: v for k, v in self.latest.items() if k in names}

    async def run_job(self, job: Job) -> None:
        name = job.key.removesuffix(STANDBY)
        try:
            check = self.config.check(name)
        except KeyError:
            return  # removed by a reload while it waited for a slot
        try:
            if job.key.endswith(STANDBY):
                await self._run_standby(check)
            else:
                await self._run_regular(check)
        except Exception as exc:  # never let one check's bug stop the scheduler
            self._on_error(name, exc)

    async def _run_regular(self, check: CheckBase) -> None:
        async with self._lock(check.name):
            result = await run_tracked(check, self.ctx, self.state)
            if result.status is Status.DOWN:
                await self._refresh_parents(check)
            try:
                transitions = self.state.observe(result)
            except KeyError:
                return  # removed by a reload while it ran
            view = self.state.check_state(check.name)
            self.latest[check.name] = result
            self._on_run(check, result, view, transitions)

    async def _refresh_parents(self, check: CheckBase) -> None:
        """Before calling a check down, run its parents (failover.refresh_first)."""
        for parent in check.depends_on:
            if refresh_first(parent, self.state):
                with contextlib.suppress(KeyError):
                    await self._run_regular(self.config.check(parent))

    def _lock(self, check: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """One run of a check at a time, also when a child asks for its parent early.

        The scheduler never overlaps a check with itself; only a parent can be asked
        for out of turn (_refresh_parents), so only parents get a lock of their own."""
        if check not in self._parents:
            return _NO_LOCK
        return self._locks.setdefault(check, asyncio.Lock())

    async def _run_standby(self, check: CheckBase) -> None:
        """Probe the alternates that are not serving, so a dead standby is known early."""
        async for result in run_standby(check, self.ctx, self.state):
            transitions = self.state.observe_standby(check.name, result, os.urandom(16).hex())
            self._on_standby(check, result, transitions)
