"""Prometheus metrics: blackbox_exporter's names where they mean the same, ours otherwise.

Labels are the check and node names from the config (a few hundred series at most);
never a URL or an error text. Series of checks or nodes removed by a reload are
dropped, so a renamed check does not leave a stale ``probe_success`` behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from engine.result import CheckResult, NodeResult, NodeStatus

if TYPE_CHECKING:
    from engine.state import CheckStateView, Transition

__all__ = ["CONTENT_TYPE", "Metrics"]

STATES = ("up", "degraded", "down", "unreachable", "unknown")
_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, *, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        node = ["check", "node"]
        # blackbox_exporter's names, per node of each check.
        self.success = Gauge(
            "probe_success", "1 if the node answered as expected", node, registry=r
        )
        self.duration = Gauge(
            "probe_duration_seconds", "Seconds spent on the node, all attempts", node, registry=r
        )
        self.status_code = Gauge(
            "probe_http_status_code", "HTTP status of the last attempt", node, registry=r
        )
        self.phase = Gauge(
            "probe_http_duration_seconds",
            "Seconds per phase of the last attempt",
            [*node, "phase"],
            registry=r,
        )
        self.cert_expiry = Gauge(
            "probe_ssl_earliest_cert_expiry",
            "Unix time the peer's certificate expires",
            node,
            registry=r,
        )
        # Ours.
        self.runs = Counter(
            "hotline_probe_checks_total",
            "Check runs finished, by outcome",
            ["check", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "hotline_probe_attempts_total",
            "Probe attempts, by outcome",
            [*node, "outcome"],
            registry=r,
        )
        self.lateness = Histogram(
            "hotline_probe_schedule_lateness_seconds",
            "Actual minus planned start of a run",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.skipped = Counter(
            "hotline_probe_runs_skipped_total",
            "Runs skipped because the previous run of the check was still going",
            ["check"],
            registry=r,
        )
        self.state = Gauge(
            "hotline_probe_check_state",
            "1 for the check's hard state",
            ["check", "state"],
            registry=r,
        )
        self.flapping = Gauge(
            "hotline_probe_check_flapping", "1 while the check flaps", ["check"], registry=r
        )
        self.active = Gauge(
            "hotline_probe_active_node", "1 for the node serving the check", node, registry=r
        )
        self.failovers = Counter(
            "hotline_probe_failovers_total", "Moves to an alternate node", ["check"], registry=r
        )
        self.failbacks = Counter(
            "hotline_probe_failbacks_total",
            "Moves back to the preferred node",
            ["check"],
            registry=r,
        )
        self.transitions = Counter(
            "hotline_probe_state_changes_total", "Hard state changes", ["check", "to"], registry=r
        )
        Gauge(
            "hotline_probe_build_info", "Version of hotline-probe", ["version"], registry=r
        ).labels(version).set(1)
        self._nodes: dict[str, set[str]] = {}

    # --- updates ---------------------------------------------------------------------

    def observe(self, result: CheckResult, state: CheckStateView) -> None:
        self.runs.labels(result.name, str(state.soft)).inc()
        for node in result.nodes:
            self.observe_node(result.name, node)
        for name in STATES:
            self.state.labels(result.name, name).set(1 if state.hard == name else 0)
        self.flapping.labels(result.name).set(1 if state.flapping else 0)
        for name in self._nodes.get(result.name, ()):
            self.active.labels(result.name, name).set(1 if name == state.active_node else 0)

    def observe_node(self, check: str, node: NodeResult) -> None:
        if node.status is NodeStatus.SKIPPED:
            return
        self._nodes.setdefault(check, set()).add(node.name)
        labels = (check, node.name)
        self.success.labels(*labels).set(1 if node.status is NodeStatus.UP else 0)
        self.duration.labels(*labels).set(node.duration)
        for attempt in node.attempts:
            outcome = "success" if attempt.error is None else "failure"
            self.attempts.labels(*labels, outcome).inc()
        last = node.last
        if last is None:
            return
        if "status_code" in last.details:
            self.status_code.labels(*labels).set(last.details["status_code"])
        for phase, seconds in last.phases.items():
            self.phase.labels(*labels, phase).set(seconds)
        expiry = last.details.get("tls_not_after_unix")
        if expiry is not None:
            self.cert_expiry.labels(*labels).set(expiry)

    def observe_transition(self, transition: Transition) -> None:
        if transition.action == "failover":
            self.failovers.labels(transition.check).inc()
        elif transition.action == "failback":
            self.failbacks.labels(transition.check).inc()
        elif transition.action == "state-change" and transition.to_state:
            self.transitions.labels(transition.check, transition.to_state).inc()

    def observe_lateness(self, seconds: float) -> None:
        self.lateness.observe(seconds)

    def count_skip(self, check: str) -> None:
        self.skipped.labels(check).inc()

    # --- reload ----------------------------------------------------------------------

    def keep_only(self, wanted: Mapping[str, Iterable[str]]) -> None:
        """Drop the series of checks and nodes that are no longer configured."""
        nodes_of = {check: set(nodes) for check, nodes in wanted.items()}
        per_check = (
            self.runs,
            self.skipped,
            self.state,
            self.flapping,
            self.failovers,
            self.failbacks,
            self.transitions,
        )
        per_node = (
            self.success,
            self.duration,
            self.status_code,
            self.phase,
            self.cert_expiry,
            self.attempts,
            self.active,
        )
        for metric in per_check:
            for labels in _label_sets(metric):
                if labels[0] not in nodes_of:
                    metric.remove(*labels)
        for metric in per_node:
            for labels in _label_sets(metric):
                if labels[1] not in nodes_of.get(labels[0], ()):
                    metric.remove(*labels)
        self._nodes = {c: n & nodes_of[c] for c, n in self._nodes.items() if c in nodes_of}

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _label_sets(metric: Gauge | Counter) -> set[tuple[str, ...]]:
    """The label values of every child of a metric, read through the public collect()."""
    names = metric._labelnames
    return {
        tuple(sample.labels[name] for name in names)
        for family in metric.collect()
        for sample in family.samples
    }
