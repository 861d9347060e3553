"""A run's results as a JSON document, a terminal table and Nagios plugin output.

The JSON document is the contract shared by ``probe --all --json`` and the daemon's
``/status``. The table and the Nagios output are rendered from that document, so that
``probe`` shows a run of its own and the daemon's judgement (``probe --from-daemon``)
the same way; ``table(results)`` and ``nagios(results)`` are the shortcuts for a run.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from core.clock import rfc3339
from core.errors import UNJUDGED, ErrorType
from core.result import Attempt, CheckResult, NodeResult, Status

# Nagios plugin exit codes.
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3

Entry = Mapping[str, Any]
"""One check of the JSON document (``checks[i]``), from a run or from the daemon."""


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
    return _worst(
        _check_code(
            str(r.status),
            [str(n.error.type) for n in r.nodes if n.error is not None],
            bool(r.warnings),
        )
        for r in results
    )


def exit_code_from(document: Mapping[str, Any]) -> int:
    """``exit_code`` for a JSON document: a run's, or the daemon's /status, where a
    check's status is its hard state and may also be ``unreachable``."""
    return _worst(_entry_code(entry) for entry in document.get("checks", ()))


# Failures that say nothing about the link: a down check that failed only with these
# was not judged (the probe crashed, or found nothing to read).
_NOT_ABOUT_THE_LINK = frozenset({str(ErrorType.INTERNAL), *(str(t) for t in UNJUDGED)})
_RANK = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}  # which code a whole run reports


def _check_code(status: str, error_types: Collection[str], warned: bool) -> int:
    if status in ("down", "unreachable"):  # unreachable (daemon): not answering either
        crashed = bool(error_types) and all(t in _NOT_ABOUT_THE_LINK for t in error_types)
        return UNKNOWN if crashed else CRITICAL
    if status == "degraded" or (status == "up" and warned):
        return WARNING
    return OK if status == "up" else UNKNOWN  # unknown, or not run yet


def _entry_code(entry: Entry) -> int:
    types = [n["error"]["type"] for n in entry.get("nodes", ()) if n.get("error")]
    return _check_code(str(entry.get("status")), types, bool(entry.get("warnings")))


def _worst(codes: Iterable[int]) -> int:
    return max(codes, key=_RANK.__getitem__, default=OK)


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


_WORST_FIRST = ("down", "unreachable", "unknown", "degraded")


def select(document: Mapping[str, Any], names: Collection[str]) -> dict[str, Any]:
    """The document with only the checks so named (in its own order), its status and
    counts worked out again for them."""
    checks = [c for c in document.get("checks", ()) if c.get("name") in names]
    counts = dict.fromkeys(document.get("counts", {}), 0)
    for check in checks:
        status = str(check.get("status"))
        counts[status] = counts.get(status, 0) + 1
    status = next((s for s in _WORST_FIRST if counts.get(s)), "up")
    return {**document, "status": status, "counts": counts, "checks": checks}


# --- terminal table ----------------------------------------------------------------


def text_width(text: str) -> int:
    """Columns a string takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int) -> str:
    return text + " " * (width - text_width(text))


def latency(entry: Entry) -> str:
    """How long the answering node took to answer (its successful attempt)."""
    for node in entry.get("nodes", ()):
        if node.get("name") == entry.get("active_node") and node.get("attempts"):
            return f"{node['attempts'][-1]['duration_ms']:.0f} ms"
    return "-"


def problem(entry: Entry) -> str:
    """What an operator should read first: failed nodes and their errors, then warnings."""
    parts = [
        f"{n['name']}: {n['error']['type']} ({n['error']['message']})"
        for n in entry.get("nodes", ())
        if n.get("error") and n.get("status") == "down"
    ]
    parts += list(entry.get("warnings", ()))
    return "; ".join(parts)


def table(results: Sequence[CheckResult], *, color: bool = False) -> str:
    return table_from(document(results), color=color)


def table_from(doc: Mapping[str, Any], *, color: bool = False) -> str:
    checks = list(doc.get("checks", ()))
    header = ("CHECK", "TITLE", "KIND", "STATUS", "ACTIVE", "LATENCY", "PROBLEM")
    rows = [
        (
            str(e.get("name", "")),
            str(e.get("title", "")),
            str(e.get("kind", "")),
            str(e.get("status", "unknown")).upper(),
            e.get("active_node") or "-",
            latency(e),
            problem(e),
        )
        for e in checks
    ]
    widths = [max(text_width(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [pad(cell, widths[i]) for i, cell in enumerate(row[:-1])]
        if color and row is not header:
            cells[3] = _COLORS.get(row[3], "") + cells[3] + "\033[0m"
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    tally = {status: 0 for status in ("up", "degraded", "down", "unknown", "unreachable")}
    for entry in checks:
        status = str(entry.get("status"))
        tally[status] = tally.get(status, 0) + 1
    slowest = max((e.get("duration_ms", 0.0) / 1000 for e in checks), default=0.0)
    lines.append("")
    rare = "".join(f", {tally[s]} {s}" for s in ("unknown", "unreachable") if tally[s])
    lines.append(
        f"{len(checks)} checks: {tally['up']} up, {tally['degraded']} degraded, "
        f"{tally['down']} down{rare} (slowest check {slowest:.2f} s)"
    )
    return "\n".join(lines)


_COLORS = {
    "UP": "\033[32m",
    "DEGRADED": "\033[33m",
    "DOWN": "\033[31m",
    "UNREACHABLE": "\033[31m",
    "UNKNOWN": "\033[35m",
}


# --- Nagios ------------------------------------------------------------------------
#
#   HOTLINE-PROBE CRITICAL - police-110 DOWN (connection_refused, no node answered); ... | perfdata
#   DOWN police-110 (110 接处警平台对接) - no node answered - node-a: connection_refused (...)
#   UP grassroots (基层智治平台对接) - active node node-a
#
# The first line is what notifications carry: the checks that are not fine, worst first,
# each with its cause and where it stands; the long output has one line per check.

OUTPUT_MAX = 8192 - 2
"""Bytes of plugin output Nagios 3 and 4 keep, first line, long output and perfdata
together: MAX_PLUGIN_OUTPUT_LENGTH is 8192 (include/nagios.h), the C string's NUL
included; print() adds the newline. Past it the core cuts the text wherever it falls,
perfdata included. (Icinga 2 has no such limit.)"""

FIRST_LINE_MAX = 332
"""Bytes of the first line's text (its perfdata not counted): what a notification (SMS,
pager, a chat robot) carries. 332 is all that Nagios 2 kept of a plugin's output
(MAX_PLUGINOUTPUT_LENGTH, include/objects.h); the plugin guidelines ask for short."""

_ITEM_MAX = 200  # one check on the first line: a FIRST_LINE_MAX line holds at least one
_LINE_MAX = 512  # one check in the long output: a node's error message is up to 300
_RESERVE = 120  # kept for the notes on what was left out ("+N more checks", perfdata)
_PROBLEM_LINES = 2048  # kept from perfdata for the long output, when a check is not fine
_WORDS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
_ORDER = {"down": 0, "unreachable": 1, "unknown": 2, "degraded": 3, "up": 4}

# Perfdata '<check>_state': 0 up, 1 degraded, 2 down (unreachable, under the daemon, is
# not answering either). An unknown check has no '_state' value at all: the plugin
# guidelines' "U" (value undetermined) is what it means, but Icinga 2's Graphite and
# perfdata writers reject "U" as invalid perfdata on every run, and a number (3, say)
# would plot "unknown" as worse than "down". A gap in the graph says "no data", truly.
_STATE_VALUE = {"up": "0", "degraded": "1", "down": "2", "unreachable": "2"}


def nagios(results: Sequence[CheckResult]) -> str:
    return nagios_from(document(results))


def nagios_from(doc: Mapping[str, Any]) -> str:
    """``HOTLINE-PROBE CRITICAL - <checks not fine> | <perfdata>``, then one line per
    check, worst first; within FIRST_LINE_MAX and OUTPUT_MAX bytes, saying what it left
    out rather than letting the core cut a line (or a perfdata value) in two."""
    checks = list(doc.get("checks", ()))
    code = _worst(_entry_code(entry) for entry in checks)
    worst_first = sorted(checks, key=lambda e: (_ORDER.get(str(e.get("status")), 2), _fine(e)))
    first = _first_line(_WORDS[code], worst_first)
    room = OUTPUT_MAX - _size(first) - len(" | ") - _RESERVE
    if not all(_fine(e) for e in checks):
        room -= _PROBLEM_LINES  # what went wrong comes before graphs
    pieces = [piece for piece in map(_perfdata, checks) if piece]  # one a check
    perfdata, left_out = _fit(pieces, room)
    head = f"{first} | {perfdata}" if perfdata else first
    notes = [f"(perfdata of {left_out} of {len(pieces)} checks left out: the output limit)"]
    notes = notes if left_out else []
    budget = OUTPUT_MAX - _size(head) - sum(_size(n) + 1 for n in notes)
    shown: list[str] = []
    for index, entry in enumerate(worst_first):
        line = _clip(_long_line(entry), _LINE_MAX)
        rest = len(worst_first) - index  # this check and those after it
        # Room for this line and, after it, for saying how many more were left out.
        after = _size(f"\n+{rest - 1} more checks") if rest > 1 else 0
        if _size(line) + 1 + after > budget:
            shown.append(f"+{rest} more checks")
            break
        shown.append(line)
        budget -= _size(line) + 1
    return "\n".join([head, *shown, *notes])


def _fine(entry: Entry) -> bool:
    return entry.get("status") == "up" and not entry.get("warnings")


def _first_line(word: str, worst_first: Sequence[Entry]) -> str:
    prefix = f"HOTLINE-PROBE {word} - "
    up = sum(e.get("status") == "up" for e in worst_first)
    if not worst_first:
        return prefix + "no checks"
    tail = f"{up} of {len(worst_first)} up"
    items = [_clip(_headline(e), _ITEM_MAX) for e in worst_first if not _fine(e)]
    if not items:
        return prefix + tail

    def line(count: int) -> str:
        more = [f"+{len(items) - count} more"] if count < len(items) else []
        return prefix + "; ".join([*items[:count], *more, tail])

    count = 1  # _ITEM_MAX leaves room for one, whatever it says
    while count < len(items) and _size(line(count + 1)) <= FIRST_LINE_MAX:
        count += 1
    return line(count)


def _headline(entry: Entry) -> str:
    """``police-110 DOWN (connection_refused, no node answered)``."""
    status = str(entry.get("status", "unknown"))
    facts = [", ".join(_causes(entry))]
    if status == "up":  # up with a warning: the warning is the cause
        facts = [f"warning: {_clip(_text(entry['warnings'][0]), 80)}"]
    facts += _state_facts(entry, short=True)
    facts.append(_where(entry))
    # Commas inside the parentheses: "; " separates the checks on the line.
    return f"{_text(entry.get('name', '?'))} {status.upper()} ({', '.join(f for f in facts if f)})"


def _causes(entry: Entry) -> list[str]:
    """The error types of the nodes that failed, each once, in node order."""
    types: dict[str, None] = {}
    for node in entry.get("nodes", ()):
        if node.get("error") and node.get("status") == "down":
            types[_text(node["error"]["type"])] = None
    return list(types)


def _where(entry: Entry) -> str:
    nodes = entry.get("nodes") or ()
    if not nodes:
        return "not run yet"  # the daemon has just started, or just loaded the check
    answered = [n for n in nodes if n.get("status") == "up"]
    if not answered:
        return "no node answered"
    return f"active node {_text(entry.get('active_node') or answered[0]['name'])}"


def _state_facts(entry: Entry, *, short: bool) -> list[str]:
    """What the daemon's state adds: the checks it waits behind, flapping, and a latest
    run that differs from the hard state (not yet confirmed)."""
    state = entry.get("state")
    if not isinstance(state, Mapping):
        return []
    facts = []
    if state.get("unreachable_because"):
        facts.append("behind " + " and ".join(_text(n) for n in state["unreachable_because"]))
    if state.get("flapping"):
        facts.append("flapping")
    soft = state.get("soft")
    if not short and soft and soft != state.get("hard"):
        facts.append(f"latest runs {_text(soft)} ({state.get('soft_streak', 1)} in a row)")
    return facts


def _long_line(entry: Entry) -> str:
    """``DOWN police-110 (110 接处警平台对接) - no node answered - node-a: ...``."""
    title = _text(entry.get("title") or "")
    parts = [
        f"{str(entry.get('status', 'unknown')).upper()} {_text(entry.get('name', '?'))}"
        + (f" ({title})" if title else ""),
        _where(entry),
        *_state_facts(entry, short=False),
    ]
    if trouble := _text(problem(entry)):
        parts.append(trouble)
    return " - ".join(parts)


def _perfdata(entry: Entry) -> str:
    label = str(entry.get("name", "?")).replace("'", "''")  # the guidelines' quoting
    values = []
    if (state := _STATE_VALUE.get(str(entry.get("status")))) is not None:
        # Nagios ranges: warn when above 0 (degraded), critical when above 1 (down).
        values.append(f"'{label}_state'={state};0;1;0;2")
    if isinstance(duration := entry.get("duration_ms"), int | float):
        values.append(f"'{label}_duration'={duration / 1000:.3f}s;;;0")
    return " ".join(values)


def _fit(pieces: Sequence[str], budget: int) -> tuple[str, int]:
    """As many pieces as fit in ``budget`` bytes, whole and in order, joined by spaces;
    and how many were left out."""
    kept: list[str] = []
    for piece in pieces:
        budget -= _size(piece) + (1 if kept else 0)
        if budget < 0:
            break
        kept.append(piece)
    return " ".join(kept), len(pieces) - len(kept)


def _text(value: object) -> str:
    """One line, and no "|": Nagios would take what follows one for perfdata."""
    return " ".join(str(value).split()).replace("|", "¦")


def _size(text: str) -> int:
    return len(text.encode())


def _clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, cut on a character boundary."""
    if _size(text) <= limit:
        return text
    return text.encode()[: limit - 3].decode(errors="ignore") + "..."
