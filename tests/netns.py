"""Two network namespaces joined by a veth pair, made and removed by a test.

The prober's namespace holds 10.77.0.1/24, the peer's 10.77.0.2/24: addresses that
exist only inside namespaces the test created, so no packet can leave the machine.
Both ends of the veth are created inside the namespaces, so their names cannot clash
with the host's interfaces or with another test's pair.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

PROBER_IP = "10.77.0.1"
PEER_IP = "10.77.0.2"


def unavailable() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    return None


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class Pair:
    prober: str
    peer: str

    def exec(
        self, namespace: str, command: Sequence[str], **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            ["ip", "netns", "exec", namespace, *command],
            capture_output=True,
            text=True,
            timeout=60,
            **kwargs,
        )

    def sysctl(self, namespace: str, key: str, value: str) -> None:
        # Written through /proc inside the namespace: the sysctl binary may be absent.
        path = "/proc/sys/" + key.replace(".", "/")
        done = self.exec(namespace, ["sh", "-c", f"echo '{value}' > {path}"])
        assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def namespace_pair() -> Iterator[Pair]:
    tag = secrets.token_hex(4)
    pair = Pair(prober=f"hp-test-{tag}-a", peer=f"hp-test-{tag}-b")
    made: list[str] = []
    try:
        for namespace in (pair.prober, pair.peer):
            ip("netns", "add", namespace)
            made.append(namespace)
        ip("link", "add", "name", "v0", "netns", pair.prober, "type", "veth",
           "peer", "name", "v0", "netns", pair.peer)  # fmt: skip
        for namespace, address in ((pair.prober, PROBER_IP), (pair.peer, PEER_IP)):
            ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "v0")
            ip("-n", namespace, "link", "set", "v0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        yield pair
    finally:
        for namespace in made:  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
