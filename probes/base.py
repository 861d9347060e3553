"""What every probe shares: its signature, the context it does I/O through, its errors.

A probe performs one attempt against one node and says precisely how it failed. It does
not retry, fail over, enforce deadlines or log: the runner does all of that, the same way
for every kind.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from engine.clock import Clock, SystemClock

if TYPE_CHECKING:
    import aiohttp

    from config.models import TlsOptions


class ErrorType(StrEnum):
    """Stable failure classes: they appear as ``error.type`` in events and JSON output."""

    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    CONNECTION = "connection"  # unreachable network or host, other socket errors
    DNS = "dns"
    TLS = "tls"  # handshake failed, certificate untrusted or for another name
    TLS_EXPIRED = "tls_expired"  # the peer's certificate is past its notAfter
    CERT_EXPIRING = "cert_expiring"  # valid, but inside the check's crit_days
    HTTP_STATUS = "http_status"
    ASSERTION = "assertion"  # answered, but not what the check expects
    LATENCY = "latency"  # answered correctly, slower than the check allows
    PROTOCOL = "protocol"  # the peer does not speak the protocol (garbage, bad framing)
    BODY_TOO_LARGE = "body_too_large"
    INTERNAL = "internal"  # a bug in the probe; reported, never raised past the runner


# Failures that another attempt a few hundred milliseconds later cannot change.
_FINAL = frozenset(
    {
        ErrorType.TLS,
        ErrorType.TLS_EXPIRED,
        ErrorType.CERT_EXPIRING,
        ErrorType.BODY_TOO_LARGE,
        ErrorType.INTERNAL,
    }
)


@dataclass(frozen=True, slots=True)
class ProbeError:
    type: ErrorType
    message: str

    @property
    def retryable(self) -> bool:
        return self.type not in _FINAL


class ProbeFailure(Exception):
    """Raised by a probe for a classified failure; carries what was measured before it."""

    def __init__(
        self,
        type: ErrorType,
        message: str,
        *,
        phases: Mapping[str, float] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error = ProbeError(type, message)
        self.phases = dict(phases or {})
        self.details = dict(details or {})


@dataclass(frozen=True, slots=True)
class Observation:
    """What a successful attempt saw.

    ``phases`` are seconds spent in each protocol phase (``resolve``, ``connect``, ``tls``,
    ``processing``, ``transfer``); ``details`` are facts worth reporting (HTTP status,
    certificate expiry); ``warnings`` are things that work today but need attention.
    """

    phases: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


class ProbeContext:
    """The I/O a probe may use: the clock, the shared HTTP session, TLS contexts.

    Tests swap the clock; sockets stay real. Built once per process (or per daemon
    config generation) and shared by every attempt.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[TlsOptions | None, ssl.SSLContext] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            from probes.http import new_session  # the session exists for HTTP probes

            self._session = new_session()
        return self._session

    def ssl_context(self, options: TlsOptions | None) -> ssl.SSLContext:
        """One context per distinct ``tls:`` block, built on first use (loading CAs is slow)."""
        cached = self._ssl.get(options)
        if cached is None:
            cached = self._ssl[options] = build_ssl_context(options)
        return cached

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ProbeContext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def build_ssl_context(options: TlsOptions | None) -> ssl.SSLContext:
    """A client context: verification on unless the check says ``verify: false``."""
    try:
        context = ssl.create_default_context(
            cafile=str(options.ca_file) if options and options.ca_file else None
        )
        if options and options.cert_file:
            context.load_cert_chain(
                str(options.cert_file), str(options.key_file) if options.key_file else None
            )
    except (ssl.SSLError, OSError) as exc:
        raise ProbeFailure(ErrorType.TLS, f"cannot load the check's TLS files: {exc}") from None
    if options and not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


Probe = Callable[[Any, Any, ProbeContext], Awaitable[Observation]]
"""``async def probe(check, node, ctx) -> Observation``; raises ProbeFailure on failure."""
