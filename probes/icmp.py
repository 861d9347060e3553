"""``kind: icmp``: ``count`` echo requests to one host, judged on loss and round-trip time.

icmplib builds, sends and matches the packets (its sockets handle both the raw and the
unprivileged kind, and the kernel's rewriting of the id on the latter). The loop over the
echoes is ours rather than icmplib's ``async_ping``: that one folds "host unreachable"
into plain loss and sleeps on the real clock, where a probe must name the failure and
take its time from ``ctx.clock``.
"""

from __future__ import annotations

import ipaddress
import socket
import statistics
from dataclasses import dataclass, field
from typing import Any

from icmplib import (
    AsyncSocket,
    ICMPError,
    ICMPLibError,
    ICMPRequest,
    ICMPSocketError,
    ICMPv4Socket,
    ICMPv6Socket,
    SocketPermissionError,
    TimeoutExceeded,
)
from icmplib.utils import unique_identifier

from config.kinds.icmp import IcmpCheck, IcmpNode
from core.errors import ErrorType, ProbeFailure
from probes import icmp_access
from probes.base import Observation, ProbeContext, attempt_marks, phases_from
from probes.net import resolve

# linux/in.h and linux/in6.h; Python's socket module does not name them.
_IP_RECVERR, _IPV6_RECVERR = 11, 25


@dataclass
class Echoes:
    """What ``count`` echoes brought back: round-trip times and the errors in their place."""

    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def probe(check: IcmpCheck, node: IcmpNode, ctx: ProbeContext) -> Observation:
    address = await _address(node.host, ctx)
    access = icmp_access.choose()
    v6 = ipaddress.ip_address(address).version == 6
    try:
        icmp_socket = (ICMPv6Socket if v6 else ICMPv4Socket)(privileged=access.privileged)
    except SocketPermissionError as exc:
        raise icmp_access.refused(access, str(exc)) from None
    except ICMPSocketError as exc:
        raise ProbeFailure(ErrorType.CONNECTION, f"cannot open an ICMP socket: {exc}") from None
    # The socket is closed on the way out whatever happens, setting it up included.
    with AsyncSocket(icmp_socket) as sock:
        if not access.privileged:
            _receive_errors(icmp_socket.sock, v6)
        echoes = await _echo(sock, address, check, ctx)
    details: dict[str, Any] = {"address": address, "socket": access.name}
    _judge(check, address, echoes, details)
    phases = phases_from(attempt_marks())
    phases["rtt"] = statistics.fmean(echoes.rtts)  # blackbox's probe_icmp_duration{phase="rtt"}
    return Observation(phases=phases, details=details)


def _receive_errors(raw: socket.socket, v6: bool) -> None:
    # A raw socket reads a router's "destination unreachable" as a packet; a ping
    # socket hears of it only with RECVERR on, as an error from its next receive.
    level, option = (socket.IPPROTO_IPV6, _IPV6_RECVERR) if v6 else (socket.IPPROTO_IP, _IP_RECVERR)
    try:
        raw.setsockopt(level, option, 1)
    except OSError as exc:
        raise ProbeFailure(
            ErrorType.CONNECTION,
            f"cannot set up the ICMP socket (RECVERR): {exc.strerror or exc}",
        ) from None


async def _address(host: str, ctx: ProbeContext) -> str:
    found = await resolve(host, 0, ctx, type=socket.SOCK_DGRAM)
    return found[0][1]


async def _echo(sock: AsyncSocket, address: str, check: IcmpCheck, ctx: ProbeContext) -> Echoes:
    """One echo at a time: each waits for its reply up to reply_timeout, and the next
    leaves echo_interval after the previous one did (or when its wait ended, if later)."""
    echoes = Echoes()
    ident = unique_identifier()  # per process: concurrent checks on raw sockets stay apart
    for sequence in range(check.count):
        started = ctx.clock.monotonic()
        request = ICMPRequest(destination=address, id=ident, sequence=sequence)
        echoes.sent += 1
        try:
            sock.send(request)
            reply = await sock.receive(request, check.reply_timeout)
            reply.raise_for_status()  # an ICMP error in place of the echo reply
        except TimeoutExceeded:
            pass  # lost
        except ICMPError as exc:  # destination unreachable, time exceeded
            echoes.errors.append(str(exc))
        except ICMPLibError as exc:  # sendto failed: no route, interface down
            echoes.errors.append(_socket_reason(exc))
        else:
            echoes.rtts.append(reply.time - request.time)
        if sequence + 1 < check.count:
            await ctx.clock.sleep(max(0.0, started + check.echo_interval - ctx.clock.monotonic()))
    return echoes


def _socket_reason(exc: ICMPLibError) -> str:
    # icmplib wraps the OSError as text: "[Errno 101] Network is unreachable".
    text = str(exc)
    return text.split("] ", 1)[1] if text.startswith("[Errno") and "] " in text else text


def _judge(check: IcmpCheck, address: str, echoes: Echoes, details: dict[str, Any]) -> None:
    def fail(kind: ErrorType, message: str) -> ProbeFailure:
        return ProbeFailure(kind, message, details=details)

    received = len(echoes.rtts)
    lost = echoes.sent - received
    loss = lost / echoes.sent
    details |= {"packets_sent": echoes.sent, "packets_received": received, "loss": round(loss, 4)}
    if echoes.rtts:
        details |= {
            "rtt_min_ms": _ms(min(echoes.rtts)),
            "rtt_avg_ms": _ms(statistics.fmean(echoes.rtts)),
            "rtt_max_ms": _ms(max(echoes.rtts)),
        }
    if echoes.errors:
        details["icmp_errors"] = sorted(set(echoes.errors))
    expect = check.expect
    if not received:
        if echoes.errors:
            raise fail(ErrorType.CONNECTION, f"{address}: {echoes.errors[-1]} (no echo answered)")
        raise fail(
            ErrorType.PACKET_LOSS, f"no reply to {echoes.sent} echoes to {address} (100% loss)"
        )
    # Compared in echoes, not as floats: 1 of 3 lost must not fail a limit of 33.3333%.
    if expect.max_loss is not None and lost > expect.max_loss * echoes.sent + 1e-9:
        raise fail(
            ErrorType.PACKET_LOSS,
            f"{lost} of {echoes.sent} echoes to {address} unanswered "
            f"({loss:.0%} loss, limit {expect.max_loss:.0%})",
        )
    slowest, average = max(echoes.rtts), statistics.fmean(echoes.rtts)
    if expect.max_rtt is not None and slowest > expect.max_rtt:
        raise fail(
            ErrorType.LATENCY,
            f"slowest reply from {address} took {_ms(slowest)} ms, limit {_ms(expect.max_rtt)} ms",
        )
    if expect.max_avg_rtt is not None and average > expect.max_avg_rtt:
        raise fail(
            ErrorType.LATENCY,
            f"replies from {address} took {_ms(average)} ms on average, "
            f"limit {_ms(expect.max_avg_rtt)} ms",
        )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
