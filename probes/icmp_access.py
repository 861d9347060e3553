"""Which ICMP socket this process may open, decided before opening one.

Linux offers two: an unprivileged "ping socket" (SOCK_DGRAM, IPPROTO_ICMP) for
processes whose group is inside ``net.ipv4.ping_group_range`` (it governs ICMPv6 as
well), and a raw socket for processes holding CAP_NET_RAW. The ping socket is preferred:
it needs no privilege and the kernel hands it only its own replies, where a raw socket
sees every ICMP packet the host receives. Both facts are read on every attempt, because
an operator may change the sysctl or the unit while the daemon runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import ErrorType, ProbeFailure

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
PROC_STATUS = Path("/proc/self/status")
CAP_NET_RAW = 13  # bit number in the capability sets (linux/capability.h)


@dataclass(frozen=True, slots=True)
class Access:
    privileged: bool
    """True: a raw socket (CAP_NET_RAW); False: an unprivileged ping socket."""

    @property
    def name(self) -> str:
        return "raw" if self.privileged else "unprivileged"


def ping_group_range() -> tuple[int, int] | None:
    """The sysctl's (low, high), or None where the kernel has no ping sockets."""
    try:
        low, high = PING_GROUP_RANGE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return None


def has_net_raw() -> bool:
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_RAW & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def choose() -> Access:
    """The socket to use, or a PERMISSION failure that says what to change."""
    span = ping_group_range()
    groups = {os.getegid(), *os.getgroups()}  # the kernel checks these (ping_init_sock)
    if span is not None and any(span[0] <= gid <= span[1] for gid in groups):
        return Access(privileged=False)
    if has_net_raw():
        return Access(privileged=True)
    gid = os.getegid()
    shown = f"{span[0]} {span[1]}" if span else "absent"
    raise ProbeFailure(
        ErrorType.PERMISSION,
        f"cannot send ICMP echoes: gid {gid} is outside net.ipv4.ping_group_range "
        f"({shown}) and the process lacks CAP_NET_RAW; allow one: set the sysctl "
        f"net.ipv4.ping_group_range to a range holding {gid}, or give the unit "
        "AmbientCapabilities=CAP_NET_RAW",
    )


def refused(access: Access, reason: str) -> ProbeFailure:
    """The kernel refused the socket that the checks above allowed (seccomp, an LSM,
    a capability dropped from the thread): say which socket, and what refused it."""
    return ProbeFailure(
        ErrorType.PERMISSION,
        f"the kernel refused a {access.name} ICMP socket ({reason}); check the unit's "
        "SystemCallFilter, RestrictAddressFamilies and security policy",
    )
