"""Prometheus metrics: blackbox_exporter's names where they mean the same, ours otherwise.

The numbers live in plain containers keyed by check and node, and a prometheus_client
custom collector turns them into metric families when Prometheus scrapes. One client
object per series cost about 100 MB with 10,000 checks; this way a series costs a dict
entry, and a scrape shows exactly the configured checks (a reload's removals need no
cleanup beyond dropping keys). Labels are check and node names, never a URL or an error.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from core.result import CheckResult, NodeResult, NodeStatus
from web.stream import pieces

if TYPE_CHECKING:
    from engine.state import CheckStateView, Transition
    from events.outputs import Output

__all__ = ["CONTENT_TYPE", "Metrics"]

LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_K = TypeVar("_K")


@dataclass(slots=True)
class _Reading:
    """What the last run of a node measured."""

    success: bool
    duration: float
    status_code: int | None
    phases: tuple[tuple[str, float], ...]
    cert_expiry: float | None


@dataclass(slots=True)
class _CheckView:
    state: str
    flapping: bool
    active_node: str | None


def _dict() -> dict[Any, Any]:
    return {}


@dataclass(eq=False)  # identity-hashed: the registry keys collectors by object
class _Tables(Collector):
    """Every number we expose; ``collect`` renders them as metric families."""

    version: str
    readings: dict[tuple[str, str], _Reading] = field(default_factory=_dict)
    checks: dict[str, _CheckView] = field(default_factory=_dict)
    runs: dict[tuple[str, str], int] = field(default_factory=_dict)
    attempts: dict[tuple[str, str, str], int] = field(default_factory=_dict)
    failovers: dict[str, int] = field(default_factory=_dict)
    failbacks: dict[str, int] = field(default_factory=_dict)
    changes: dict[tuple[str, str], int] = field(default_factory=_dict)
    skipped: dict[str, int] = field(default_factory=_dict)
    lateness: list[int] = field(default_factory=lambda: [0] * (len(LATENESS_BUCKETS) + 1))
    lateness_sum: float = 0.0
    output_events: dict[tuple[str, str], int] = field(default_factory=_dict)
    spool_bytes: dict[str, float] = field(default_factory=_dict)

    def snapshot(self) -> _Tables:
        """A copy whose containers the event loop will not change while a thread renders."""
        tables = copy.copy(self)
        for name in (
            "readings",
            "checks",
            "runs",
            "attempts",
            "failovers",
            "failbacks",
            "changes",
            "skipped",
            "lateness",
            "output_events",
            "spool_bytes",
        ):
            setattr(tables, name, copy.copy(getattr(self, name)))
        return tables

    def collect(self) -> Iterator[Metric]:
        """The families with a handful of series; the per-check and per-node ones are
        formatted by _series_text (see _render)."""
        yield _counter(
            "hotline_probe_failovers_total", "Moves to an alternate node", ["check"], self.failovers
        )
        yield _counter(
            "hotline_probe_failbacks_total",
            "Moves back to the preferred node",
            ["check"],
            self.failbacks,
        )
        yield _counter(
            "hotline_probe_state_changes_total",
            "Hard state changes, by new state",
            ["check", "to"],
            self.changes,
        )
        yield _counter(
            "hotline_probe_runs_skipped_total",
            "Runs skipped because the check's previous run was still going",
            ["check"],
            self.skipped,
        )
        yield HistogramMetricFamily(
            "hotline_probe_schedule_lateness_seconds",
            "Actual minus planned start of a run",
            buckets=_cumulative(self.lateness),
            sum_value=self.lateness_sum,
        )
        yield _counter(
            "hotline_probe_output_events_total",
            "Events handled by each output: sent, spooled (waiting on disk or in memory), "
            "replayed from the spool, dropped",
            ["output", "outcome"],
            self.output_events,
        )
        spool = GaugeMetricFamily(
            "hotline_probe_output_spool_bytes",
            "Bytes of events waiting for an output's collector",
            labels=["output"],
        )
        for output, size in self.spool_bytes.items():
            spool.add_metric((output,), size)
        yield spool
        info = GaugeMetricFamily(
            "hotline_probe_build_info", "Version of hotline-probe", labels=["version"]
        )
        info.add_metric((self.version,), 1)
        yield info


class Metrics:
    """Updated by the daemon on the event loop; rendered off it, from a snapshot."""

    def __init__(self, *, version: str, outputs: Callable[[], Iterable[Output]] = tuple) -> None:
        self.tables = _Tables(version)
        self.outputs = outputs
        """The event outputs whose counters a scrape shows."""

    def observe(self, result: CheckResult, state: CheckStateView) -> None:
        t = self.tables
        _inc(t.runs, (result.name, str(state.soft)))
        for node in result.nodes:
            self.observe_node(result.name, node)
        t.checks[result.name] = _CheckView(str(state.hard), state.flapping, state.active_node)

    def observe_node(self, check: str, node: NodeResult) -> None:
        if node.status is NodeStatus.SKIPPED:
            return
        for attempt in node.attempts:
            outcome = "failure" if attempt.error else "success"
            _inc(self.tables.attempts, (check, node.name, outcome))
        last = node.last
        details = last.details if last else {}
        self.tables.readings[(check, node.name)] = _Reading(
            success=node.status is NodeStatus.UP,
            duration=node.duration,
            status_code=details.get("status_code"),
            phases=tuple(last.phases.items()) if last else (),
            cert_expiry=details.get("tls_not_after_unix"),
        )

    def observe_transition(self, transition: Transition) -> None:
        t = self.tables
        if transition.action == "failover":
            _inc(t.failovers, transition.check)
        elif transition.action == "failback":
            _inc(t.failbacks, transition.check)
        elif transition.action == "state-change" and transition.to_state:
            _inc(t.changes, (transition.check, transition.to_state))

    def observe_lateness(self, seconds: float) -> None:
        self.tables.lateness[bisect.bisect_left(LATENESS_BUCKETS, seconds)] += 1
        self.tables.lateness_sum += seconds

    def count_skip(self, check: str) -> None:
        _inc(self.tables.skipped, check)

    def keep_only(self, wanted: Mapping[str, Iterable[str]]) -> None:
        """Forget checks and nodes that a reload removed."""
        t = self.tables
        nodes = {(check, node) for check, names in wanted.items() for node in names}
        t.readings = {k: v for k, v in t.readings.items() if k in nodes}
        t.attempts = {k: v for k, v in t.attempts.items() if (k[0], k[1]) in nodes}
        t.runs = {k: v for k, v in t.runs.items() if k[0] in wanted}
        t.changes = {k: v for k, v in t.changes.items() if k[0] in wanted}
        t.checks = {k: v for k, v in t.checks.items() if k in wanted}
        t.failovers = {k: v for k, v in t.failovers.items() if k in wanted}
        t.failbacks = {k: v for k, v in t.failbacks.items() if k in wanted}
        t.skipped = {k: v for k, v in t.skipped.items() if k in wanted}

    def observe_outputs(self, outputs: Iterable[Output]) -> None:
        """Copy the outputs' counters (they count on every event; we read at scrape time)."""
        t = self.tables
        t.output_events = {(o.name, outcome): n for o in outputs for outcome, n in o.counts.items()}
        t.spool_bytes = {
            o.name: gauges["spool_bytes"]
            for o in outputs
            if "spool_bytes" in (gauges := o.gauges())
        }

    def chunks(self) -> AsyncGenerator[bytes, None]:
        """The page in pieces (web/stream.py), formatted from a snapshot as it is
        written; the few small families, rendered by prometheus_client, end it."""
        self.observe_outputs(self.outputs())
        tables = self.tables.snapshot()
        return pieces(_series_lines(tables), tail=_registry_text(tables))


def _render(tables: _Tables) -> bytes:
    return _series_text(tables).encode() + _registry_text(tables)


def _registry_text(tables: _Tables) -> bytes:
    """The families with a handful of series, as prometheus_client renders them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(tables)
    return generate_latest(registry)


_RUNS = ("hotline_probe_checks_total", "Check runs finished, by outcome", ["check", "outcome"])
_ATTEMPTS = (
    "hotline_probe_attempts_total",
    "Probe attempts, by outcome",
    ["check", "node", "outcome"],
)


def _go(value: float) -> str:
    """A sample value as prometheus_client writes it (Go's float formatting)."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _label(value: str) -> str:
    """A label value as the text format writes it. Check and node names cannot hold a
    quote, backslash or newline (config validation), phases and states are ours; the
    escape is here for anything else."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _series_text(t: _Tables) -> str:
    return "".join(_series_lines(t))


def _series_lines(t: _Tables) -> Iterator[str]:
    """The families with one series per check or node, in the exposition format that
    prometheus_client writes (tests/test_metrics.py compares the two byte for byte).

    prometheus_client builds a sample object and validates and escapes every label of
    every sample: for 10,000 checks that took 0.75 s of CPU on each scrape, holding the
    loop against the scheduler. Here each check's and node's label text is made once."""
    g = _go

    def head(name: str, kind: str, text: str) -> str:
        return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"

    node = {key: f'check="{_label(key[0])}",node="{_label(key[1])}"' for key in t.readings}
    readings = t.readings
    yield head("probe_success", "gauge", "1 if the node answered as expected")
    for key, r in readings.items():
        yield f"probe_success{{{node[key]}}} {'1.0' if r.success else '0.0'}\n"
    yield head(
        "probe_duration_seconds", "gauge", "Seconds spent on the node in its last run, all attempts"
    )
    for key, r in readings.items():
        yield f"probe_duration_seconds{{{node[key]}}} {g(r.duration)}\n"
    yield head("probe_http_status_code", "gauge", "HTTP status of the last attempt")
    for key, r in readings.items():
        if r.status_code is not None:
            yield f"probe_http_status_code{{{node[key]}}} {g(r.status_code)}\n"
    yield head("probe_http_duration_seconds", "gauge", "Seconds per phase of the last attempt")
    for key, r in readings.items():
        for phase, seconds in r.phases:
            yield (
                f'probe_http_duration_seconds{{{node[key]},phase="{_label(phase)}"}} {g(seconds)}\n'
            )
    yield head(
        "probe_ssl_earliest_cert_expiry", "gauge", "Unix time the peer's certificate expires"
    )
    for key, r in readings.items():
        if r.cert_expiry is not None:
            yield f"probe_ssl_earliest_cert_expiry{{{node[key]}}} {g(r.cert_expiry)}\n"

    checks = t.checks
    check = {name: f'check="{_label(name)}"' for name in checks}
    yield head(
        "hotline_probe_check_state", "gauge", "1 for the check's hard state (one series per check)"
    )
    for name, view in checks.items():
        yield f'hotline_probe_check_state{{{check[name]},state="{_label(view.state)}"}} 1.0\n'
    yield head("hotline_probe_check_flapping", "gauge", "1 while the check flaps")
    for name, view in checks.items():
        yield f"hotline_probe_check_flapping{{{check[name]}}} {'1.0' if view.flapping else '0.0'}\n"
    yield head("hotline_probe_active_node", "gauge", "1 for the node serving the check")
    for name, view in checks.items():
        if view.active_node is not None:
            active = _label(view.active_node)
            yield f'hotline_probe_active_node{{{check[name]},node="{active}"}} 1.0\n'

    yield head(_RUNS[0], "counter", _RUNS[1])
    for (name, outcome), n in t.runs.items():
        yield f'{_RUNS[0]}{{check="{_label(name)}",outcome="{_label(outcome)}"}} {g(n)}\n'
    yield head(_ATTEMPTS[0], "counter", _ATTEMPTS[1])
    for (name, node_name, outcome), n in t.attempts.items():
        labels = f'check="{_label(name)}",node="{_label(node_name)}",outcome="{_label(outcome)}"'
        yield f"{_ATTEMPTS[0]}{{{labels}}} {g(n)}\n"


def _inc(table: dict[_K, int], key: _K) -> None:
    table[key] = table.get(key, 0) + 1


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    bounds = [*(str(bound) for bound in LATENESS_BUCKETS), "+Inf"]
    running, out = 0, []
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        out.append((bound, float(running)))
    return out


def _counter(
    name: str, documentation: str, labels: list[str], values: Mapping[Any, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name.removesuffix("_total"), documentation, labels=labels)
    for key, value in values.items():
        family.add_metric(key if isinstance(key, tuple) else (key,), value)
    return family
