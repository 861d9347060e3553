"""Runtime state of every check and node, kept apart from the frozen config.

Each run gives a check a *soft* state. The *hard* state, the one people are told about,
follows only once the soft state has held for ``confirm_after`` runs (worse) or
``recover_after`` runs (better), so that one lost packet is not an outage. Nodes get the
same treatment, one by one. Whatever changed comes back as ``Transition`` records for the
daemon to log and alert on; ``suppressed`` marks those that must not page anyone.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from config.checks import CheckBase
from config.probe_config import ProbeConfig
from core.clock import Clock
from core.result import CheckResult, NodeResult, NodeStatus, Status
from engine.runner import node_order


class CheckStatus(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNREACHABLE = "unreachable"  # failing while a check it depends on is down
    UNKNOWN = "unknown"  # no run yet, or no run could judge the link (result Status.UNKNOWN)


# Unreachable ranks with down: both mean "not answering", only the cause differs. Unknown
# ranks with them too: leaving up for it takes confirm_after runs, returning recover_after.
_SEVERITY = {"up": 0, "degraded": 1, "down": 2, "unreachable": 2, "unknown": 2}

# Flap detection as in Nagios/Icinga: 21 states hold 20 possible changes, and recent
# changes weigh more (0.8 for the oldest slot up to 1.2 for the newest).
_FLAP_WINDOW = 21
_FLAP_START, _FLAP_STOP = 30.0, 25.0

Move = tuple[str, str, str, str]  # action, from node, to node, reason


@dataclass(frozen=True)
class Transition:
    check: str
    action: str  # state-change | node-state-change | failover | failback | flapping-*
    from_state: str | None  # for failover and failback: node names
    to_state: str | None
    reason: str
    check_group: str
    at: datetime
    node: str | None = None  # for node-state-change
    suppressed: bool = False  # must not alert: flapping, or explained by a parent being down


@dataclass(frozen=True)
class NodeStateView:
    hard: str  # up, down or unknown
    soft: str
    streak: int
    since: datetime | None
    last_error_type: str | None  # the latest error seen; kept after recovery, for diagnosis

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"since": _iso(self.since)}


@dataclass(frozen=True)
class CheckStateView:
    hard: CheckStatus
    soft: CheckStatus
    soft_streak: int
    since: datetime | None
    active_node: str | None
    failback_streak: int
    flapping: bool
    flap_percent: float
    unreachable_because: tuple[str, ...]
    runs: int
    nodes: Mapping[str, NodeStateView]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for /status: plain strings, ISO 8601 times in UTC with a Z."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "hard": str(self.hard),
            "soft": str(self.soft),
            "since": _iso(self.since),
            "flap_percent": round(self.flap_percent, 2),
            "unreachable_because": list(self.unreachable_because),
            "nodes": {name: node.as_dict() for name, node in self.nodes.items()},
        }


# The per-check state is kept for every check the daemon runs, 10,000 of them at most
# hotline sizes: slots, and the flap history as a short string, keep it to a few
# hundred bytes a check (a deque alone took 880).


@dataclass(slots=True)
class _Track:
    """A soft state per observation, and a hard state that follows it after enough repeats."""

    hard: CheckStatus = CheckStatus.UNKNOWN
    soft: CheckStatus = CheckStatus.UNKNOWN
    streak: int = 0
    since: datetime | None = None

    def step(self, soft: CheckStatus, now: datetime, check: CheckBase) -> CheckStatus | None:
        """Record one observation; return the previous hard state if the hard state moved."""
        self.streak = self.streak + 1 if soft == self.soft else 1
        self.soft = soft
        if self.since is None:
            # The first judged observation is a baseline: nothing changed that anyone knew
            # of. Until one comes (no sign of life seen yet), the hard state stays unknown.
            if soft is not CheckStatus.UNKNOWN:
                self.hard, self.since = soft, now
            return None
        if soft == self.hard:
            return None
        better = _SEVERITY[soft] < _SEVERITY[self.hard]
        if self.streak < (check.recover_after if better else check.confirm_after):
            return None
        previous, self.hard, self.since = self.hard, soft, now
        return previous


@dataclass(slots=True)
class _NodeState:
    track: _Track = field(default_factory=_Track)
    last_error_type: str | None = None

    def view(self) -> NodeStateView:
        track = self.track
        hard, soft = str(track.hard), str(track.soft)
        return NodeStateView(hard, soft, track.streak, track.since, self.last_error_type)


@dataclass(slots=True)
class _CheckState:
    track: _Track = field(default_factory=_Track)
    active: str | None = None  # the node serving traffic; None: config order
    failback_streak: int = 0
    flapping: bool = False
    flap_percent: float = 0.0
    unreachable_because: tuple[str, ...] = ()
    runs: int = 0
    history: str = ""  # the last _FLAP_WINDOW soft states, one letter each (_LETTER)
    nodes: dict[str, _NodeState] = field(default_factory=dict)


class StateTracker:
    """Turns check results into hard states and transitions; one per daemon."""

    def __init__(self, config: ProbeConfig, *, clock: Clock) -> None:
        self._clock = clock
        self._checks: dict[str, _CheckState] = {}
        self._config: dict[str, CheckBase] = {}
        self.reconfigure(config)

    def reconfigure(self, config: ProbeConfig) -> None:
        """Adopt a reloaded config; checks and nodes keep their state by name."""
        checks: dict[str, _CheckState] = {}
        for check in config.checks:
            names = [node.name for node in check.nodes]
            entry = self._checks.get(check.name) or _CheckState()
            entry.nodes = {name: entry.nodes.get(name) or _NodeState() for name in names}
            old = self._config.get(check.name)
            if entry.active not in names:
                entry.active = None
            # The streak counted another node's successes if the preferred node changed.
            if entry.active is None or old is None or old.nodes[0].name != names[0]:
                entry.failback_streak = 0
            checks[check.name] = entry
        self._checks = checks
        self._config = {check.name: check for check in config.checks}
        self._counts = self._recount()

    def node_order(self, check: str) -> list[str]:
        """Node names to try: the active node first, then the rest in config order."""
        entry, config = self._entry(check)
        return [node.name for node in node_order(config.nodes, entry.active)]

    def serving(self, check: str) -> str | None:
        """The node serving the check's traffic now; None: config order."""
        return self._checks[check].active

    def needs_preferred_probe(self, check: str) -> bool:
        """Whether the preferred node must be probed too this run (to count towards failback)."""
        entry, config = self._entry(check)
        return entry.active is not None and entry.active != config.nodes[0].name

    def observe(self, result: CheckResult) -> list[Transition]:
        """Take one regular run into account; return what changed, causes first."""
        entry, check = self._entry(result.name)
        now = self._clock.now()
        first_run = entry.runs == 0
        entry.runs += 1

        node_changes: list[tuple[str, str, str, str]] = []
        for node in result.nodes:
            state = entry.nodes.get(node.name)
            # A skipped node proves nothing; an unknown one is left from before a reload.
            if state is None or node.status is NodeStatus.SKIPPED:
                continue
            if change := _step_node(state, node, now, check):
                node_changes.append((node.name, *change))

        soft, move = self._serve(entry, check, result)
        if first_run:
            move = None  # traffic did not move: there was no "before" to move from
        down = (CheckStatus.DOWN, CheckStatus.UNREACHABLE)
        parents = tuple(p for p in check.depends_on if self._hard(p) in down)
        entry.unreachable_because = parents if soft is CheckStatus.DOWN else ()
        if entry.unreachable_because:
            soft = CheckStatus.UNREACHABLE
        flap = _update_flapping(entry, soft)
        hard_before = entry.track.hard
        previous = entry.track.step(soft, now, check)
        if entry.track.hard != hard_before:  # the first run's baseline moves it too
            self._counts[hard_before] -= 1
            self._counts[entry.track.hard] += 1

        def make(action: str, old: str | None, new: str | None, why: str, **kw: Any) -> Transition:
            return Transition(result.name, action, old, new, why, result.check_group, now, **kw)

        # A node failing behind a down parent is the parent's news, like the check itself.
        quiet = entry.flapping or CheckStatus.UNREACHABLE in (soft, entry.track.hard)
        out = [make("node-state-change", *c[1:], node=c[0], suppressed=quiet) for c in node_changes]
        if move:
            out.append(make(*move, suppressed=entry.flapping))
        if flap:
            out.append(make(*flap))
        if previous is not None:
            if _SEVERITY[soft] < _SEVERITY[previous]:
                reason = _held(soft, entry.track.streak)
            else:
                reason = self._failure_reason(entry, check, result)
            # Leaving unreachable for down is not explained by a parent any more: it alerts.
            explained = CheckStatus.UNREACHABLE in (previous, soft) and soft != CheckStatus.DOWN
            quiet = entry.flapping or explained
            out.append(make("state-change", str(previous), str(soft), reason, suppressed=quiet))
        return out

    def observe_standby(self, check: str, node: NodeResult, check_group: str) -> list[Transition]:
        """Take a standby probe of an idle alternate into account: that node's state only.

        A check or node the config no longer has is ignored: a reload may have removed it
        while the probe ran, and a standby result is not worth failing the caller for.
        """
        entry, config = self._checks.get(check), self._config.get(check)
        state = entry.nodes.get(node.name) if entry else None
        if entry is None or config is None or state is None or node.status is NodeStatus.SKIPPED:
            return []
        now = self._clock.now()
        change = _step_node(state, node, now, config)
        if change is None:
            return []
        quiet = entry.flapping or CheckStatus.UNREACHABLE in (entry.track.soft, entry.track.hard)
        old, new, reason = change
        action = "node-state-change"
        return [Transition(check, action, old, new, reason, check_group, now, node.name, quiet)]

    def check_state(self, check: str) -> CheckStateView:
        entry, _ = self._entry(check)
        nodes = {name: node.view() for name, node in entry.nodes.items()}
        return CheckStateView(
            hard=entry.track.hard,
            soft=entry.track.soft,
            soft_streak=entry.track.streak,
            since=entry.track.since,
            active_node=entry.active,
            failback_streak=entry.failback_streak,
            flapping=entry.flapping,
            flap_percent=entry.flap_percent,
            unreachable_because=entry.unreachable_because,
            runs=entry.runs,
            nodes=MappingProxyType(nodes),
        )

    def counts(self) -> dict[str, int]:
        """Checks per hard state, every state listed (zeros too) so the line keeps its shape.

        Kept as runs move states, not counted on demand: the STATUS= line asks every
        second, and walking 10,000 checks for it cost more than the scheduler."""
        return {str(status): count for status, count in self._counts.items()}

    def _recount(self) -> dict[CheckStatus, int]:
        counts = dict.fromkeys(CheckStatus, 0)
        for entry in self._checks.values():
            counts[entry.track.hard] += 1
        return counts

    # --- internals -----------------------------------------------------------------

    def _entry(self, check: str) -> tuple[_CheckState, CheckBase]:
        return self._checks[check], self._config[check]

    def _hard(self, check: str) -> CheckStatus:
        entry = self._checks.get(check)
        return entry.track.hard if entry else CheckStatus.UNKNOWN

    def _serve(
        self, entry: _CheckState, check: CheckBase, result: CheckResult
    ) -> tuple[CheckStatus, Move | None]:
        """Which node serves after this run, the soft state, and whether traffic moved."""
        names = [node.name for node in check.nodes]
        preferred = names[0]
        before = entry.active or preferred
        answered = result.active_node if result.active_node in names else None
        move: Move | None = None
        if answered is not None and answered != before:
            if answered == preferred:
                move = ("failback", before, answered, "previously active node failed")
            else:
                why = _error_text(_find(result, before)) or f"{before} did not answer"
                move = ("failover", before, answered, why)
        if answered is not None:
            entry.active = answered
        if entry.active is not None and entry.active != preferred:
            probe = _find(result, preferred)
            if probe is not None and probe.status is NodeStatus.UP:
                entry.failback_streak += 1
            elif probe is not None and probe.status is NodeStatus.DOWN:
                entry.failback_streak = 0
            if entry.failback_streak >= check.failback_after:
                why = f"preferred node passed {entry.failback_streak} consecutive runs"
                move = ("failback", entry.active, preferred, why)
                entry.active, entry.failback_streak = preferred, 0
        else:
            entry.failback_streak = 0
        if answered is None:
            # Nothing answered: the active node stays, there is nowhere better to send traffic.
            unjudged = result.status is Status.UNKNOWN
            return (CheckStatus.UNKNOWN if unjudged else CheckStatus.DOWN), move
        return (CheckStatus.UP if entry.active == preferred else CheckStatus.DEGRADED), move

    def _failure_reason(self, entry: _CheckState, check: CheckBase, result: CheckResult) -> str:
        if entry.track.soft is CheckStatus.UNREACHABLE:
            parents = entry.unreachable_because
            verb = "is" if len(parents) == 1 else "are"
            return f"depends on {', '.join(parents)}, which {verb} down"
        # The node tried first (the active one) failed, else the preferred one did.
        for node in (*result.nodes[:1], _find(result, check.nodes[0].name)):
            if text := _error_text(node):
                return text
        return f"serving from alternate node {entry.active}"


def _step_node(
    state: _NodeState, node: NodeResult, now: datetime, check: CheckBase
) -> tuple[str, str, str] | None:
    """One observation of a node; (old hard, new hard, reason) if its hard state moved."""
    if node.error is not None:
        state.last_error_type = str(node.error.type)
    if node.status is NodeStatus.UP:
        soft = CheckStatus.UP
    else:
        judged = node.error is None or node.error.judged
        soft = CheckStatus.DOWN if judged else CheckStatus.UNKNOWN
    previous = state.track.step(soft, now, check)
    if previous is None:
        return None
    reason = _held(soft, state.track.streak) if soft is CheckStatus.UP else _error_text(node)
    return str(previous), str(soft), reason or "no answer"


def _update_flapping(entry: _CheckState, soft: CheckStatus) -> tuple[str, None, None, str] | None:
    """Add a run to the flap history; the flapping-start or -end to report, if any."""
    was_flapping = entry.flapping
    entry.history = (entry.history + _LETTER[soft])[-_FLAP_WINDOW:]
    entry.flap_percent = _flap_percent(entry.history)
    # Two thresholds, so that a rate hovering around one of them does not toggle each run.
    if entry.flap_percent > _FLAP_START:
        entry.flapping = True
    elif entry.flap_percent < _FLAP_STOP:
        entry.flapping = False
    if entry.flapping == was_flapping:
        return None
    rate = f"flap rate {entry.flap_percent:.1f}%"
    if entry.flapping:
        return "flapping-start", None, None, f"{rate} above {_FLAP_START:g}%"
    return "flapping-end", None, None, f"{rate} below {_FLAP_STOP:g}%"


_LETTER = {status: chr(ord("a") + i) for i, status in enumerate(CheckStatus)}


def _flap_percent(history: str) -> float:
    """Weighted share of state changes among the last 20 possible, as Nagios computes it."""
    if not history or history.count(history[-1]) == len(history):
        return 0.0  # steady, as nearly every check is nearly always: no change to weigh
    changes = list(itertools.pairwise(history))
    total = 0.0
    # Slot k counts back from the newest change; slots, not changes, carry the weights, so
    # a change keeps ageing the same way while the window is still filling up.
    for k, (older, newer) in enumerate(reversed(changes)):
        if older != newer:
            total += 1.2 - 0.4 * k / (_FLAP_WINDOW - 2)
    return 100.0 * total / (_FLAP_WINDOW - 1)


def _find(result: CheckResult, name: str) -> NodeResult | None:
    return next((node for node in result.nodes if node.name == name), None)


def _error_text(node: NodeResult | None) -> str | None:
    error = node.error if node is not None else None
    return f"{error.type}: {error.message}" if error is not None else None


def _held(status: str, runs: int) -> str:
    return f"{status} for {runs} consecutive run{'' if runs == 1 else 's'}"


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
