"""What every probe shares: its signature, the context it does I/O through, what it observed.

Its failure classes live on the ground floor (core/errors.py): every layer names them.

A probe performs one attempt against one node and says precisely how it failed. It does
not retry, fail over, enforce deadlines or log: the runner does all of that, the same way
for every kind.
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from config.tls import TlsFileError, build_ssl_context
from core.clock import Clock, SystemClock
from core.errors import ErrorType, ProbeFailure
from core.heartbeats import HeartbeatStore
from probes.resolve import Resolver

if TYPE_CHECKING:
    from config.checks import TlsOptions


@dataclass(frozen=True, slots=True)
class Observation:
    """What a successful attempt saw.

    ``details`` are facts worth reporting (HTTP status, certificate expiry); ``warnings``
    are things that work today but need attention. ``phases`` (seconds per protocol
    phase) is normally left empty: the runner measures them from the attempt's marks.
    """

    phases: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


# --- phase marks ---------------------------------------------------------------------


class Marks(dict[str, float]):
    """One attempt's phase boundaries (mark name -> monotonic seconds).

    ``waiting_for`` is for a probe that speaks in steps the user wrote (a tcp dialogue):
    a timeout then names the step ("dialogue[3] (a line matching /^250 /)"), which says
    more than the span's generic "the rest of the answer"."""

    waiting_for: str | None = None


# The boundaries of the running attempt's phases: the probe marks them, the runner reads
# them, also when the attempt is cut by its timeout. That is how a hang is placed: in
# the name lookup it is a dns failure; elsewhere "during connect" says more than
# "no answer". One dict per attempt, reached through a context variable because aiohttp's
# tracing hooks and the probe share the attempt's task, not its arguments.
_attempt_marks: ContextVar[Marks | None] = ContextVar("hotline_probe_attempt_marks", default=None)

# (phase, start mark, end mark, what it waits for): blackbox_exporter's phase names.
SPANS = (
    ("resolve", "dns_start", "dns_end", "the name lookup"),
    ("connect", "connect_start", "connect_end", "the connection"),
    # Through a forward proxy, inside "connect": reaching the proxy, then (https) the
    # tunnel it opens. A hang in either is the proxy's, not the target's.
    ("proxy_connect", "proxy_start", "proxy_connected", "the connection to the proxy"),
    ("proxy_tunnel", "tunnel_start", "tunnel_end", "the proxy's answer to CONNECT"),
    ("tls", "tls_start", "tls_end", "the TLS handshake"),
    ("processing", "sent", "first_byte", "the first byte of the answer"),
    ("transfer", "first_byte", "end", "the rest of the answer"),
    ("request", "request_start", "request_end", "the DNS answer"),  # kind: dns
)


def attempt_marks() -> Marks:
    """The current attempt's marks (fresh ones outside an attempt, as in unit tests)."""
    marks = _attempt_marks.get()
    return marks if marks is not None else Marks()


@contextlib.contextmanager
def recording(marks: Marks) -> Iterator[None]:
    token = _attempt_marks.set(marks)
    try:
        yield
    finally:
        _attempt_marks.reset(token)


def phases_from(marks: Mapping[str, float]) -> dict[str, float]:
    return {
        name: marks[end] - marks[start]
        for name, start, end, _ in SPANS
        if start in marks and end in marks
    }


def unfinished(marks: Mapping[str, float]) -> tuple[str, str] | None:
    """The phase that was running when the attempt ended: (name, what it waited for),
    in the probe's own words when it gave them (``Marks.waiting_for``)."""
    told = marks.waiting_for if isinstance(marks, Marks) else None
    for name, start, end, waiting_for in reversed(SPANS):
        if start in marks and end not in marks:
            return name, told or waiting_for
    return None


PROXY_PHASES = frozenset({"proxy_connect", "proxy_tunnel"})
"""Phases whose failure, hang included, is the forward proxy's (ErrorType.PROXY)."""

RESOLV_CONF = "/etc/resolv.conf"


def new_nonce() -> str:
    """128 random bits as hex: a signed request's nonce (probes/signing.py)."""
    return secrets.token_hex(16)


class Resource(Protocol):
    """What a kind keeps across attempts for as long as its context lives: a client
    session, requests made once and sent again (probes/http/'s two transports).

    The context makes it on first use (``ProbeContext.resource``), lets it drop what it
    built from the config on a reload, and closes it with itself.
    """

    def forget(self) -> None:
        """A reload: let go of what was built from the old config's objects."""

    async def close(self) -> None:
        """The context is closing: release sockets and sessions."""


R = TypeVar("R", bound=Resource)


class ProbeContext:
    """The I/O a probe may use: the clock, TLS contexts, heartbeats, the system
    resolver, and what each kind keeps for itself (``resource``: http's sessions).

    Tests swap the clock and the nonce source; sockets stay real. Built once per process
    (or per daemon config generation) and shared by every attempt.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        nonce: Callable[[], str] | None = None,
        heartbeats: HeartbeatStore | None = None,
        resolv_conf: str = RESOLV_CONF,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.nonce: Callable[[], str] = nonce or new_nonce
        # Where push freshness checks find their heartbeats; by default none are known.
        self.heartbeats = heartbeats or HeartbeatStore(None, clock=self.clock)
        self.resolv_conf = resolv_conf
        """Where ``kind: dns`` finds the system resolver's servers (tests point it at
        loopback: the real file may name a server off the host)."""
        self._ssl: dict[TlsOptions | None, ssl.SSLContext] = {}
        self._resources: dict[Callable[[ProbeContext], Resource], Resource] = {}
        self.resolver = Resolver()

    def resource(self, make: Callable[[ProbeContext], R]) -> R:
        """This context's one ``make(ctx)``, made on first use and kept until close.

        ``make`` (usually the resource's class) is also its key: a kind reaches its own
        state through it, and the context needs to know nothing of any kind."""
        found = self._resources.get(make)
        if found is None:
            found = self._resources[make] = make(self)
        return cast(R, found)

    def ssl_context(self, options: TlsOptions | None) -> ssl.SSLContext:
        """One context per distinct ``tls:`` block, built on first use (loading CAs is slow)."""
        cached = self._ssl.get(options)
        if cached is None:
            try:
                cached = self._ssl[options] = build_ssl_context(options)
            except TlsFileError as exc:  # checked at load; changed on disk since
                raise ProbeFailure(
                    ErrorType.TLS, f"cannot load the check's TLS files: {exc}"
                ) from None
        return cached

    def forget(self) -> None:
        """Drop what was built from the config: TLS contexts are built anew on next use
        (a reload must pick up a rotated CA or client certificate even when the
        ``tls:`` block reads the same), and each kind's resources let go of what they
        built from the old config's objects (http's prepared requests)."""
        self._ssl.clear()
        for resource in self._resources.values():
            resource.forget()

    async def close(self) -> None:
        resources, self._resources = self._resources, {}
        async with contextlib.AsyncExitStack() as closing:  # each one, whatever the others do
            for resource in resources.values():
                closing.push_async_callback(resource.close)

    async def __aenter__(self) -> ProbeContext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


Probe = Callable[[Any, Any, ProbeContext], Awaitable[Observation]]
"""``async def probe(check, node, ctx) -> Observation``; raises ProbeFailure on failure."""
