"""The daemon's side of push freshness checks: whose token a heartbeat must carry,
recording it in the heartbeat store (which the checks read through the probe context),
and reporting the refused ones without letting a flood of them flood the outputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from config.kinds.freshness import PushSource
from core.clock import Clock, SystemClock
from core.heartbeats import HeartbeatStore
from events.ecs import daemon_event, heartbeat_event

if TYPE_CHECKING:
    from pydantic import SecretStr

    from config.probe_config import ProbeConfig


REJECTION_INTERVAL = 60.0
"""Seconds over which the refused heartbeats of one source (address and check) after the
first are counted into one event."""
_MAX_SOURCES = 1024  # sources summarised one by one; past that, together per check


@dataclass
class _Refusals:
    count: int = 0  # refused since the last event of this source
    why: str = ""
    task: asyncio.Task[None] | None = None


class PushHeartbeats:
    """Heartbeats for the push checks of the running config (``config()``)."""

    def __init__(
        self,
        store: HeartbeatStore,
        config: Callable[[], ProbeConfig],
        emit: Callable[[dict[str, Any]], None],
        *,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self._config = config
        self._emit = emit
        self._clock = clock or SystemClock()
        self._refusals: dict[tuple[str | None, str], _Refusals] = {}

    def token(self, name: str) -> SecretStr | None:
        """The token the named push check's heartbeats carry; None for any other name."""
        try:
            check = self._config().check(name)
        except KeyError:
            return None
        source = getattr(check, "source", None)
        return source.token if isinstance(source, PushSource) else None

    async def record(self, name: str) -> None:
        try:
            await self.store.record(name)
        except OSError as exc:
            self._not_saved(exc)

    async def watch(self) -> None:
        """Expect heartbeats for the push checks of the running config (their wait for
        a first heartbeat starts now, or continues from before a restart)."""
        names = [
            c.name
            for c in self._config().checks
            if isinstance(getattr(c, "source", None), PushSource)
        ]
        try:
            await self.store.watch(names)
        except OSError as exc:
            self._not_saved(exc)

    def rejected(self, check: str, why: str, peer: str | None) -> None:
        """A heartbeat refused for its token. Each was an event, so a flood of wrong
        tokens could push real events out of a full spool; now the first refusal from a
        source (peer address and check) is written at once, later ones are counted, and
        at the end of every ``REJECTION_INTERVAL`` in which some came one event carries
        their count (``hotline_probe.count``). A quiet interval ends the episode: the
        next refusal from that source is written at once again."""
        key = (peer, check)
        if key not in self._refusals and len(self._refusals) >= _MAX_SOURCES:
            key = (None, check)  # many sources: memory stays bounded
        refusals = self._refusals.get(key)
        if refusals is not None:
            refusals.count += 1
            refusals.why = why
            return
        self._emit(heartbeat_event(check, f"heartbeat for {check} refused: {why}", peer=peer))
        refusals = self._refusals[key] = _Refusals()
        refusals.task = asyncio.get_running_loop().create_task(self._summarise(key))

    async def _summarise(self, key: tuple[str | None, str]) -> None:
        while True:
            await self._clock.sleep(REJECTION_INTERVAL)
            if not self._report(key):
                del self._refusals[key]
                return

    def _report(self, key: tuple[str | None, str]) -> int:
        """Write the count of a source's refusals since its last event; how many."""
        refusals = self._refusals[key]
        count, refusals.count = refusals.count, 0
        if count:
            peer, check = key
            self._emit(
                heartbeat_event(
                    check,
                    f"heartbeat for {check} refused {count} more times "
                    f"from {peer or 'several addresses'} within "
                    f"{REJECTION_INTERVAL:g}s (last: {refusals.why})",
                    peer=peer,
                    count=count,
                )
            )
        return count

    def close(self) -> None:
        """Stopping: write the counts not yet written."""
        for key, refusals in list(self._refusals.items()):
            if refusals.task is not None:
                refusals.task.cancel()
            self._report(key)
        self._refusals.clear()

    def _not_saved(self, exc: OSError) -> None:
        self._emit(
            daemon_event(
                "heartbeats-not-saved",
                f"cannot write {self.store.path}: {exc.strerror or exc}; heartbeats "
                "are kept in memory and lost at a restart",
                level="error",
                outcome="failure",
            )
        )
