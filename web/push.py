"""The daemon's side of push freshness checks: whose token a heartbeat must carry, and
recording it in the heartbeat store (which the checks read through the probe context).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from config.kinds.freshness import PushSource
from core.heartbeats import HeartbeatStore
from events.ecs import daemon_event

if TYPE_CHECKING:
    from pydantic import SecretStr

    from config.probe_config import ProbeConfig


class PushHeartbeats:
    """Heartbeats for the push checks of the running config (``config()``)."""

    def __init__(
        self,
        store: HeartbeatStore,
        config: Callable[[], ProbeConfig],
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.store = store
        self._config = config
        self._emit = emit

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
