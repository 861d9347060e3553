"""The systemd notify protocol: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

One datagram per message on the unix socket named by ``$NOTIFY_SOCKET`` (a leading
``@`` is an abstract socket). Without that variable (not under systemd, or in a test)
every call is a no-op. A failed send is reported, never raised: the daemon's job is
probing, and systemd notices a missing READY or watchdog ping by itself.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

from core.clock import Clock


class Notifier:
    def __init__(self, address: str | None, *, on_error: Callable[[str], None] | None = None):
        self._address = address
        self._on_error = on_error
        self._socket: socket.socket | None = None
        if address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, on_error: Callable[[str], None] | None = None
    ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None, on_error=on_error)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *lines: str) -> bool:
        if self._socket is None or self._address is None:
            return False
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            self._socket.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            if self._on_error is not None:
                self._on_error(f"cannot notify systemd at {self._address}: {exc.strerror or exc}")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        # systemd >= 253 matches RELOADING to the reload by this timestamp.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between pings (half of WatchdogSec), or None when no watchdog is asked for."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.01)
    except ValueError:
        return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


async def keep_alive(
    notifier: Notifier,
    clock: Clock,
    interval: float,
    health: Callable[[], tuple[bool, str]],
    withheld: Callable[[str], None],
) -> None:
    """Ping systemd's watchdog every ``interval`` only while ``health`` says the daemon
    really turns, so a hang gets it restarted; ``withheld`` hears why, once per episode."""
    quiet = False
    while True:
        await clock.sleep(interval)
        ok, reason = health()
        if ok:
            notifier.watchdog()
            quiet = False
        elif not quiet:
            quiet = True
            withheld(reason)
