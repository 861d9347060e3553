"""Shared fixtures: a real probe context, a fake clock, structlog reset between tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import structlog

from engine.clock import FakeClock
from probes.base import ProbeContext


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
