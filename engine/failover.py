"""The daemon's runs of a check, as the state decides them: failover, failback, standby.

The runner tries the nodes in order and stops at the first that answers; the state
tracker knows which node serves now. Between them: a regular run starts at the serving
node (no flapping back to a preferred node that just failed), probes the preferred node
too while an alternate serves (its good runs count towards failback), and a standby run
probes the idle alternates, so a dead standby is known before it is needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from core.result import CheckResult, NodeResult, NodeStatus
from engine.runner import run_check, run_node
from engine.schedule import Job
from engine.state import CheckStatus, StateTracker
from probes import PROBES
from probes.base import ProbeContext

if TYPE_CHECKING:
    from config.checks import CheckBase
    from config.probe_config import ProbeConfig

STANDBY = "/standby"
"""The suffix of a check's standby job key."""


def jobs_for(config: ProbeConfig) -> list[Job]:
    """A regular job per check, and a standby job per check that has alternates."""
    jobs = [Job(check.name, check.interval) for check in config.checks]
    jobs += [
        Job(check.name + STANDBY, check.standby_interval)
        for check in config.checks
        if len(check.nodes) > 1
    ]
    return jobs


def parents_in(config: ProbeConfig) -> frozenset[str]:
    """The checks some other check depends on."""
    return frozenset(parent for check in config.checks for parent in check.depends_on)


def refresh_first(parent: str, state: StateTracker) -> bool:
    """Whether to run ``parent`` now, before calling its child down: yes, unless it is
    known to be down already.

    Checks run on their own schedules, so a child can fail a few seconds before the
    broken proxy it depends on is next checked; asking the parent now (as Icinga does)
    turns twenty "down" alerts into one "down" and twenty "unreachable".
    """
    return state.check_state(parent).hard not in (CheckStatus.DOWN, CheckStatus.UNREACHABLE)


async def run_tracked(check: CheckBase, ctx: ProbeContext, state: StateTracker) -> CheckResult:
    """One run from the serving node on, plus the preferred node while on an alternate."""
    result = await run_check(check, ctx, serving=state.serving(check.name))
    preferred = check.nodes[0]
    if state.needs_preferred_probe(check.name):
        skipped = [
            n for n in result.nodes if n.name == preferred.name and n.status is NodeStatus.SKIPPED
        ]
        if skipped:  # counts towards failback
            probed = await run_node(PROBES[check.kind], check, preferred, ctx)
            nodes = tuple(probed if n.name == preferred.name else n for n in result.nodes)
            result = dataclasses.replace(result, nodes=nodes)
    return result


async def run_standby(
    check: CheckBase, ctx: ProbeContext, state: StateTracker
) -> AsyncIterator[NodeResult]:
    """Probe the alternates that are not serving, one after another."""
    active = state.check_state(check.name).active_node or check.nodes[0].name
    for node in check.nodes[1:]:
        if node.name != active:
            yield await run_node(PROBES[check.kind], check, node, ctx)
