"""The immutable record of one check run: every node tried, every attempt made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.errors import ProbeError


class Status(StrEnum):
    UP = "up"  # the preferred node answered
    DEGRADED = "degraded"  # only an alternate node answered; it is the active node
    DOWN = "down"  # no node answered (a probe that crashed did not answer either)
    # No node answered, and no failure said anything about the link: a freshness check
    # with no sign of life to read (core.errors.UNJUDGED). Nagios UNKNOWN.
    UNKNOWN = "unknown"


class NodeStatus(StrEnum):
    UP = "up"
    DOWN = "down"
    SKIPPED = "skipped"  # not tried in this run: an earlier node already answered


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int  # 1-based
    duration: float  # seconds
    error: ProbeError | None
    phases: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeResult:
    name: str
    target: str  # URL, host:port or host, credentials and secret parameters masked
    status: NodeStatus
    attempts: tuple[Attempt, ...] = ()
    duration: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def error(self) -> ProbeError | None:
        """Why the node is down: the last attempt's error."""
        return self.attempts[-1].error if self.attempts else None

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    kind: str
    title: str
    status: Status
    active_node: str | None
    started_at: datetime
    duration: float
    nodes: tuple[NodeResult, ...]
    check_group: str  # one id per run, shared by all its events (Heartbeat's name)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for node in self.nodes for w in node.warnings)

    @property
    def preferred(self) -> NodeResult:
        return self.nodes[0]

    @property
    def failed_over(self) -> bool:
        return self.status is Status.DEGRADED
