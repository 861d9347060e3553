"""systemd notify: datagrams on a real unix socket, as systemd would receive them."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.notify import Notifier, watchdog_interval


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_messages_arrive_as_systemd_expects(receiver: tuple[socket.socket, str]) -> None:
    """READY with STATUS, WATCHDOG, RELOADING with MONOTONIC_USEC, STOPPING: one datagram each."""
    sock, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.ready("19 checks: 19 up")
    assert sock.recv(4096) == b"READY=1\nSTATUS=19 checks: 19 up"
    notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    first, second = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    assert before <= int(second.removeprefix("MONOTONIC_USEC=")) <= before + 5_000_000
    notifier.status("two\nlines")
    assert sock.recv(4096) == b"STATUS=two lines"
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_abstract_socket_address() -> None:
    """A leading @ names an abstract socket (a NUL byte on the wire)."""
    name = f"hotline-probe-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    notifier = Notifier(f"@{name}")
    try:
        notifier.ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        notifier.close()
        sock.close()


def test_without_systemd_nothing_happens_and_errors_are_reported(tmp_path: Path) -> None:
    """No NOTIFY_SOCKET: calls are no-ops; a dead socket is reported, not raised."""
    assert not Notifier.from_env({}).ready()
    errors: list[str] = []
    dead = Notifier(str(tmp_path / "nobody-listens"), on_error=errors.append)
    assert not dead.watchdog()
    assert errors
    assert "cannot notify systemd" in errors[0]
    dead.close()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """Ping every half of WatchdogSec, and only when the watchdog is meant for this pid."""
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
