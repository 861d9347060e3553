"""Shared fixtures: a real probe context, a fake clock, structlog reset between tests."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog

from engine.clock import FakeClock
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
def _events_match_the_schema() -> Iterator[None]:
    """Every event any test writes must match docs/events.md (and ECS): code and
    document cannot drift apart without a test failing."""
    from events import log
    from tests.event_schema import validate

    seen: list[dict[str, Any]] = []
    log.TAPS.append(seen.append)
    try:
        yield
    finally:
        log.TAPS.remove(seen.append)
    wrong = [(event.get("event", {}).get("action"), p) for event in seen for p in validate(event)]
    assert not wrong, f"events departing from docs/events.md: {wrong[:10]}"
