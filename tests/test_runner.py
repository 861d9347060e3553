"""The runner: retries, backoff, deadlines, failover order and concurrency, on a fake clock.

Probes here are scripted stand-ins so that each runner rule can be isolated; the same
rules against real loopback peers are in test_probes_*.py and test_failover.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from config.checks import CheckBase
from config.load import parse_config
from config.probe_config import ProbeConfig
from core.clock import FakeClock
from core.errors import ErrorType, ProbeFailure
from core.result import NodeStatus, Status
from engine import report
from engine.runner import run_all, run_check
from probes.base import Observation, ProbeContext

OK = Observation(phases={"connect": 0.001})


def config(checks: str, **top: Any) -> ProbeConfig:
    extra = "".join(f"{k}: {v}\n" for k, v in top.items())
    return parse_config(extra + "checks:\n" + checks)


def tcp_check(name: str = "db", nodes: int = 3, **opts: Any) -> str:
    node_list = ", ".join(f'{{name: n{i}, address: "h{i}.invalid:1"}}' for i in range(nodes))
    options = "".join(f", {k}: {v}" for k, v in opts.items())
    return f"  - {{name: {name}, kind: tcp, nodes: [{node_list}]{options}}}\n"


class Script:
    """A probe whose outcome per node follows a script: an ErrorType fails, None succeeds."""

    def __init__(self, plan: dict[str, list[ErrorType | None]], cost: float = 0.0) -> None:
        self.plan = {node: iter(steps) for node, steps in plan.items()}
        self.calls: list[str] = []
        self.cost = cost

    async def __call__(self, check: CheckBase, node: Any, ctx: ProbeContext) -> Observation:
        self.calls.append(node.name)
        if self.cost and isinstance(ctx.clock, FakeClock):
            ctx.clock.advance(self.cost)
        outcome = next(self.plan.get(node.name, iter(())), ErrorType.CONNECTION_REFUSED)
        if outcome is None:
            return OK
        raise ProbeFailure(outcome, f"scripted {outcome}")


def probes(fn: Callable[..., Any]) -> dict[str, Any]:
    return {"tcp": fn}


async def test_retries_with_exponential_backoff_and_jitter(
    fake_ctx: ProbeContext, fake_clock: FakeClock
) -> None:
    """Two failures then success: three attempts, waits ~backoff then ~2x backoff, with jitter."""
    cfg = config(tcp_check(nodes=1, retries="{attempts: 3, backoff: 200ms}"))
    script = Script({"n0": [ErrorType.CONNECTION_RESET, ErrorType.TIMEOUT, None]})
    result = await run_check(cfg.checks[0], fake_ctx, probes=probes(script))
    assert result.status is Status.UP
    node = result.nodes[0]
    assert [a.number for a in node.attempts] == [1, 2, 3]
    assert [a.error.type if a.error else None for a in node.attempts] == [
        ErrorType.CONNECTION_RESET,
        ErrorType.TIMEOUT,
        None,
    ]
    first, second = fake_clock.sleeps
    assert 0.2 <= first <= 0.4 and 0.4 <= second <= 0.6


async def test_jitter_spreads_waits(fake_ctx: ProbeContext, fake_clock: FakeClock) -> None:
    """Backoff waits are not all identical (jitter keeps retries from marching in step)."""
    cfg = config(tcp_check(nodes=1, retries="{attempts: 2, backoff: 1s}", timeout="5s"))
    for _ in range(8):
        await run_check(cfg.checks[0], fake_ctx, probes=probes(Script({})))
    assert len(fake_clock.sleeps) == 8
    assert len(set(fake_clock.sleeps)) > 1


async def test_final_errors_are_not_retried(fake_ctx: ProbeContext) -> None:
    """An expired certificate will not heal in 200 ms: one attempt, then the next node."""
    cfg = config(tcp_check(nodes=2, retries="{attempts: 3}"))
    script = Script({"n0": [ErrorType.TLS_EXPIRED] * 3, "n1": [None]})
    result = await run_check(cfg.checks[0], fake_ctx, probes=probes(script))
    assert len(result.nodes[0].attempts) == 1
    assert result.nodes[0].error is not None
    assert result.nodes[0].error.type is ErrorType.TLS_EXPIRED
    assert result.status is Status.DEGRADED


async def test_failover_to_first_answering_alternate(fake_ctx: ProbeContext) -> None:
    """Preferred down, first alternate down, second alternate up: degraded on n2."""
    cfg = config(tcp_check(nodes=3, retries="{attempts: 2, backoff: 10ms}"))
    script = Script({"n0": [], "n1": [], "n2": [None]})
    result = await run_check(cfg.checks[0], fake_ctx, probes=probes(script))
    assert result.status is Status.DEGRADED
    assert result.active_node == "n2"
    assert [n.status for n in result.nodes] == [NodeStatus.DOWN, NodeStatus.DOWN, NodeStatus.UP]
    assert script.calls == ["n0", "n0", "n1", "n1", "n2"]
    assert result.failed_over


async def test_preferred_up_leaves_alternates_untouched(fake_ctx: ProbeContext) -> None:
    """When the preferred node answers, alternates are skipped, not probed."""
    cfg = config(tcp_check(nodes=3))
    script = Script({"n0": [None]})
    result = await run_check(cfg.checks[0], fake_ctx, probes=probes(script))
    assert result.status is Status.UP and result.active_node == "n0"
    assert [n.status for n in result.nodes] == [
        NodeStatus.UP,
        NodeStatus.SKIPPED,
        NodeStatus.SKIPPED,
    ]
    assert script.calls == ["n0"]


async def test_all_nodes_down(fake_ctx: ProbeContext) -> None:
    """No node answers: down, no active node, every attempt kept with its error."""
    cfg = config(tcp_check(nodes=2, retries="{attempts: 3, backoff: 10ms}"))
    result = await run_check(cfg.checks[0], fake_ctx, probes=probes(Script({})))
    assert result.status is Status.DOWN and result.active_node is None
    assert [len(n.attempts) for n in result.nodes] == [3, 3]
    assert all(
        a.error is not None and a.error.type is ErrorType.CONNECTION_REFUSED
        for n in result.nodes
        for a in n.attempts
    )


async def test_node_deadline_caps_attempts(fake_ctx: ProbeContext, fake_clock: FakeClock) -> None:
    """Attempts costing 1 s each inside a 2.5 s node deadline: no more than fit."""
    cfg = config(
        tcp_check(nodes=1, timeout="1s", deadline="2.5s", retries="{attempts: 10, backoff: 100ms}")
    )
    start = fake_clock.monotonic()
    result = await run_check(cfg.checks[0], fake_ctx, probes=probes(Script({}, cost=1.0)))
    assert 2 <= len(result.nodes[0].attempts) <= 3
    assert fake_clock.monotonic() - start <= 2.5 + 1.0  # the last attempt may use its budget


async def test_hanging_probe_times_out(ctx: ProbeContext) -> None:
    """A probe that never returns is cut at the check's timeout and classified as timeout."""
    cfg = config(tcp_check(nodes=1, timeout="50ms", retries="{attempts: 1}"))

    async def hang(check: CheckBase, node: Any, ctx: ProbeContext) -> Observation:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    result = await run_check(cfg.checks[0], ctx, probes=probes(hang))
    error = result.nodes[0].error
    assert error is not None and error.type is ErrorType.TIMEOUT
    assert "50ms" in error.message
    assert 0.04 <= result.duration < 0.5


async def test_crashing_probe_is_an_internal_error(fake_ctx: ProbeContext) -> None:
    """A bug in a probe costs that attempt, is named, never escapes the runner, and
    leaves the check down: a crash must not hide an outage behind "unknown". Nagios is
    still told UNKNOWN (3): the plugin failed, not necessarily the link."""
    cfg = config(tcp_check(nodes=1, retries="{attempts: 3}"))

    async def broken(check: CheckBase, node: Any, ctx: ProbeContext) -> Observation:
        raise KeyError("oops")

    result = await run_check(cfg.checks[0], fake_ctx, probes=probes(broken))
    assert result.status is Status.DOWN
    error = result.nodes[0].error
    assert error is not None and error.type is ErrorType.INTERNAL and "KeyError" in error.message
    assert len(result.nodes[0].attempts) == 1  # internal errors are final
    assert report.exit_code([result]) == report.UNKNOWN
    assert report.nagios([result]).startswith(
        "HOTLINE-PROBE UNKNOWN - db DOWN (internal, no node answered); 0 of 1 up | 'db_state'=2;"
    )


async def test_exit_code_is_critical_when_a_failure_judged_the_link(fake_ctx: ProbeContext) -> None:
    """Internal errors are UNKNOWN (3) only while nothing else failed: one node refused
    (or another check down for real) makes the run CRITICAL (2); no_data alone is the
    only failure that leaves a check unknown rather than down."""
    cfg = config(tcp_check(nodes=2, retries="{attempts: 1}") + tcp_check(name="web", nodes=1))

    async def mixed(check: CheckBase, node: Any, ctx: ProbeContext) -> Observation:
        if check.name == "web":
            raise ProbeFailure(ErrorType.CONNECTION_REFUSED, "refused")
        if node.name == "n0":
            raise KeyError("oops")
        raise ProbeFailure(ErrorType.NO_DATA, "nothing to read")

    crashed_and_no_data = await run_check(cfg.checks[0], fake_ctx, probes=probes(mixed))
    assert crashed_and_no_data.status is Status.DOWN
    assert report.exit_code([crashed_and_no_data]) == report.UNKNOWN
    refused = await run_check(cfg.checks[1], fake_ctx, probes=probes(mixed))
    assert report.exit_code([crashed_and_no_data, refused]) == report.CRITICAL

    async def no_data(check: CheckBase, node: Any, ctx: ProbeContext) -> Observation:
        raise ProbeFailure(ErrorType.NO_DATA, "nothing to read")

    unjudged = await run_check(cfg.checks[0], fake_ctx, probes=probes(no_data))
    assert unjudged.status is Status.UNKNOWN
    assert report.exit_code([unjudged]) == report.UNKNOWN


async def test_concurrency_bound_and_config_order(ctx: ProbeContext) -> None:
    """Twelve checks under a bound of three: never more than three in flight, order kept."""
    cfg = config("".join(tcp_check(name=f"c{i}", nodes=1) for i in range(12)), concurrency=3)
    in_flight = peak = 0

    async def counting(check: CheckBase, node: Any, ctx: ProbeContext) -> Observation:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)  # yield so that others could start if the bound allowed
        await asyncio.sleep(0)
        in_flight -= 1
        return OK

    results = await run_all(cfg, ctx, probes=probes(counting))
    assert peak == 3
    assert [r.name for r in results] == [f"c{i}" for i in range(12)]


async def test_a_slow_check_does_not_delay_the_others(ctx: ProbeContext) -> None:
    """Results of fast checks are reported while a slow one is still running."""
    cfg = config(
        tcp_check(name="slow", nodes=1)
        + tcp_check(name="fast-1", nodes=1)
        + tcp_check(name="fast-2", nodes=1)
    )
    release = asyncio.Event()
    reported: list[str] = []

    async def probe(check: CheckBase, node: Any, ctx: ProbeContext) -> Observation:
        if check.name == "slow":
            await release.wait()
        return OK

    def on_result(result: Any) -> None:
        reported.append(result.name)
        if len(reported) == 2:
            release.set()

    results = await run_all(cfg, ctx, probes=probes(probe), on_result=on_result)
    assert reported == ["fast-1", "fast-2", "slow"]
    assert all(r.status is Status.UP for r in results)


async def test_first_attempt_gets_the_whole_timeout_on_a_busy_host() -> None:
    """Time that passes before the first attempt (a busy loop, a slow host) does not
    shorten it: a 300ms timeout is reported as 300ms, not 299ms."""

    class Ticking(FakeClock):
        def monotonic(self) -> float:
            self.advance(0.002)  # every look at the clock costs 2 ms
            return super().monotonic()

    async def hangs(check: CheckBase, node: Any, ctx: ProbeContext) -> Observation:
        await asyncio.sleep(10)
        return OK

    async with ProbeContext(clock=Ticking()) as ctx:
        check = config(tcp_check(nodes=1, timeout="300ms", retries="{attempts: 1}")).checks[0]
        result = await run_check(check, ctx, probes=probes(hangs))
    error = result.nodes[0].error
    assert error is not None
    assert error.message == "no answer within 300ms"
