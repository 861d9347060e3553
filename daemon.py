"""``probed``: the daemon. Every check on its own rhythm, states with hysteresis, systemd.

The same runner and probes as ``probe --all``; on top of them a scheduler (when), the
state tracker (what a run means: blip or outage, failover, failback, flapping), the
HTTP endpoint (metrics, status, health) and the systemd notify protocol (ready,
watchdog, reload, stop). The parts are built by the composition root (wiring/probed.py);
what is left here is the life cycle: start, reload, stop, signals and the watchdog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from config import secret_values
from config.load import ConfigError, load_config, load_for
from core.heartbeats import HeartbeatStore
from core.redact import Scrubber
from engine.loop import run as run_loop
from engine.loop import settle_heap
from engine.notify import Notifier, keep_alive, watchdog_interval
from engine.status import status_stream
from events.ecs import daemon_event
from events.log import Pipeline
from events.outputs import Output
from web.app import build_app, serve
from wiring.probed import build_daemon

if TYPE_CHECKING:
    from aiohttp import web

    from config.probe_config import ProbeConfig
    from core.clock import Clock

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

    raise_open_files_limit()

    async def daemon() -> int:  # the graph is built on the loop it runs on
        return await Daemon(path, config, freeze_heap=True).run()

    try:
        return run_loop(daemon())
    except StartupError as exc:
        print(f"probed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def raise_open_files_limit() -> None:
    """The soft RLIMIT_NOFILE up to the hard one (commonly 1024 of 524288): probes, outputs
    and the endpoint share the descriptors, and the endpoint takes at most a quarter of
    them (web/app.py). Where raising is refused, the limit stays as it was; the unit sets
    both with LimitNOFILE=."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
        events: Pipeline | None = None,
        freeze_heap: bool = False,
    ) -> None:
        """``stream`` receives the JSON events (stderr by default; journald reads it);
        ``events`` is the pipeline they take (the process's own unless given);
        ``freeze_heap`` is for the daemon process alone (see _settle_heap)."""

        self.path = path
        self.environ = environ
        self.graph = graph = build_daemon(
            config, clock=clock, notifier=notifier, environ=environ, stream=stream, events=events
        )
        self.clock, self.notifier, self.events = graph.clock, graph.notifier, graph.events
        self.emit = graph.events.emit
        self.ctx, self.state, self.monitor = graph.ctx, graph.state, graph.monitor
        self.metrics, self.scheduler, self.push = graph.metrics, graph.scheduler, graph.push
        self.status, self._outputs = graph.status, graph.outputs
        self._scrub = Scrubber(secret_values(config))
        self.web: web.AppRunner | None = None
        self._started = False
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._freeze_heap = freeze_heap

    @property
    def config(self) -> ProbeConfig:
        return self.monitor.config

    @property
    def heartbeats(self) -> HeartbeatStore:
        return self.push.store

    @property
    def outputs(self) -> list[Output]:
        return self._outputs.outputs

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
        if self._freeze_heap:  # engine.loop.settle_heap says why
            settle_heap()

    async def start(self) -> None:

        self._scrub = await self.graph.open_outputs(self.config)
        await self.push.watch()
        self._started = True
        await self._serve(self.config.listen)
        self._spawn(self.scheduler.run_forever(), name="scheduler")
        if (interval := watchdog_interval(self.environ)) is not None:
            watchdog = keep_alive(self.notifier, self.clock, interval, self.health, self._withheld)
            self._spawn(watchdog, name="watchdog")
        self.notifier.ready(self.status.line())
        self.emit(
            daemon_event(
                "daemon-start",
                f"probed started: {len(self.config.checks)} checks from {self.path}",
                checks=len(self.config.checks),
                listen=self.config.listen,
            )
        )

    async def shutdown(self) -> None:

        self.notifier.stopping()
        cancelled = await self.scheduler.stop(grace=STOP_GRACE)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._tasks.clear()
        if self.web is not None:
            await self.web.cleanup()
            self.web = None
        await self.ctx.close()
        self.push.close()  # the last counts of refused heartbeats
        self.emit(
            daemon_event(
                "daemon-stop",
                "probed stopped"
                + (f"; {cancelled} checks cancelled at the deadline" if cancelled else ""),
                cancelled=cancelled,
            )
        )
        await self._outputs.close()
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
                self.emit(
                    daemon_event(
                        "daemon-reload-failed",
                        f"reload refused, still running the previous config: {exc}",
                        level="error",
                        outcome="failure",
                    )
                )
                self.notifier.ready(self.status.line())
                return False
            self._scrub = await self.graph.adopt(new)
            self.notifier.ready(self.status.line())
            self._settle_heap()
            self.emit(
                daemon_event(
                    "daemon-reload",
                    f"config reloaded: {len(new.checks)} checks",
                    checks=len(new.checks),
                )
            )
            return True

    # --- health, watchdog ------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "stopping"
        if not self._started:
            return False, "starting"
        if not self.scheduler.healthy(self.clock.monotonic()):
            return False, "the scheduler loop has stalled"
        count, running = len(self.config.checks), self.scheduler.running
        return True, f"{count} checks scheduled, {running} running"

    def _withheld(self, reason: str) -> None:
        self.emit(
            daemon_event(
                "watchdog-withheld",
                f"watchdog ping withheld: {reason}",
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
                status=lambda: status_stream(self.config, self.state, self.monitor.latest),
                healthy=self.health,
                scrub=self._scrub,
                emit=self.emit,
                push_token=self.push.token,
                record_heartbeat=self.push.record,
                reject_heartbeat=self.push.rejected,
            )
            try:
                runner = await serve(app, listen)
            except OSError as exc:
                raise StartupError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
        if self.web is not None:
            await self.web.cleanup()
        self.web = runner

    def _spawn(self, coro: Any, name: str | None = None) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


if __name__ == "__main__":
    sys.exit(main())
