"""A run's results as a JSON document, a terminal table and a Nagios line.

The JSON document is the contract shared by ``probe --all --json`` and the daemon's
``/status``; the table and the Nagios line are views of the same results.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from engine.clock import rfc3339
from engine.result import Attempt, CheckResult, NodeResult, Status
from probes.base import ErrorType

# Nagios plugin exit codes.
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3


def overall(results: Sequence[CheckResult]) -> Status:
    statuses = {r.status for r in results}
    for status in (Status.DOWN, Status.UNKNOWN, Status.DEGRADED):
        if status in statuses:
            return status
    return Status.UP


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 all up, 1 degraded or a warning (a certificate near expiry), 2 anything down,
    3 when a check could not be judged: it had no sign of life to read, or it is down
    only because its probe crashed (down in every view, but Nagios is told the truth:
    the plugin, not the link, failed)."""
    down = [r for r in results if r.status is Status.DOWN]
    if any(not _crashed(r) for r in down):
        return CRITICAL
    if down or any(r.status is Status.UNKNOWN for r in results):
        return UNKNOWN
    if any(r.status is Status.DEGRADED or r.warnings for r in results):
        return WARNING
    return OK


def _crashed(result: CheckResult) -> bool:
    """Down only because probes failed internally (or found nothing to read besides):
    nothing was learnt about the link."""
    errors = [n.error for n in result.nodes if n.error is not None]
    return bool(errors) and all(e.type is ErrorType.INTERNAL or not e.judged for e in errors)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _error(error: Any) -> dict[str, str] | None:
    return {"type": str(error.type), "message": error.message} if error else None


def _attempt(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "duration_ms": _ms(attempt.duration),
        "error": _error(attempt.error),
        "phases_ms": {name: _ms(value) for name, value in attempt.phases.items()},
    }


def _node(node: NodeResult) -> dict[str, Any]:
    last = node.last
    return {
        "name": node.name,
        "target": node.target,
        "status": str(node.status),
        "duration_ms": _ms(node.duration),
        "error": _error(node.error),
        "attempts": [_attempt(a) for a in node.attempts],
        "details": dict(last.details) if last else {},
        "warnings": list(node.warnings),
    }


def check_document(result: CheckResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "title": result.title,
        "kind": result.kind,
        "status": str(result.status),
        "active_node": result.active_node,
        "started_at": rfc3339(result.started_at),
        "duration_ms": _ms(result.duration),
        "warnings": list(result.warnings),
        "nodes": [_node(n) for n in result.nodes],
    }


def counts(results: Sequence[CheckResult]) -> dict[str, int]:
    return {str(s): sum(r.status is s for r in results) for s in Status}


def document(results: Sequence[CheckResult]) -> dict[str, Any]:
    return {
        "status": str(overall(results)),
        "counts": counts(results),
        "checks": [check_document(r) for r in results],
    }


# --- terminal table ----------------------------------------------------------------


def text_width(text: str) -> int:
    """Columns a string takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int) -> str:
    return text + " " * (width - text_width(text))


def latency(result: CheckResult) -> str:
    """How long the answering node took to answer (its successful attempt)."""
    for node in result.nodes:
        if node.name == result.active_node and node.last is not None:
            return f"{node.last.duration * 1000:.0f} ms"
    return "-"


def problem(result: CheckResult) -> str:
    """What an operator should read first: failed nodes and their errors, then warnings."""
    parts = [
        f"{n.name}: {n.error.type} ({n.error.message})"
        for n in result.nodes
        if n.error is not None and n.status.value == "down"
    ]
    parts += list(result.warnings)
    return "; ".join(parts)


def table(results: Sequence[CheckResult], *, color: bool = False) -> str:
    header = ("CHECK", "TITLE", "KIND", "STATUS", "ACTIVE", "LATENCY", "PROBLEM")
    rows = [
        (
            r.name,
            r.title,
            r.kind,
            str(r.status).upper(),
            r.active_node or "-",
            latency(r),
            problem(r),
        )
        for r in results
    ]
    widths = [max(text_width(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [pad(cell, widths[i]) for i, cell in enumerate(row[:-1])]
        if color and row is not header:
            cells[3] = _COLORS.get(row[3], "") + cells[3] + "\033[0m"
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    tally = counts(results)
    slowest = max((r.duration for r in results), default=0.0)
    lines.append("")
    unknown = f", {tally['unknown']} unknown" if tally["unknown"] else ""
    lines.append(
        f"{len(results)} checks: {tally['up']} up, {tally['degraded']} degraded, "
        f"{tally['down']} down{unknown} (slowest check {slowest:.2f} s)"
    )
    return "\n".join(lines)


_COLORS = {"UP": "\033[32m", "DEGRADED": "\033[33m", "DOWN": "\033[31m", "UNKNOWN": "\033[35m"}


# --- Nagios ------------------------------------------------------------------------

_NAGIOS_WORD = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# Nagios perfdata's "U": the value could not be determined.
_STATE_VALUE = {Status.UP: "0", Status.DEGRADED: "1", Status.DOWN: "2", Status.UNKNOWN: "U"}


def nagios(results: Sequence[CheckResult]) -> str:
    """``HOTLINE-PROBE CRITICAL - ... | 'label'=value[UOM];warn;crit;min;max ...``"""
    code = exit_code(results)
    groups = []
    for status in (Status.DOWN, Status.UNKNOWN, Status.DEGRADED):
        names = [r.name for r in results if r.status is status]
        if names:
            groups.append(f"{len(names)} {status}: {', '.join(names)}")
    up = sum(r.status is Status.UP for r in results)
    groups.append(f"{up} up")
    warned = [r.name for r in results if r.warnings]
    if warned:
        groups.append(f"warnings: {', '.join(warned)}")
    perfdata = []
    for r in results:
        # Nagios ranges: warn when above 0 (degraded), critical when above 1 (down).
        perfdata.append(f"'{r.name}_state'={_STATE_VALUE[r.status]};0;1;0;2")
        perfdata.append(f"'{r.name}_duration'={r.duration:.3f}s;;;0")
    return f"HOTLINE-PROBE {_NAGIOS_WORD[code]} - {'; '.join(groups)} | {' '.join(perfdata)}"
