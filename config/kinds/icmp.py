"""``kind: icmp``: echoes to each host, judged by loss and round-trip time."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, model_validator

from config.checks import CheckBase, Node
from config.common import Model
from config.duration import Duration, format_duration
from config.fields import PositiveDuration
from config.registry import KINDS


def parse_loss(value: object) -> float:
    """``20%`` or ``0.2`` -> 0.2; 100% is refused, as a check with it could never fail."""
    text = value.strip() if isinstance(value, str) else value
    try:
        if isinstance(text, bool):
            raise ValueError
        if isinstance(text, str) and text.endswith("%"):
            loss = float(text[:-1]) / 100
        elif isinstance(text, int | float | str):
            loss = float(text)
            if loss > 1:
                raise ValueError
        else:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{value!r} is not a loss rate; write a percentage (20%) or a fraction (0.2)"
        ) from None
    if not 0 <= loss < 1:
        raise ValueError("max_loss must be from 0% to below 100% (100% could never fail)")
    return loss


def _format_loss(loss: float) -> str:
    return f"{loss * 100:g}%"


LossRate = Annotated[
    float, BeforeValidator(parse_loss), PlainSerializer(_format_loss, return_type=str)
]


def _check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or any(c in host for c in ":[]/") or any(c.isspace() for c in host):
            raise ValueError("host must be a host name or an IP address, without a port") from None
    return host


class IcmpNode(Node):
    host: Annotated[str, AfterValidator(_check_host)]


class IcmpExpect(Model):
    max_loss: LossRate | None = None
    """The share of echoes that may go unanswered; by default one reply is enough."""
    max_rtt: PositiveDuration | None = None
    """No reply may take longer."""
    max_avg_rtt: PositiveDuration | None = None


@KINDS.register(probe="probes.icmp")
class IcmpCheck(CheckBase):
    kind: Literal["icmp"]
    nodes: list[IcmpNode] = Field(min_length=1)
    count: int = Field(3, ge=1, le=100)
    """Echoes per attempt."""
    echo_interval: Annotated[Duration, Field(ge=0.01)] = 0.5
    """From one echo to the next (``interval`` is how often the check runs)."""
    reply_timeout: PositiveDuration = 1.0
    """How long an echo waits for its reply; a later reply counts as lost."""
    expect: IcmpExpect = IcmpExpect()

    @model_validator(mode="after")
    def _echoes_fit_the_timeout(self) -> IcmpCheck:
        longest = (self.count - 1) * max(self.echo_interval, self.reply_timeout)
        longest += self.reply_timeout
        if longest > self.timeout:
            raise ValueError(
                f"{self.count} echoes can take up to {format_duration(longest)} "
                f"(echo_interval {format_duration(self.echo_interval)}, reply_timeout "
                f"{format_duration(self.reply_timeout)}), more than timeout "
                f"{format_duration(self.timeout)}; lower count or raise timeout"
            )
        return self
