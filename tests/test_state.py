"""Runtime state: hysteresis, sticky failover and failback, flapping, dependencies, reload.

Results are built by hand, the way the daemon would assemble them from the runner: nodes
tried in ``node_order``, the preferred node probed too while an alternate serves.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from config.load import parse_config
from config.probe_config import ProbeConfig
from core.clock import FakeClock
from core.errors import ErrorType, ProbeError
from core.result import Attempt, CheckResult, NodeResult, NodeStatus, Status
from engine.state import CheckStateView, CheckStatus, StateTracker, Transition


def tcp(name: str = "db", nodes: int = 3, **opts: Any) -> str:
    node_list = ", ".join(f'{{name: n{i}, address: "h{i}.invalid:1"}}' for i in range(nodes))
    options = "".join(f", {k}: {v}" for k, v in opts.items())
    return f"  - {{name: {name}, kind: tcp, nodes: [{node_list}]{options}}}\n"


def config(*checks: str) -> ProbeConfig:
    return parse_config("checks:\n" + "".join(checks))


def node(name: str, status: NodeStatus) -> NodeResult:
    if status is NodeStatus.SKIPPED:
        return NodeResult(name, f"{name}.invalid:1", status)
    error = None
    if status is NodeStatus.DOWN:
        error = ProbeError(ErrorType.CONNECTION_REFUSED, f"connection refused by {name}.invalid:1")
    return NodeResult(name, f"{name}.invalid:1", status, (Attempt(1, 0.01, error),), 0.01)


class Daemon:
    """Plays the daemon's part: runs nodes in the tracker's order, on a fake clock."""

    def __init__(self, *checks: str) -> None:
        self.clock = FakeClock()
        self.config = config(*checks)
        self.tracker = StateTracker(self.config, clock=self.clock)
        self.groups = 0

    def result(self, check: str, *up: str) -> CheckResult:
        """One run in which exactly the nodes named in ``up`` would answer."""
        preferred = self.config.check(check).nodes[0].name
        probe_preferred = self.tracker.needs_preferred_probe(check)
        nodes: list[NodeResult] = []
        active: str | None = None
        for name in self.tracker.node_order(check):
            if active is not None and not (probe_preferred and name == preferred):
                nodes.append(node(name, NodeStatus.SKIPPED))
                continue
            nodes.append(node(name, NodeStatus.UP if name in up else NodeStatus.DOWN))
            if name in up and active is None:
                active = name
        status = Status.UP if active == preferred else Status.DEGRADED if active else Status.DOWN
        self.groups += 1
        started = self.clock.now()
        group = f"g{self.groups}"
        return CheckResult(check, "tcp", "", status, active, started, 0.01, tuple(nodes), group)

    def run(self, check: str, *up: str) -> list[Transition]:
        self.clock.advance(30)
        return self.tracker.observe(self.result(check, *up))

    def state(self, check: str) -> CheckStateView:
        return self.tracker.check_state(check)


def changes(transitions: list[Transition], action: str = "state-change") -> list[Transition]:
    return [t for t in transitions if t.action == action]


def test_first_run_sets_state_silently() -> None:
    """The first run is a baseline: hard = soft at once, no transition, nodes seen get a state."""
    daemon = Daemon(tcp("db"), tcp("cache", nodes=1))
    assert daemon.state("db").hard is CheckStatus.UNKNOWN
    assert daemon.run("db", "n0") == []
    first_seen = daemon.clock.now()
    assert daemon.run("cache") == []
    state = daemon.state("db")
    assert (state.hard, state.soft, state.runs, state.active_node) == ("up", "up", 1, "n0")
    assert state.since == first_seen
    assert state.nodes["n0"].hard == "up" and state.nodes["n1"].hard == "unknown"
    assert daemon.state("cache").hard is CheckStatus.DOWN


def test_first_run_on_an_alternate_is_not_a_failover() -> None:
    """Starting while the preferred node is down: degraded at once, active alternate, no event."""
    daemon = Daemon(tcp("db"))
    assert daemon.run("db", "n1") == []
    state = daemon.state("db")
    assert (state.hard, state.active_node) == ("degraded", "n1")
    assert daemon.tracker.node_order("db") == ["n1", "n0", "n2"]


def test_one_failed_run_is_a_blip() -> None:
    """With confirm_after=2, a single failed run changes the soft state only."""
    daemon = Daemon(tcp("db", nodes=1, confirm_after=2))
    daemon.run("db", "n0")
    assert changes(daemon.run("db")) == []
    state = daemon.state("db")
    assert (state.hard, state.soft, state.soft_streak) == ("up", "down", 1)
    assert changes(daemon.run("db", "n0")) == []
    assert daemon.state("db").soft_streak == 1


def test_two_failed_runs_confirm_down() -> None:
    """The second consecutive failure makes it hard down, with the node's error as the reason."""
    daemon = Daemon(tcp("db", nodes=1, confirm_after=2))
    daemon.run("db", "n0")
    daemon.run("db")
    [change] = changes(daemon.run("db"))
    assert (change.from_state, change.to_state, change.suppressed) == ("up", "down", False)
    assert type(change.from_state) is str and type(change.to_state) is str
    assert change.reason == "connection_refused: connection refused by n0.invalid:1"
    assert change.check == "db" and change.at == daemon.clock.now()
    assert change.check_group == "g3"
    assert daemon.state("db").since == daemon.clock.now()


def test_recovery_needs_recover_after() -> None:
    """Back up only after recover_after consecutive good runs; a failure in between restarts."""
    daemon = Daemon(tcp("db", nodes=1, confirm_after=1, recover_after=3))
    daemon.run("db", "n0")
    daemon.run("db")
    assert daemon.state("db").hard is CheckStatus.DOWN
    assert changes(daemon.run("db", "n0") + daemon.run("db", "n0") + daemon.run("db")) == []
    assert changes(daemon.run("db", "n0") + daemon.run("db", "n0")) == []
    [change] = changes(daemon.run("db", "n0"))
    assert (change.from_state, change.to_state) == ("down", "up")
    assert change.reason == "up for 3 consecutive runs"


def test_degraded_then_down_then_up() -> None:
    """up -> degraded (alternate serves) -> down (nothing answers) -> up, each after 2 runs."""
    daemon = Daemon(tcp("db", nodes=2, confirm_after=2, recover_after=2))
    daemon.run("db", "n0")
    daemon.run("db", "n1")
    [change] = changes(daemon.run("db", "n1"))
    assert (change.from_state, change.to_state) == ("up", "degraded")
    assert change.reason == "connection_refused: connection refused by n0.invalid:1"
    daemon.run("db")
    [change] = changes(daemon.run("db"))
    assert (change.from_state, change.to_state) == ("degraded", "down")
    assert change.reason == "connection_refused: connection refused by n1.invalid:1"
    assert daemon.state("db").active_node == "n1"  # nothing answered: nowhere better to go
    transitions = daemon.run("db", "n0")
    [failback] = changes(transitions, "failback")
    assert failback.reason == "previously active node failed"
    assert daemon.state("db").soft is CheckStatus.UP
    [change] = changes(daemon.run("db", "n0"))
    assert (change.from_state, change.to_state) == ("down", "up")
    assert change.reason == "up for 2 consecutive runs"


def test_node_hysteresis_is_independent_of_the_check() -> None:
    """Standby probes move an alternate's hard state after confirm_after; the check stays up."""
    daemon = Daemon(tcp("db", nodes=2, confirm_after=2))
    daemon.run("db", "n0")
    standby = daemon.tracker.observe_standby
    assert standby("db", node("n1", NodeStatus.UP), "s1") == []  # first sight: baseline
    assert standby("db", node("n1", NodeStatus.DOWN), "s2") == []
    assert standby("db", node("n1", NodeStatus.SKIPPED), "s3") == []  # ignored
    assert standby("db", node("n9", NodeStatus.DOWN), "s3") == []  # removed by a reload
    assert standby("gone", node("n1", NodeStatus.DOWN), "s3") == []
    [change] = standby("db", node("n1", NodeStatus.DOWN), "s4")
    assert (change.action, change.node, change.check_group) == ("node-state-change", "n1", "s4")
    assert (change.from_state, change.to_state) == ("up", "down")
    assert change.reason == "connection_refused: connection refused by n1.invalid:1"
    state = daemon.state("db")
    assert (state.hard, state.soft, state.runs) == ("up", "up", 1)
    assert state.nodes["n1"].hard == "down"
    assert state.nodes["n1"].last_error_type == "connection_refused"
    daemon.run("db", "n0")
    assert daemon.state("db").nodes["n1"].streak == 2  # the skipped entry did not count


def test_node_state_changes_in_regular_runs() -> None:
    """The preferred node goes hard down after two failed runs while the check fails over."""
    daemon = Daemon(tcp("db", nodes=2, confirm_after=2))
    daemon.run("db", "n0")
    assert changes(daemon.run("db", "n1"), "node-state-change") == []
    [change] = changes(daemon.run("db", "n1"), "node-state-change")
    assert (change.node, change.from_state, change.to_state) == ("n0", "up", "down")
    assert daemon.state("db").nodes["n1"].hard == "up"


def test_failover_is_immediate_and_sticky() -> None:
    """The first run an alternate answers, it becomes active; it stays first in node order."""
    daemon = Daemon(tcp("db", nodes=3, confirm_after=5))
    daemon.run("db", "n0")
    assert daemon.tracker.node_order("db") == ["n0", "n1", "n2"]
    assert not daemon.tracker.needs_preferred_probe("db")
    [failover] = changes(daemon.run("db", "n1"), "failover")
    assert (failover.from_state, failover.to_state) == ("n0", "n1")
    assert failover.reason == "connection_refused: connection refused by n0.invalid:1"
    assert daemon.state("db").soft is CheckStatus.DEGRADED
    assert daemon.tracker.node_order("db") == ["n1", "n0", "n2"]
    assert daemon.tracker.needs_preferred_probe("db")
    assert changes(daemon.run("db", "n1", "n2"), "failover") == []
    assert daemon.tracker.node_order("db") == ["n1", "n0", "n2"]
    [failover] = changes(daemon.run("db", "n2"), "failover")
    assert (failover.from_state, failover.to_state) == ("n1", "n2")
    assert failover.reason == "connection_refused: connection refused by n1.invalid:1"
    assert daemon.tracker.node_order("db") == ["n2", "n0", "n1"]


def test_failback_after_consecutive_preferred_successes() -> None:
    """Traffic returns only after failback_after preferred successes in a row; a failure resets."""
    daemon = Daemon(tcp("db", nodes=2, failback_after=3, confirm_after=1, recover_after=1))
    daemon.run("db", "n0")
    daemon.run("db", "n1")
    streaks = []
    for up in (("n0", "n1"), ("n0", "n1"), ("n1",), ("n0", "n1"), ("n0", "n1")):
        assert changes(daemon.run("db", *up), "failback") == []
        streaks.append(daemon.state("db").failback_streak)
    assert streaks == [1, 2, 0, 1, 2]
    assert daemon.state("db").soft is CheckStatus.DEGRADED
    transitions = daemon.run("db", "n0", "n1")
    [failback] = changes(transitions, "failback")
    assert (failback.from_state, failback.to_state) == ("n1", "n0")
    assert failback.reason == "preferred node passed 3 consecutive runs"
    [change] = changes(transitions)
    assert (change.from_state, change.to_state) == ("degraded", "up")
    state = daemon.state("db")
    assert (state.soft, state.active_node, state.failback_streak) == ("up", "n0", 0)
    assert not daemon.tracker.needs_preferred_probe("db")
    assert daemon.tracker.node_order("db") == ["n0", "n1"]


def test_preferred_probe_result_feeds_node_state() -> None:
    """The preferred node, probed alongside the active alternate, recovers as a node too."""
    daemon = Daemon(tcp("db", nodes=2, failback_after=5, confirm_after=1, recover_after=2))
    daemon.run("db", "n0")
    daemon.run("db", "n1")
    assert daemon.state("db").nodes["n0"].hard == "down"
    daemon.run("db", "n0", "n1")
    [change] = changes(daemon.run("db", "n0", "n1"), "node-state-change")
    assert (change.node, change.to_state) == ("n0", "up")
    assert change.reason == "up for 2 consecutive runs"


# Weights of the k-th newest change slot: 1.2 - 0.4 k / 19. Five changes (runs 1..6):
# 1.2 + 1.17895 + 1.15789 + 1.13684 + 1.11579 = 5.78947 -> 28.947 %; six: 6.88421 -> 34.421 %.
FIVE_CHANGES = 100 * sum(1.2 - 0.4 * k / 19 for k in range(5)) / 20
SIX_CHANGES = 100 * sum(1.2 - 0.4 * k / 19 for k in range(6)) / 20


def test_flap_percent_is_weighted_towards_recent_changes() -> None:
    """Alternating up/down: 28.95 % after five changes (not flapping), 34.42 % after six."""
    assert round(FIVE_CHANGES, 3) == 28.947
    assert round(SIX_CHANGES, 3) == 34.421
    daemon = Daemon(tcp("db", nodes=1, confirm_after=1, recover_after=1))
    for i in range(6):
        transitions = daemon.run("db", *(("n0",) if i % 2 == 0 else ()))
    assert daemon.state("db").flap_percent == pytest.approx(FIVE_CHANGES)
    assert not daemon.state("db").flapping and changes(transitions, "flapping-start") == []
    transitions = daemon.run("db", "n0")
    assert daemon.state("db").flap_percent == pytest.approx(SIX_CHANGES)
    assert daemon.state("db").flapping
    [start] = changes(transitions, "flapping-start")
    assert not start.suppressed and start.reason == "flap rate 34.4% above 30%"


def test_flapping_starts_and_ends_once_and_suppresses_state_changes() -> None:
    """Once flapping, state changes still happen but are suppressed; start and end come once."""
    daemon = Daemon(tcp("db", nodes=1, confirm_after=1, recover_after=1))
    log: list[Transition] = []
    for i in range(12):  # alternate: the rate climbs past 30 % at run 7 and stays there
        log += daemon.run("db", *(("n0",) if i % 2 == 0 else ()))
    state_changes = changes(log)
    assert [t.suppressed for t in state_changes] == [False] * 5 + [True] * 6
    assert daemon.state("db").hard is CheckStatus.DOWN  # the state itself stays correct
    percents = []
    for _ in range(25):
        log += daemon.run("db", "n0")
        percents.append(daemon.state("db").flap_percent)
    assert len(changes(log, "flapping-start")) == 1
    [end] = changes(log, "flapping-end")
    ended = next(i for i, p in enumerate(percents) if p < 25)
    assert percents[ended - 1] >= 25 and end.reason == f"flap rate {percents[ended]:.1f}% below 25%"
    assert not daemon.state("db").flapping and percents[-1] == 0.0
    assert changes(log)[-1].to_state == "up" and changes(log)[-1].suppressed  # still flapping


def test_dependency_makes_child_unreachable_then_down_after_parent_recovers() -> None:
    """A child failing behind a down parent is unreachable (suppressed); down once it is not."""
    daemon = Daemon(
        tcp("proxy", nodes=1, confirm_after=2, recover_after=2),
        tcp("api", nodes=1, confirm_after=2, recover_after=2, depends_on="[proxy]"),
    )
    daemon.run("proxy", "n0")
    daemon.run("api", "n0")
    daemon.run("proxy")
    daemon.run("api")  # the parent is not hard down yet: plain down, streak 1
    assert daemon.state("api").soft is CheckStatus.DOWN
    [parent_down] = changes(daemon.run("proxy"))
    assert not parent_down.suppressed
    assert changes(daemon.run("api")) == []
    state = daemon.state("api")
    assert (state.soft, state.unreachable_because) == ("unreachable", ("proxy",))
    daemon.run("proxy")
    [child] = changes(daemon.run("api"))
    assert (child.from_state, child.to_state, child.suppressed) == ("up", "unreachable", True)
    assert child.reason == "depends on proxy, which is down"
    daemon.run("proxy", "n0")
    daemon.run("api")
    [parent_up] = changes(daemon.run("proxy", "n0"))
    assert parent_up.to_state == "up"
    assert changes(daemon.run("api")) == []  # down now, through normal hysteresis
    assert daemon.state("api").unreachable_because == ()
    [child] = changes(daemon.run("api"))
    assert (child.from_state, child.to_state, child.suppressed) == ("unreachable", "down", False)
    assert child.reason == "connection_refused: connection refused by n0.invalid:1"


def test_recovery_from_unreachable_is_suppressed() -> None:
    """Unreachable -> up was never announced as a problem, so its recovery is suppressed too."""
    daemon = Daemon(
        tcp("proxy", nodes=1, confirm_after=1, recover_after=1),
        tcp("api", nodes=1, confirm_after=1, recover_after=1, depends_on="[proxy]"),
    )
    daemon.run("proxy", "n0")
    daemon.run("api", "n0")
    daemon.run("proxy")
    [change] = changes(daemon.run("api"))
    assert (change.to_state, change.suppressed) == ("unreachable", True)
    daemon.run("proxy", "n0")
    [change] = changes(daemon.run("api", "n0"))
    assert (change.from_state, change.to_state, change.suppressed) == ("unreachable", "up", True)


def test_node_changes_behind_a_down_parent_are_suppressed() -> None:
    """A child's node going down while its parent is down is the parent's news, not an alert."""
    daemon = Daemon(
        tcp("proxy", nodes=1, confirm_after=1),
        tcp("api", nodes=2, confirm_after=1, depends_on="[proxy]"),
    )
    daemon.run("proxy", "n0")
    daemon.run("api", "n0")
    daemon.run("proxy")
    transitions = daemon.run("api")
    [node_change] = changes(transitions, "node-state-change")
    assert (node_change.node, node_change.suppressed) == ("n0", True)


def test_unknown_check_raises_key_error() -> None:
    """A result for a check the config does not have is a caller bug, not silently dropped."""
    daemon = Daemon(tcp("db"))
    with pytest.raises(KeyError):
        daemon.tracker.observe(replace(daemon.result("db", "n0"), name="x"))
    with pytest.raises(KeyError):
        daemon.tracker.check_state("x")


def test_reconfigure_keeps_state_of_unchanged_checks_and_drops_removed() -> None:
    """A reload keeps what it can by name: checks, nodes; removed ones vanish, new start unknown."""
    daemon = Daemon(tcp("db", nodes=2), tcp("old", nodes=1))
    daemon.run("db", "n0")
    first_seen = daemon.clock.now()
    daemon.run("old", "n0")
    daemon.tracker.reconfigure(config(tcp("db", nodes=3), tcp("new", nodes=1)))
    state = daemon.state("db")
    assert (state.hard, state.runs, state.since) == ("up", 1, first_seen)
    assert state.nodes["n0"].hard == "up" and state.nodes["n2"].hard == "unknown"
    assert daemon.state("new").hard is CheckStatus.UNKNOWN
    with pytest.raises(KeyError):
        daemon.state("old")
    assert daemon.tracker.counts() == {
        "up": 1,
        "degraded": 0,
        "down": 0,
        "unreachable": 0,
        "unknown": 1,
    }


def test_reconfigure_resets_an_active_node_that_was_removed() -> None:
    """If the serving alternate is gone from the config, node order falls back to config order."""
    daemon = Daemon(tcp("db", nodes=3))
    daemon.run("db", "n0")
    daemon.run("db", "n2")
    assert daemon.tracker.node_order("db") == ["n2", "n0", "n1"]
    daemon.tracker.reconfigure(config(tcp("db", nodes=2)))
    state = daemon.state("db")
    assert (state.active_node, state.failback_streak) == (None, 0)
    assert set(state.nodes) == {"n0", "n1"}
    assert daemon.tracker.node_order("db") == ["n0", "n1"]
    assert not daemon.tracker.needs_preferred_probe("db")


def test_reconfigure_that_makes_the_active_node_preferred_ends_failback_counting() -> None:
    """Reordered nodes: the serving alternate becomes the preferred one, so the check is up."""
    daemon = Daemon(tcp("db", nodes=2, failback_after=5))
    daemon.run("db", "n0")
    daemon.run("db", "n1")
    daemon.run("db", "n0", "n1")
    assert daemon.state("db").failback_streak == 1
    nodes = "[{name: n1, address: 'h1.invalid:1'}, {name: n0, address: 'h0.invalid:1'}]"
    daemon.tracker.reconfigure(config(f"  - {{name: db, kind: tcp, nodes: {nodes}}}\n"))
    assert daemon.state("db").failback_streak == 0
    assert not daemon.tracker.needs_preferred_probe("db")
    assert changes(daemon.run("db", "n1"), "failover") == []
    assert daemon.state("db").soft is CheckStatus.UP


def test_reconfigure_applies_new_thresholds_from_now() -> None:
    """A lowered confirm_after takes effect at the next run, with the streak kept."""
    daemon = Daemon(tcp("db", nodes=1, confirm_after=5))
    daemon.run("db", "n0")
    daemon.run("db")
    daemon.run("db")
    assert daemon.state("db").hard is CheckStatus.UP
    daemon.tracker.reconfigure(config(tcp("db", nodes=1, confirm_after=3)))
    [change] = changes(daemon.run("db"))
    assert change.to_state == "down"


def test_counts_hard_states() -> None:
    """counts() gives every hard state, zeros included, for the systemd status line."""
    daemon = Daemon(tcp("a", nodes=1), tcp("b", nodes=2), tcp("c", nodes=1))
    daemon.run("a", "n0")
    daemon.run("b", "n1")
    assert daemon.tracker.counts() == {
        "up": 1,
        "degraded": 1,
        "down": 0,
        "unreachable": 0,
        "unknown": 1,
    }


def test_counts_follow_every_move_of_the_hard_state() -> None:
    """counts() is kept up as runs move states, not recounted: after a seeded mix of
    failures, recoveries, failovers, a down parent and a reload it still equals a count
    over every check."""
    import random

    daemon = Daemon(tcp("proxy", nodes=1), tcp("a", depends_on="[proxy]"), tcp("b", nodes=2))
    rng = random.Random(12345)
    answers = [(), ("n0",), ("n1",), ("n0", "n1")]

    def recount() -> dict[str, int]:
        expected = dict.fromkeys(map(str, CheckStatus), 0)
        for name in ("proxy", "a", "b"):
            if name in {c.name for c in daemon.config.checks}:
                expected[daemon.state(name).hard] += 1
        return expected

    for step in range(300):
        name = rng.choice([c.name for c in daemon.config.checks])
        daemon.run(name, *rng.choice(answers))
        assert daemon.tracker.counts() == recount(), f"after step {step}"
        if step == 150:  # a reload drops b and keeps the rest
            daemon.config = config(tcp("proxy", nodes=1), tcp("a", depends_on="[proxy]"))
            daemon.tracker.reconfigure(daemon.config)
            assert daemon.tracker.counts() == recount()
    assert sum(daemon.tracker.counts().values()) == 2


def test_as_dict_is_json_ready() -> None:
    """The /status view serialises with json.dumps, times in ISO 8601 with a Z."""
    daemon = Daemon(tcp("db", nodes=2))
    assert json.loads(json.dumps(daemon.state("db").as_dict()))["since"] is None
    daemon.run("db", "n0")
    daemon.run("db", "n1")
    data = json.loads(json.dumps(daemon.state("db").as_dict()))
    assert data["hard"] == "up" and data["soft"] == "degraded" and data["active_node"] == "n1"
    assert data["since"] == "2026-01-01T00:00:30.000Z"
    assert data["unreachable_because"] == [] and data["flapping"] is False
    assert data["nodes"]["n0"] == {
        "hard": "up",
        "soft": "down",
        "streak": 1,
        "since": "2026-01-01T00:00:30.000Z",
        "last_error_type": "connection_refused",
    }


def unjudged(daemon: Daemon, check: str) -> list[Transition]:
    """One run whose only failure is no_data: nothing was learnt about the link."""
    daemon.clock.advance(30)
    name = daemon.config.check(check).nodes[0].name
    error = ProbeError(ErrorType.NO_DATA, "no heartbeat received yet")
    failed = NodeResult(name, "push", NodeStatus.DOWN, (Attempt(1, 0.0, error),))
    daemon.groups += 1
    result = CheckResult(
        check, "tcp", "", Status.UNKNOWN, None, daemon.clock.now(), 0.0, (failed,), "u"
    )
    return daemon.tracker.observe(result)


def test_unjudged_runs_leave_a_new_check_unknown_and_the_first_judgement_is_the_baseline() -> None:
    """No sign of life yet: unknown, with no state change; the first real answer sets the
    state silently, as a first run does."""
    daemon = Daemon(tcp(nodes=1))
    assert unjudged(daemon, "db") == [] and unjudged(daemon, "db") == []
    view = daemon.state("db")
    assert (view.hard, view.soft, view.since) == (CheckStatus.UNKNOWN, CheckStatus.UNKNOWN, None)
    assert view.nodes["n0"].hard == "unknown"
    assert changes(daemon.run("db", "n0")) == []
    assert daemon.state("db").hard is CheckStatus.UP


def test_losing_every_sign_of_life_moves_to_unknown_after_confirm_after() -> None:
    """Up, then runs that cannot judge: unknown after confirm_after runs (a state change
    naming the error), then down from unknown is a change too, then up after recover_after."""
    daemon = Daemon(tcp(nodes=1))
    daemon.run("db", "n0")
    assert unjudged(daemon, "db") == []
    (change,) = changes(unjudged(daemon, "db"))
    assert (change.from_state, change.to_state) == ("up", "unknown")
    assert change.reason.startswith("no_data: no heartbeat")
    daemon.run("db")
    (down,) = changes(daemon.run("db"))
    assert (down.from_state, down.to_state) == ("unknown", "down")
    daemon.run("db", "n0")
    (up,) = changes(daemon.run("db", "n0"))
    assert (up.from_state, up.to_state) == ("down", "up")


def crashed(daemon: Daemon, check: str) -> list[Transition]:
    """One run whose probe crashed on the only node, its status as the runner gives it."""
    from engine.runner import status_of

    daemon.clock.advance(30)
    name = daemon.config.check(check).nodes[0].name
    error = ProbeError(ErrorType.INTERNAL, "probe crashed: KeyError: 'oops'")
    failed = NodeResult(name, f"{name}.invalid:1", NodeStatus.DOWN, (Attempt(1, 0.0, error),))
    status = status_of(None, name, [failed])
    daemon.groups += 1
    result = CheckResult(check, "tcp", "", status, None, daemon.clock.now(), 0.0, (failed,), "c")
    return daemon.tracker.observe(result)


def test_a_crashing_probe_takes_the_check_down_not_unknown() -> None:
    """A bug in a probe must not hide an outage: runs that crash are down like any
    failure, after confirm_after runs, with the node down too and the crash as reason."""
    daemon = Daemon(tcp(nodes=1))
    daemon.run("db", "n0")
    assert changes(crashed(daemon, "db")) == []
    (change,) = changes(crashed(daemon, "db"))
    assert (change.from_state, change.to_state) == ("up", "down")
    assert change.reason == "internal: probe crashed: KeyError: 'oops'"
    view = daemon.state("db")
    assert view.nodes["n0"].hard == "down" and view.nodes["n0"].last_error_type == "internal"


def test_events_never_call_an_unknown_check_down() -> None:
    """Heartbeat's state.status has no "unknown": for a check no run has judged it is
    left out rather than said to be down beside monitor.status "unknown"; a confirmed
    outage is still down there, flapping still flapping."""
    from events.ecs import check_event, state_fields
    from tests.ecs_schema import problems

    daemon = Daemon(tcp(nodes=1))
    unjudged(daemon, "db")
    view = daemon.state("db")
    error = ProbeError(ErrorType.NO_DATA, "no heartbeat received yet")
    failed = NodeResult("n0", "push", NodeStatus.DOWN, (Attempt(1, 0.0, error),))
    result = CheckResult("db", "tcp", "", Status.UNKNOWN, None, daemon.clock.now(), 0.0,
                         (failed,), "u")  # fmt: skip
    event = check_event(result, view)
    assert event["monitor"]["status"] == "unknown"
    assert event["hotline_probe"]["hard_status"] == "unknown"
    assert "status" not in event["state"] and event["state"]["checks"] == 1
    assert problems(event) == []
    daemon.run("db")
    daemon.run("db")
    assert state_fields(daemon.state("db"))["status"] == "down"
    assert state_fields(replace(daemon.state("db"), flapping=True))["status"] == "flapping"
