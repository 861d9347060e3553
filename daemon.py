"""``probed``: the daemon. Every check on its own rhythm, states with hysteresis, systemd.

The same runner and probes as ``probe --all``; on top of them a scheduler (when), the
state tracker (what a run means: blip or outage, failover, failback, flapping), the
HTTP endpoint (metrics, status, health) and the systemd notify protocol (ready,
watchdog, reload, stop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from config import secret_values
from config.load import ConfigError, load_config, load_for
from config.models import PushSource
from core.clock import Clock, SystemClock
from core.heartbeats import HeartbeatStore
from core.redact import Scrubber
from core.result import CheckResult, Status
from engine.failover import STANDBY, jobs_for, parents_in, refresh_first, run_standby, run_tracked
from engine.loop import run as run_loop
from engine.notify import Notifier, watchdog_interval
from engine.schedule import Job, Scheduler
from engine.state import StateTracker, Transition
from engine.status import status_line, status_stream
from events import log
from events.ecs import check_event, daemon_event, observer, transition_event
from events.outputs import Output
from events.outputs.reconcile import OutputSet, close_all
from probes import PROBES
from probes.base import ProbeContext
from web.app import build_app, serve
from web.metrics import Metrics

if TYPE_CHECKING:
    from aiohttp import web
    from pydantic import SecretStr

    from config.models import CheckBase, ProbeConfig

UNKNOWN = 3
STOP_GRACE = 10.0  # seconds in-flight checks get to finish on SIGTERM before cancellation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="probed",
        description="Run the configured checks continuously (a systemd Type=notify service).",
    )
    parser.add_argument("-c", "--config", metavar="PATH", help="config file")
    parser.add_argument("--check-config", action="store_true", help="validate and exit")
    args = parser.parse_args(argv)

    if (loaded := load_for("probed", args.config)) is None:
        return UNKNOWN
    path, config = loaded
    if args.check_config:
        print(f"{path}: OK, {len(config.checks)} checks")
        return 0
    try:
        return run_loop(Daemon(path, config, freeze_heap=True).run())
    except StartupError as exc:
        print(f"probed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


_NO_LOCK: contextlib.nullcontext[None] = contextlib.nullcontext()


class StartupError(Exception):
    """The daemon cannot start (the listen address is taken, say); said in one line."""


class Daemon:
    def __init__(
        self,
        path: Path,
        config: ProbeConfig,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        environ: Mapping[str, str] = os.environ,
        stream: TextIO | None = None,
        freeze_heap: bool = False,
    ) -> None:
        """``stream`` receives the JSON events (stderr by default; journald reads it);
        ``freeze_heap`` is for the daemon process alone (see _settle_heap)."""

        self.path = path
        self.config = config
        self._parents = parents_in(config)
        self.clock: Clock = clock or SystemClock()
        self.notifier = notifier or Notifier.from_env(environ, on_error=self._notify_failed)
        self.environ = environ
        self.latest: dict[str, CheckResult] = {}
        self.web: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_status = ""
        self._output_set = OutputSet(stderr=stream, hostname=observer()["hostname"])
        self.outputs: list[Output] = []
        self._status_at = float("-inf")
        self._freeze_heap = freeze_heap

    # --- life cycle ------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload(), name="reload"))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        try:
            await self.start()
            self._settle_heap()
            await self._stop.wait()
        finally:
            await self.shutdown()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def _settle_heap(self) -> None:
        """Move what start-up or a reload built (modules, config, state, metrics) out of
        the cyclic collector's sight.

        Those objects live until the next reload, and most are in the oldest
        generation: every full collection walked all of them again (with 10,000
        checks, most of the daemon's CPU beyond the probes themselves). Frozen objects
        are still freed by reference counting when a reload lets them go; a reload
        unfreezes first, so that the cycles the old generation left (an old web app,
        runs that were in flight) are collected before the new heap is frozen. That full
        collection takes a moment at 10,000 checks, once per start or reload.
        """
        if self._freeze_heap:
            gc.unfreeze()  # the previous generation's cycles (an old web app) may go now
            gc.collect()
            gc.freeze()

    async def start(self) -> None:

        await self._open_outputs(self.config)
        self.heartbeats = HeartbeatStore(self.config.state_dir, clock=self.clock)
        self.ctx: ProbeContext = ProbeContext(clock=self.clock, heartbeats=self.heartbeats)
        PROBES.prepare(self.config.checks)
        await self._watch_push_checks()
        self.state: StateTracker = StateTracker(self.config, clock=self.clock)
        self.metrics: Metrics = Metrics(version=_version())
        self.metrics.outputs = lambda: self.outputs
        self.scheduler = Scheduler(
            clock=self.clock,
            concurrency=self.config.concurrency,
            run=self._run_job,
            on_lateness=lambda job, late: self.metrics.observe_lateness(late),
            on_skip=lambda job: self.metrics.count_skip(job.key.removesuffix(STANDBY)),
        )
        self.scheduler.set_jobs(jobs_for(self.config))
        await self._serve(self.config.listen)
        self._spawn(self.scheduler.run_forever(), name="scheduler")
        if (interval := watchdog_interval(self.environ)) is not None:
            self._spawn(self._watchdog(interval), name="watchdog")
        self.notifier.ready(self._status_line())
        log.emit(
            daemon_event(
                "daemon-start",
                f"probed started: {len(self.config.checks)} checks from {self.path}",
                checks=len(self.config.checks),
                listen=self.config.listen,
            )
        )

    async def shutdown(self) -> None:

        self.notifier.stopping()
        scheduler = getattr(self, "scheduler", None)
        cancelled = await scheduler.stop(grace=STOP_GRACE) if scheduler else 0
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._tasks.clear()
        if self.web is not None:
            await self.web.cleanup()
            self.web = None
        if hasattr(self, "ctx"):
            await self.ctx.close()
        log.emit(
            daemon_event(
                "daemon-stop",
                "probed stopped"
                + (f"; {cancelled} checks cancelled at the deadline" if cancelled else ""),
                cancelled=cancelled,
            )
        )
        await self._output_set.close()
        sys.stderr.flush()
        self.notifier.close()

    async def reload(self) -> bool:
        """SIGHUP: load the file again; a bad file is refused and the running config stays."""

        async with self._reload_lock:
            self.notifier.reloading()
            try:
                new = await asyncio.to_thread(load_config, self.path)
                if new.listen != self.config.listen:
                    await self._serve(new.listen)
            except (ConfigError, StartupError) as exc:
                log.emit(
                    daemon_event(
                        "daemon-reload-failed",
                        f"reload refused, still running the previous config: {exc}",
                        level="error",
                        outcome="failure",
                    )
                )
                self.notifier.ready(self._status_line())
                return False
            if new.state_dir != self.config.state_dir:
                self.heartbeats = HeartbeatStore(new.state_dir, clock=self.clock)
                self.ctx.heartbeats = self.heartbeats
            self.config = new
            self._parents = parents_in(new)
            self.ctx.forget()
            PROBES.prepare(new.checks)
            await self._watch_push_checks()
            await self._open_outputs(new)
            self.state.reconfigure(new)
            self.metrics.keep_only({c.name: [n.name for n in c.nodes] for c in new.checks})
            self.scheduler.set_jobs(jobs_for(new), concurrency=new.concurrency)
            names = {c.name for c in new.checks}
            self.latest = {k: v for k, v in self.latest.items() if k in names}
            self.notifier.ready(self._status_line())
            self._settle_heap()
            log.emit(
                daemon_event(
                    "daemon-reload",
                    f"config reloaded: {len(new.checks)} checks",
                    checks=len(new.checks),
                )
            )
            return True

    # --- running checks --------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
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
            log.emit(
                daemon_event(
                    "internal-error",
                    f"{name}: {type(exc).__name__}: {exc}",
                    level="error",
                    outcome="failure",
                    check=name,
                )
            )

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
            self.metrics.observe(result, view)
            log.emit(check_event(result, view))
            self._report(check, transitions)

    async def _refresh_parents(self, check: CheckBase) -> None:
        """Before calling a check down, run its parents (engine.failover.refresh_first)."""

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
            self.metrics.observe_node(check.name, result)
            transitions = self.state.observe_standby(check.name, result, os.urandom(16).hex())
            self._report(check, transitions)

    def _report(self, check: CheckBase, transitions: list[Transition]) -> None:

        for transition in transitions:
            self.metrics.observe_transition(transition)
            log.emit(transition_event(transition, kind=check.kind, title=check.title))
        # Counting states walks every check: at most once a second, not once per run.
        now = self.clock.monotonic()
        if now - self._status_at >= 1.0:
            self._status_at = now
            line = self._status_line()
            if line != self._last_status:
                self._last_status = line
                self.notifier.status(line)

    # --- health, status, watchdog ----------------------------------------------------

    def health(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "stopping"
        scheduler = getattr(self, "scheduler", None)
        if scheduler is None:
            return False, "starting"
        if not scheduler.healthy(self.clock.monotonic()):
            return False, "the scheduler loop has stalled"
        return True, f"{len(self.config.checks)} checks scheduled, {scheduler.running} running"

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd only while the scheduler really turns; a hang gets us restarted."""

        withheld = False
        while True:
            await self.clock.sleep(interval)
            ok, reason = self.health()
            if ok:
                self.notifier.watchdog()
                withheld = False
            elif not withheld:
                withheld = True
                log.emit(
                    daemon_event(
                        "watchdog-withheld",
                        f"watchdog ping withheld: {reason}",
                        level="error",
                        outcome="failure",
                    )
                )

    def status_stream(self) -> dict[str, Any]:
        return status_stream(self.config, self.state, self.latest)

    def _status_line(self) -> str:
        counts = self.state.counts() if hasattr(self, "state") else {}
        return status_line(len(self.config.checks), counts)

    # --- heartbeats of push freshness checks -----------------------------------------

    def _push_token(self, name: str) -> SecretStr | None:
        try:
            check = self.config.check(name)
        except KeyError:
            return None
        source = getattr(check, "source", None)
        return source.token if isinstance(source, PushSource) else None

    async def _record_heartbeat(self, name: str) -> None:
        try:
            await self.heartbeats.record(name)
        except OSError as exc:
            self._heartbeats_not_saved(exc)

    async def _watch_push_checks(self) -> None:
        """Expect heartbeats for the push checks of the running config (their wait for
        a first heartbeat starts now, or continues from before a restart)."""
        names = [
            c.name for c in self.config.checks if isinstance(getattr(c, "source", None), PushSource)
        ]
        try:
            await self.heartbeats.watch(names)
        except OSError as exc:
            self._heartbeats_not_saved(exc)

    def _heartbeats_not_saved(self, exc: OSError) -> None:
        log.emit(
            daemon_event(
                "heartbeats-not-saved",
                f"cannot write {self.heartbeats.path}: {exc.strerror or exc}; heartbeats "
                "are kept in memory and lost at a restart",
                level="error",
                outcome="failure",
            )
        )

    # --- plumbing --------------------------------------------------------------------

    async def _serve(self, listen: str) -> None:
        """Start the endpoint on ``listen`` (or none for "off"), replacing a running one."""

        runner = None
        if listen != "off":
            app = build_app(
                metrics=self.metrics,
                status=self.status_stream,
                healthy=self.health,
                scrub=self._scrub,
                push_token=self._push_token,
                record_heartbeat=self._record_heartbeat,
            )
            try:
                runner = await serve(app, listen)
            except OSError as exc:
                raise StartupError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
        if self.web is not None:
            await self.web.cleanup()
        self.web = runner

    async def _open_outputs(self, config: ProbeConfig) -> None:
        """Route events to the config's outputs (events.outputs.reconcile says which are
        kept, opened and closed)."""
        self._scrub = Scrubber(secret_values(config))
        stale = await self._output_set.reconcile(config.outputs)
        self.outputs = self._output_set.outputs
        log.configure(outputs=self.outputs, scrubber=self._scrub)
        await close_all(stale)

    def _spawn(self, coro: Any, name: str | None = None) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify_failed(self, message: str) -> None:
        with contextlib.suppress(Exception):
            log.emit(daemon_event("notify-failed", message, level="warning", outcome="failure"))


def _version() -> str:
    from events.ecs import observer

    return str(observer()["version"])


if __name__ == "__main__":
    sys.exit(main())
