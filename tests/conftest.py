"""Shared fixtures: a real probe context, a fake clock, structlog reset between tests."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog

from core.clock import FakeClock
from events.log import Pipeline
from probes.base import ProbeContext

_real_getaddrinfo = socket.getaddrinfo
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _loopback_only_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """Name resolution for tests: loopback names resolve, every other name fails NXDOMAIN.

    The machine's resolver is outside the machine, so resolving a placeholder such as
    db.invalid would send a query off the host. This keeps the suite on loopback and
    gives DNS-failure tests a deterministic answer through the real code path.
    """
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name in LOOPBACK_NAMES:
        return _real_getaddrinfo(host, *args, **kwargs)
    try:
        if ipaddress.ip_address(name).is_loopback:
            return _real_getaddrinfo(host, *args, **kwargs)
    except ValueError:
        pass
    else:
        raise socket.gaierror(socket.EAI_NONAME, f"tests may only reach loopback, not {name}")
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture(autouse=True)
def _loopback_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_only_getaddrinfo)


class DnsGuard:
    """Refuses DNS queries to servers off loopback and remembers each one it refused.

    dnspython reads resolv.conf and sends its own packets, past the getaddrinfo patch
    above; the machine's resolv.conf names a server off the host. The probe would report
    a refused query as a connection error, which a test expecting a failure could take
    for success: so every refusal also fails the test at teardown.
    """

    def __init__(self) -> None:
        self.refused: list[str] = []

    def check(self, destination: Any) -> None:
        if destination is None:  # a connected socket: its destination was checked then
            return
        host = str(destination[0])
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host in LOOPBACK_NAMES
        if not loopback:
            self.refused.append(host)
            raise PermissionError(f"tests may only query DNS servers on loopback, not {host}")


@pytest.fixture(autouse=True)
def dns_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[DnsGuard]:
    from dns import _asyncio_backend  # the layer every async query of dnspython goes through

    guard = DnsGuard()
    make_socket = _asyncio_backend.Backend.make_socket
    sendto = _asyncio_backend._DatagramSocket.sendto

    async def guarded_make_socket(
        self: Any,
        af: int,
        socktype: int,
        proto: int = 0,
        source: Any = None,
        destination: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        guard.check(destination)
        return await make_socket(  # type: ignore[no-untyped-call]
            self, af, socktype, proto, source, destination, *args, **kwargs
        )

    async def guarded_sendto(self: Any, what: bytes, destination: Any, *args: Any) -> Any:
        guard.check(destination)
        return await sendto(self, what, destination, *args)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(_asyncio_backend.Backend, "make_socket", guarded_make_socket)
    monkeypatch.setattr(_asyncio_backend._DatagramSocket, "sendto", guarded_sendto)
    yield guard
    if guard.refused:
        pytest.fail(f"a DNS query was aimed off loopback, at {', '.join(guard.refused)}")


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
async def ctx() -> AsyncIterator[ProbeContext]:
    """A production probe context: real clock, real sockets."""
    async with ProbeContext() as context:
        yield context


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake_ctx(fake_clock: FakeClock) -> AsyncIterator[ProbeContext]:
    """Real sockets, fake time: retries and backoff run instantly but are recorded."""
    async with ProbeContext(clock=fake_clock) as context:
        yield context


@pytest.fixture(autouse=True)
def _events_match_the_schema() -> Iterator[list[dict[str, Any]]]:
    """Every event any test writes must match docs/events.md (and ECS): code and
    document cannot drift apart without a test failing. Each test's pipeline (the
    ``pipeline`` fixture) hands its events here."""
    from tests.event_schema import validate

    seen: list[dict[str, Any]] = []
    yield seen
    wrong = [(event.get("event", {}).get("action"), p) for event in seen for p in validate(event)]
    assert not wrong, f"events departing from docs/events.md: {wrong[:10]}"


@pytest.fixture
def pipeline(_events_match_the_schema: list[dict[str, Any]]) -> Pipeline:
    """This test's own event pipeline (JSON lines on stderr until routed elsewhere);
    every event it writes is checked against docs/events.md."""
    events = Pipeline()
    events.taps.append(_events_match_the_schema.append)
    return events
