"""The one place that knows about deadlines, retries and node order.

Every probe kind runs inside the same loop: attempts bounded by the check's ``timeout``
and the node's ``deadline``, retried with exponential backoff and jitter (tenacity),
and nodes tried in the configured order until one answers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from config.checks import CheckBase
from config.probe_config import ProbeConfig
from core.clock import Clock
from core.errors import ErrorType, ProbeError, ProbeFailure, one_line
from core.redact import redact_url
from core.result import Attempt, CheckResult, NodeResult, NodeStatus, Status
from probes import PROBES
from probes.base import (
    PROXY_PHASES,
    Marks,
    Observation,
    Probe,
    ProbeContext,
    phases_from,
    recording,
    unfinished,
)
from probes.net import OUT_OF_DESCRIPTORS, out_of_descriptors

if TYPE_CHECKING:
    from tenacity import RetryCallState

# An attempt squeezed into less than this share of its timeout proves nothing; the
# node gives up instead of making it.
_MIN_BUDGET_SHARE = 0.1

OnResult = Callable[[CheckResult], Awaitable[None] | None]


class _AttemptFailed(Exception):
    def __init__(self, error: ProbeError) -> None:
        super().__init__(error.message)
        self.error = error


def target_of(node: Any) -> str:
    """What a node points at, safe to print."""
    url = getattr(node, "url", None)
    if url:
        return redact_url(url)
    # address: host:port (tcp, tls, dns); host: no port (icmp); target: a freshness
    # check's source, already safe to print; none of them: dns's system resolver.
    return str(
        getattr(node, "address", None)
        or getattr(node, "host", None)
        or getattr(node, "target", None)
        or node.name
    )


async def run_node(probe: Probe, check: CheckBase, node: Any, ctx: ProbeContext) -> NodeResult:
    """All attempts at one node, within its deadline."""
    clock = ctx.clock
    started = clock.monotonic()
    deadline = started + check.node_deadline()
    attempts: list[Attempt] = []

    async def attempt_once() -> tuple[Attempt, Observation | None]:
        # The first attempt gets the node's whole allowance, not what is left of it a
        # few microseconds later: on a busy host that made "within 299ms" of a 300ms
        # timeout. Later attempts get what their predecessors and waits left.
        remaining = deadline - (clock.monotonic() if attempts else started)
        budget = min(check.timeout, max(remaining, 0.0))
        attempt, observation = await _attempt(probe, check, node, ctx, len(attempts) + 1, budget)
        attempts.append(attempt)
        return attempt, observation

    # Most runs succeed at the first attempt; tenacity is brought in only when there is
    # something to retry, which keeps the common path cheap (see bench/).
    first, observation = await attempt_once()
    if first.error is not None and first.error.retryable and check.retries.attempts > 1:
        observation = await _retry(check, clock, deadline, first.error, attempt_once)
    return NodeResult(
        name=node.name,
        target=target_of(node),
        status=NodeStatus.UP if observation is not None else NodeStatus.DOWN,
        attempts=tuple(attempts),
        duration=clock.monotonic() - started,
        warnings=observation.warnings if observation else (),
    )


async def _retry(
    check: CheckBase,
    clock: Clock,
    deadline: float,
    first_error: ProbeError,
    attempt_once: Callable[[], Awaitable[tuple[Attempt, Observation | None]]],
) -> Observation | None:
    """Attempts 2..n: exponential backoff with jitter, never past the node's deadline."""
    from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

    retries = check.retries
    backoff = wait_exponential_jitter(
        multiplier=retries.backoff, max=retries.max_backoff, jitter=retries.backoff
    )
    min_budget = check.timeout * _MIN_BUDGET_SHARE

    def remaining() -> float:
        return deadline - clock.monotonic()

    def wait(state: RetryCallState) -> float:
        return max(0.0, min(backoff(state), remaining()))

    def stop(state: RetryCallState) -> bool:
        after_sleep = remaining() - (state.upcoming_sleep or 0.0)
        return state.attempt_number >= retries.attempts or after_sleep < min_budget

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, _AttemptFailed) and exc.error.retryable

    known: ProbeError | None = first_error  # tenacity's attempt 1 is the one already made
    try:
        async for trial in AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(retryable),
            sleep=clock.sleep,
            reraise=True,
        ):
            with trial:
                if known is not None:
                    error, known = known, None
                    raise _AttemptFailed(error)
                attempt, observation = await attempt_once()
                if attempt.error is not None:
                    raise _AttemptFailed(attempt.error)
                return observation
    except _AttemptFailed:
        return None
    return None


async def _attempt(
    probe: Probe, check: CheckBase, node: Any, ctx: ProbeContext, number: int, budget: float
) -> tuple[Attempt, Observation | None]:
    clock = ctx.clock
    started = clock.monotonic()
    marks = Marks()
    try:
        with recording(marks):
            async with asyncio.timeout(budget):
                observation = await probe(check, node, ctx)
    except TimeoutError:
        error = _timeout_error(marks, budget)
        return Attempt(number, clock.monotonic() - started, error, phases_from(marks)), None
    except ProbeFailure as failure:
        return Attempt(
            number,
            clock.monotonic() - started,
            failure.error,
            phases_from(marks),
            failure.details,
        ), None
    except Exception as exc:  # a probe bug must cost one attempt, never the run
        if isinstance(exc, OSError) and exc.errno in OUT_OF_DESCRIPTORS:
            # Out of descriptors where a probe did not expect it: still this host's
            # shortage, not a crash and not the link's fault.
            error = out_of_descriptors(exc, node.name).error
        else:
            error = ProbeError(
                ErrorType.INTERNAL, one_line(f"probe crashed: {type(exc).__name__}: {exc}")
            )
        return Attempt(number, clock.monotonic() - started, error), None
    measured = observation.phases or phases_from(marks)
    attempt = Attempt(number, clock.monotonic() - started, None, measured, observation.details)
    return attempt, observation


def _timeout_error(marks: dict[str, float], budget: float) -> ProbeError:
    """Name the phase that hung: a lookup that never answers is a DNS problem, a forward
    proxy that never answers is the proxy's."""
    limit = _human(budget)
    match unfinished(marks):
        case ("resolve", _):
            return ProbeError(ErrorType.DNS, f"name lookup gave no answer within {limit}")
        case (phase, waiting_for) if phase in PROXY_PHASES:
            return ProbeError(
                ErrorType.PROXY, f"no answer within {limit}, waiting for {waiting_for}"
            )
        case (_, waiting_for):
            return ProbeError(
                ErrorType.TIMEOUT, f"no answer within {limit}, waiting for {waiting_for}"
            )
        case None:
            return ProbeError(ErrorType.TIMEOUT, f"no answer within {limit}")


def _human(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.3g}s"


def node_order(nodes: Sequence[Any], active: str | None = None) -> list[Any]:
    """The order nodes are tried in: the active node first (traffic stays where it
    is), then the rest in config order. The one place that orders nodes."""
    first = [node for node in nodes if node.name == active]
    return first + [node for node in nodes if node.name != active]


async def run_check(
    check: CheckBase,
    ctx: ProbeContext,
    *,
    probes: Mapping[str, Probe] = PROBES,
    serving: str | None = None,
) -> CheckResult:
    """Try the nodes in order: ``serving`` (the daemon's active node) first, if given."""
    probe = probes[check.kind]
    nodes = node_order(check.nodes, serving) if serving is not None else check.nodes
    started_at, started = ctx.clock.now(), ctx.clock.monotonic()
    results: list[NodeResult] = []
    active: str | None = None
    for node in nodes:
        if active is not None:
            results.append(NodeResult(node.name, target_of(node), NodeStatus.SKIPPED))
            continue
        result = await run_node(probe, check, node, ctx)
        results.append(result)
        if result.status is NodeStatus.UP:
            active = node.name
    return CheckResult(
        name=check.name,
        kind=check.kind,
        title=check.title,
        status=status_of(active, check.nodes[0].name, results),
        active_node=active,
        started_at=started_at,
        duration=ctx.clock.monotonic() - started,
        nodes=tuple(results),
        check_group=os.urandom(16).hex(),
    )


def status_of(active: str | None, preferred: str, nodes: Sequence[NodeResult]) -> Status:
    """Up on the preferred node, degraded on another; when none answered, down, unless
    no failure judged the link (only UNJUDGED errors): then unknown."""
    if active is not None:
        return Status.UP if active == preferred else Status.DEGRADED
    errors = [node.error for node in nodes if node.error is not None]
    if errors and not any(error.judged for error in errors):
        return Status.UNKNOWN
    return Status.DOWN


async def run_all(
    config: ProbeConfig,
    ctx: ProbeContext,
    *,
    names: Iterable[str] | None = None,
    concurrency: int | None = None,
    on_result: OnResult | None = None,
    probes: Mapping[str, Probe] = PROBES,
) -> list[CheckResult]:
    """Run checks concurrently under a bound; results come back in config order."""
    checks = config.selected(names)
    slots = asyncio.Semaphore(concurrency or config.concurrency)

    async def one(check: CheckBase) -> CheckResult:
        async with slots:
            result = await run_check(check, ctx, probes=probes)
        if on_result is not None:
            pending = on_result(result)
            if pending is not None:
                await pending
        return result

    return list(await asyncio.gather(*(one(check) for check in checks)))
