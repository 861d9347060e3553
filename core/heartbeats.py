"""Push heartbeats: when each push check last heard from its poster, kept on disk.

The daemon records them (``POST /heartbeat/<check>``) and its freshness probes read them;
a one-shot ``probe`` on the same host reads the daemon's file. The file is replaced
atomically (a temporary file, then a rename), so a reader never sees half of it and a
crash never leaves a torn one behind. Times are UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.clock import Clock, SystemClock

FILE_NAME = "heartbeats.json"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class Heartbeat:
    last: datetime | None = None
    """When the poster last called; None if it never has."""
    watching_since: datetime | None = None
    """When the daemon began expecting heartbeats for the check (first started with it).
    Silence for longer than max_age since then is stale, not "no data yet"."""


class HeartbeatStore:
    """Heartbeats by check name, read from ``directory`` on first use.

    ``directory`` None keeps them in memory only (tests, a demo without a state
    directory). ``problem`` says why the file could not be read, for the probe to tell.
    """

    def __init__(self, directory: Path | None, *, clock: Clock | None = None) -> None:
        self.path = directory / FILE_NAME if directory is not None else None
        self.clock: Clock = clock or SystemClock()
        self.problem: str | None = None
        self._entries: dict[str, Heartbeat] | None = None
        self._dirty = False
        self._lock = asyncio.Lock()

    async def get(self, check: str) -> Heartbeat:
        return (await self._loaded()).get(check, Heartbeat())

    async def record(self, check: str, at: datetime | None = None) -> datetime:
        """A sign of life from ``check``'s poster, now (or ``at``); raises OSError when it
        cannot be written to disk (it is kept in memory all the same)."""
        moment = at or self.clock.now()
        entries = await self._loaded()
        entries[check] = Heartbeat(moment, entries.get(check, Heartbeat()).watching_since)
        await self._persist()
        return moment

    async def watch(self, checks: Iterable[str]) -> None:
        """Expect heartbeats for exactly ``checks`` from now on: new ones start their
        watch now, others are forgotten. Writes only if something changed; OSError as
        for ``record``."""
        wanted = set(checks)
        entries = await self._loaded()
        now = self.clock.now()
        changed = False
        for name in wanted - set(entries):
            entries[name] = Heartbeat(None, now)
            changed = True
        for name in [n for n in entries if n not in wanted]:
            del entries[name]
            changed = True
        for name, entry in list(entries.items()):
            if entry.watching_since is None:  # recorded (by a test, the demo) before watched
                entries[name] = Heartbeat(entry.last, now)
                changed = True
        if changed:
            await self._persist()

    # --- the file --------------------------------------------------------------------

    async def _loaded(self) -> dict[str, Heartbeat]:
        if self._entries is None:
            # Off the event loop: the state directory may sit on a slow disk, and the
            # first probe of a push check must not stall every other check meanwhile.
            entries = await asyncio.to_thread(self._read)
            if self._entries is None:  # another caller may have loaded it meanwhile
                self._entries = entries
        return self._entries

    def _read(self) -> dict[str, Heartbeat]:
        if self.path is None:
            return {}
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            checks = document["checks"]
            return {str(name): _entry(fields) for name, fields in checks.items()}
        except FileNotFoundError:
            return {}  # no daemon has recorded anything here yet
        except OSError as exc:
            self.problem = f"cannot read {self.path}: {exc.strerror or exc}"
        except (ValueError, KeyError, TypeError, AttributeError):
            self.problem = f"{self.path} is not a heartbeat file (it is ignored)"
        return {}

    async def _persist(self) -> None:
        if self.path is None:
            return
        self._dirty = True
        # One writer at a time, each writing the newest entries: a burst of heartbeats
        # costs one write per writer that waited, never an older file over a newer one.
        async with self._lock:
            if not self._dirty:
                return  # the write before ours already carried our change
            self._dirty = False
            document = {"version": _VERSION, "checks": _document(await self._loaded())}
            await asyncio.to_thread(_write_atomically, self.path, document)


def _entry(fields: Any) -> Heartbeat:
    return Heartbeat(_time(fields.get("last")), _time(fields.get("watching_since")))


def _time(text: Any) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        raise ValueError("naive time in the heartbeat file")
    return moment


def _document(entries: dict[str, Heartbeat]) -> dict[str, dict[str, str | None]]:
    def iso(moment: datetime | None) -> str | None:
        return moment.astimezone(UTC).isoformat() if moment is not None else None

    return {
        name: {"last": iso(entry.last), "watching_since": iso(entry.watching_since)}
        for name, entry in sorted(entries.items())
    }


def _write_atomically(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=1)
            file.flush()
            # Without it a crash right after the rename can leave an empty file behind.
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
