"""Check results as ECS 8.x documents with Elastic Heartbeat's monitor/summary names.

Fields outside ECS and Heartbeat live under ``hotline_probe.*`` so they never collide
with a SIEM's ECS mapping. tests/ecs_schema.py validates every event the tests produce.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

from core.clock import rfc3339
from core.errors import ProbeError
from core.result import Attempt, CheckResult, NodeResult, Status

ECS_VERSION = "8.11.0"
DATASET = "hotline_probe.check"


@functools.cache
def observer() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        product_version = version("hotline-probe")
    except PackageNotFoundError:  # running from a source tree
        product_version = "0+unknown"
    hostname = socket.gethostname()
    return {
        "hostname": hostname,
        "name": hostname,
        "type": "monitor",
        "product": "hotline-probe",
        "vendor": "Haining 12345 operations",
        "version": product_version,
    }


iso = rfc3339


def timestamp(result: CheckResult) -> str:
    return iso(result.started_at)


def check_event(result: CheckResult, state: Any = None) -> dict[str, Any]:
    """One document per check run: what was checked, where, how it went and why.

    Under the daemon ``state`` (an engine.state view) adds Heartbeat's ``state.*`` and
    the hard status beside the run's own.
    """
    node = _reporting_node(result)
    failed = result.status is Status.DOWN
    # Nothing judged the link (a freshness check that never saw a sign of life): ECS's
    # outcome "unknown", and neither Heartbeat's up nor down, so no dashboard counts it
    # as an outage.
    unjudged = result.status is Status.UNKNOWN
    total_attempts = sum(len(n.attempts) for n in result.nodes)
    doc: dict[str, Any] = {
        "@timestamp": timestamp(result),
        "message": summary_line(result),
        "log": {"level": _LEVEL[result.status]},
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["error" if failed else "info"],
            "action": "check",
            "outcome": "failure" if failed else "unknown" if unjudged else "success",
            "duration": int(result.duration * 1e9),
            "dataset": DATASET,
        },
        "monitor": {
            **_monitor(result),
            "status": "down" if failed else "unknown" if unjudged else "up",
            "duration": {"us": int(result.duration * 1e6)},
        },
        # Heartbeat's meaning: the monitor as a whole. A degraded link is up (an
        # alternate serves it); dashboards read summary.down > 0 as an outage.
        "summary": {"up": 0 if failed or unjudged else 1, "down": 1 if failed else 0},
        "service": {"name": result.name, "node": {"name": node.name}},
        "observer": observer(),
        "hotline_probe": {
            "status": str(result.status),
            "active_node": result.active_node,
            "attempts": total_attempts,
            "nodes": [node_summary(n) for n in result.nodes],
        },
    }
    if result.warnings:
        doc["hotline_probe"]["warnings"] = list(result.warnings)
    _add_target(doc, node, kind=result.kind)
    error = _first_error(result)
    if error is not None:
        doc["error"] = {"type": str(error.type), "message": error.message}
    if state is not None:
        doc["state"] = state_fields(state)
        doc["hotline_probe"]["hard_status"] = str(state.hard)
    return doc


def attempt_events(result: CheckResult) -> Iterator[dict[str, Any]]:
    """One document per failed attempt, before the run's own event: the SIEM sees each
    error a retry or a failover hid, with the run's ``check_group``."""
    for node in result.nodes:
        for attempt in node.attempts:
            if attempt.error is None:
                continue
            doc: dict[str, Any] = {
                "@timestamp": timestamp(result),
                "message": (
                    f"{result.name} node {node.name} attempt {attempt.number} failed: "
                    f"{attempt.error.type}: {attempt.error.message}"
                ),
                "log": {"level": "info"},
                "event": {
                    "kind": "event",
                    "category": ["network"],
                    "type": ["connection", "error"],
                    "action": "attempt",
                    "outcome": "failure",
                    "duration": int(attempt.duration * 1e9),
                    "dataset": DATASET,
                },
                "monitor": _monitor(result),
                "service": {"name": result.name, "node": {"name": node.name}},
                "observer": observer(),
                "error": {"type": str(attempt.error.type), "message": attempt.error.message},
                "hotline_probe": {"attempt": attempt.number},
            }
            _add_target(doc, node, attempt, kind=result.kind)
            yield doc


def _monitor(result: CheckResult) -> dict[str, Any]:
    """Heartbeat's monitor fields that every event of a run carries."""
    return {
        "id": result.name,
        "name": result.title or result.name,
        "type": result.kind,
        "check_group": result.check_group,
    }


def failover_event(result: CheckResult) -> dict[str, Any]:
    """The preferred node failed and an alternate answered in this run."""
    preferred = result.preferred
    error = preferred.error
    reason = f"{error.type}: {error.message}" if error else "no answer"
    doc: dict[str, Any] = {
        "@timestamp": timestamp(result),
        "message": (
            f"{result.name}: failed over from {preferred.name} to {result.active_node} ({reason})"
        ),
        "log": {"level": "warning"},
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["change"],
            "action": "failover",
            "outcome": "success",
            "dataset": DATASET,
            "reason": reason,
        },
        "monitor": _monitor(result),
        "service": {"name": result.name, "node": {"name": result.active_node}},
        "observer": observer(),
        # The same names as the daemon's failover transition: from/to are nodes.
        "hotline_probe": {"from": preferred.name, "to": result.active_node, "suppressed": False},
    }
    if error:
        doc["error"] = {"type": str(error.type), "message": error.message}
    return doc


def node_summary(node: NodeResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": node.name,
        "status": str(node.status),
        "attempts": len(node.attempts),
        "duration_ms": round(node.duration * 1000, 1),
    }
    if node.error is not None:
        out["error_type"] = str(node.error.type)
    return out


def summary_line(result: CheckResult) -> str:
    """A sentence an operator can read in a SIEM list view."""
    if result.status is Status.UP:
        return f"{result.name} up on {result.active_node}"
    if result.status is Status.DEGRADED:
        error = result.preferred.error
        why = f" ({error.type})" if error else ""
        return (
            f"{result.name} degraded: served by {result.active_node}, "
            f"{result.preferred.name} down{why}"
        )
    error = _first_error(result)
    why = f": {error.type}: {error.message}" if error else ""
    if result.status is Status.UNKNOWN:
        return f"{result.name} unknown{why}"
    return f"{result.name} down on all {len(result.nodes)} nodes{why}"


_LEVEL = {
    Status.UP: "info",
    Status.DEGRADED: "warning",
    Status.DOWN: "error",
    Status.UNKNOWN: "warning",
}


def _reporting_node(result: CheckResult) -> NodeResult:
    """The node a reader cares about: the active one, else the preferred one."""
    for node in result.nodes:
        if node.name == result.active_node:
            return node
    return result.preferred


def _first_error(result: CheckResult) -> ProbeError | None:
    """Why the check is not simply up: the preferred node's error."""
    if result.status is Status.UP:
        return None
    return result.preferred.error


def _add_target(
    doc: dict[str, Any], node: NodeResult, attempt: Attempt | None = None, *, kind: str = ""
) -> None:
    doc.update(_target_fields(kind, node.name, node.target))
    attempt = attempt or node.last
    if attempt is not None:
        if "tls_not_after" in attempt.details:
            doc["tls"] = {"server": {"x509": {"not_after": attempt.details["tls_not_after"]}}}
        if "status_code" in attempt.details:
            doc["http"] = {"response": {"status_code": attempt.details["status_code"]}}


@functools.lru_cache(maxsize=32768)
def _target_fields(kind: str, node: str, target: str) -> dict[str, Any]:
    """ECS ``url``/``file`` and ``destination`` of a node, the same for every run.

    Cached (config-sized; a reload's new targets push old ones out): parsing the URL
    again for every event was a tenth of an event's cost. The dicts are shared between
    events, so nothing may change them; the pipeline renders them and lets them go.
    """
    from urllib.parse import urlsplit

    fields: dict[str, Any] = {}
    host: str | None = None
    port: int | None = None
    if kind == "freshness" and node in ("push", "file"):
        # Not a destination: a push source is our own endpoint ("POST /heartbeat/<check>"),
        # a file source a path on this host.
        if node == "push":
            fields["url"] = {"path": target.partition(" ")[2] or target}
        else:
            fields["file"] = {"path": target}
    elif "://" in target:
        fields["url"] = {"full": target}
        parts = urlsplit(target)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    elif target == node:  # the runner's stand-in for a node without an address
        host, port = None, None
    else:
        host, port = _host_port(target)
    if host:
        fields["destination"] = {"address": host, **({"port": port} if port else {})}
    return fields


def _host_port(target: str) -> tuple[str, int | None]:
    """``host:port`` and ``[v6]:port``; or a bare host or address (an icmp host, a dns
    server on its default port), which has a colon of its own when it is IPv6."""
    try:
        return str(ipaddress.ip_address(target.strip("[]"))), None
    except ValueError:
        pass
    host, colon, port_text = target.rpartition(":")
    if not colon:
        return target, None
    return host.strip("[]"), int(port_text) if port_text.isdigit() else None


# --- the daemon's events -----------------------------------------------------------


def state_fields(view: Any) -> dict[str, Any]:
    """Heartbeat's ``state.*`` for a check under the daemon (an engine.state view)."""
    since = {"started_at": iso(view.since)} if view.since else {}
    fields: dict[str, Any] = {"checks": view.soft_streak, **since}
    if view.flapping:
        return {"status": "flapping", **fields}
    # Heartbeat's state is up, down or flapping; it has no word for unknown (no run has
    # judged the link yet, or none has since it went quiet). "down" would count an
    # outage nobody saw beside a monitor.status of "unknown", "up" would hide that
    # nothing was judged: state.status is left out, hotline_probe.hard_status says it.
    if view.hard == "unknown":
        return fields
    healthy = view.hard in ("up", "degraded")
    return {"status": "up" if healthy else "down", **fields}


def transition_event(transition: Any, *, kind: str, title: str) -> dict[str, Any]:
    """A state change, failover, failback or flapping start/end (engine.state.Transition)."""
    t = transition
    subject = f"{t.check} node {t.node}" if t.node else t.check
    if t.action in ("failover", "failback"):
        text = f"{t.check}: {t.action} from {t.from_state} to {t.to_state} ({t.reason})"
    elif t.action.startswith("flapping"):
        text = f"{t.check}: {t.action.replace('-', ' ')} ({t.reason})"
    else:
        text = f"{subject}: {t.from_state} -> {t.to_state} ({t.reason})"
    worse = t.to_state in ("down", "degraded") or t.action in ("failover", "flapping-start")
    level = "debug" if t.suppressed else "warning" if worse else "info"
    node = t.to_state if t.action in ("failover", "failback") else t.node
    doc: dict[str, Any] = {
        "@timestamp": iso(t.at),
        "message": text,
        "log": {"level": level},
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["change"],
            "action": t.action,
            "dataset": DATASET,
            "reason": t.reason,
        },
        "monitor": {
            "id": t.check,
            "name": title or t.check,
            "type": kind,
            "check_group": t.check_group,
        },
        "service": {"name": t.check, **({"node": {"name": node}} if node else {})},
        "observer": observer(),
        "hotline_probe": {"from": t.from_state, "to": t.to_state, "suppressed": t.suppressed},
    }
    return doc


def heartbeat_event(
    check: str, message: str, *, peer: str | None, count: int = 1
) -> dict[str, Any]:
    """Heartbeat POSTs the endpoint refused for their token (never the token itself):
    one, or ``count`` of them from one source (web.push summarises a flood)."""
    doc: dict[str, Any] = {
        "message": message,
        "log": {"level": "warning"},
        "event": {
            "kind": "event",
            "category": ["authentication"],
            "type": ["info"],
            "action": "heartbeat-rejected",
            "outcome": "failure",
            "dataset": DATASET,
        },
        "service": {"name": check},
        "url": {"path": f"/heartbeat/{check}"},
        "http": {"request": {"method": "POST"}},
        "observer": observer(),
        "hotline_probe": {"count": count},
    }
    if peer:
        doc["source"] = {"address": peer}
    return doc


def daemon_event(
    action: str, message: str, *, level: str = "info", outcome: str = "success", **extra: Any
) -> dict[str, Any]:
    """The daemon's own life: start, reload, reload refused, stop, internal errors."""
    kinds = {"daemon-start": "start", "daemon-stop": "end", "daemon-reload": "change"}
    return {
        "message": message,
        "log": {"level": level},
        "event": {
            "kind": "event",
            "category": ["process"],
            "type": [kinds.get(action, "error" if level == "error" else "info")],
            "action": action,
            "outcome": outcome,
            "dataset": DATASET,
        },
        "observer": observer(),
        **({"hotline_probe": extra} if extra else {}),
    }
