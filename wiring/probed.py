"""The daemon's object graph: outputs, heartbeats, probe context, state, metrics, the
monitor that runs checks, the scheduler that says when, and what reports their runs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from config import secret_values
from core.clock import Clock, SystemClock
from core.heartbeats import HeartbeatStore
from core.redact import Scrubber
from core.result import CheckResult, NodeResult
from engine.failover import STANDBY, jobs_for
from engine.monitor import Monitor
from engine.notify import Notifier
from engine.schedule import Scheduler
from engine.state import CheckStateView, StateTracker, Transition
from engine.status import StatusNotice, status_line
from events.ecs import check_event, daemon_event, observer, transition_event
from events.log import Pipeline
from events.outputs.reconcile import OutputSet, close_all
from probes import PROBES
from probes.base import ProbeContext
from web.metrics import Metrics
from web.push import PushHeartbeats

if TYPE_CHECKING:
    from config.checks import CheckBase
    from config.probe_config import ProbeConfig

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class DaemonGraph:
    """Every part of a running daemon, each whole from the start."""

    clock: Clock
    notifier: Notifier
    events: Pipeline
    outputs: OutputSet
    push: PushHeartbeats
    ctx: ProbeContext
    state: StateTracker
    metrics: Metrics
    monitor: Monitor
    scheduler: Scheduler
    status: StatusNotice

    async def open_outputs(self, config: ProbeConfig) -> Scrubber:
        """Route events to the config's outputs (events.outputs.reconcile says which are
        kept, opened and closed); returns the config's scrubber."""
        scrub = Scrubber(secret_values(config))
        stale = await self.outputs.reconcile(config.outputs)
        self.events.route(self.outputs.outputs, scrub)
        await close_all(stale)
        return scrub

    async def adopt(self, config: ProbeConfig) -> Scrubber:
        """A reloaded config, part by part; checks, nodes and outputs keep what they had
        by name. Returns the new config's scrubber."""
        if config.state_dir != self.monitor.config.state_dir:
            store = HeartbeatStore(config.state_dir, clock=self.clock)
            self.push.store = self.ctx.heartbeats = store
        self.monitor.reconfigure(config)
        self.ctx.forget()
        PROBES.prepare(config.checks)
        await self.push.watch()
        scrub = await self.open_outputs(config)
        self.state.reconfigure(config)
        self.metrics.keep_only({c.name: [n.name for n in c.nodes] for c in config.checks})
        self.scheduler.set_jobs(jobs_for(config), concurrency=config.concurrency)
        self.monitor.forget_removed()
        return scrub


def build_daemon(
    config: ProbeConfig,
    *,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
    environ: Mapping[str, str] = os.environ,
    stream: TextIO | None = None,
    events: Pipeline | None = None,
) -> DaemonGraph:
    """The graph for ``config``. ``stream`` receives the JSON events of a ``stderr``
    output (tests); ``clock``, ``notifier`` and the event pipeline are the process's
    own unless given (tests give their own pipeline)."""
    if events is None:
        events = Pipeline(stream=stream)
        events.install()  # structlog's loggers write through it too
    emit: Emit = events.emit
    clock = clock or SystemClock()
    notifier = notifier or Notifier.from_env(environ, on_error=_notify_failed(emit))
    outputs = OutputSet(stderr=stream, hostname=observer()["hostname"])
    store = HeartbeatStore(config.state_dir, clock=clock)
    ctx = ProbeContext(clock=clock, heartbeats=store)
    PROBES.prepare(config.checks)
    state = StateTracker(config, clock=clock)
    metrics = Metrics(version=str(observer()["version"]), outputs=lambda: outputs.outputs)
    # The line counts the checks of the config the monitor runs (bound below).
    status = StatusNotice(
        notifier, clock, lambda: status_line(len(monitor.config.checks), state.counts())
    )
    reports = _Reports(metrics, emit, status)
    monitor = Monitor(
        config,
        ctx,
        state,
        on_run=reports.run,
        on_standby=reports.standby,
        on_error=reports.error,
    )
    scheduler = Scheduler(
        clock=clock,
        concurrency=config.concurrency,
        run=monitor.run_job,
        on_lateness=lambda job, late: metrics.observe_lateness(late),
        on_skip=lambda job: metrics.count_skip(job.key.removesuffix(STANDBY)),
    )
    scheduler.set_jobs(jobs_for(config))
    push = PushHeartbeats(store, lambda: monitor.config, emit, clock=clock)
    return DaemonGraph(
        clock, notifier, events, outputs, push, ctx, state, metrics, monitor, scheduler, status
    )


class _Reports:
    """What becomes of a run: metrics, events, and systemd's STATUS= line."""

    def __init__(self, metrics: Metrics, emit: Emit, status: StatusNotice) -> None:
        self.metrics = metrics
        self.emit = emit
        self.status = status

    def run(
        self,
        check: CheckBase,
        result: CheckResult,
        view: CheckStateView,
        transitions: list[Transition],
    ) -> None:
        self.metrics.observe(result, view)
        self.emit(check_event(result, view))
        self._transitions(check, transitions)

    def standby(self, check: CheckBase, result: NodeResult, transitions: list[Transition]) -> None:
        self.metrics.observe_node(check.name, result)
        self._transitions(check, transitions)

    def error(self, name: str, exc: Exception) -> None:
        self.emit(
            daemon_event(
                "internal-error",
                f"{name}: {type(exc).__name__}: {exc}",
                level="error",
                outcome="failure",
                check=name,
            )
        )

    def _transitions(self, check: CheckBase, transitions: list[Transition]) -> None:
        for transition in transitions:
            self.metrics.observe_transition(transition)
            self.emit(transition_event(transition, kind=check.kind, title=check.title))
        self.status.update()


def _notify_failed(emit: Emit) -> Callable[[str], None]:
    def failed(message: str) -> None:
        with contextlib.suppress(Exception):
            emit(daemon_event("notify-failed", message, level="warning", outcome="failure"))

    return failed
