"""Failure classes of a probe attempt: the stable ``error.type`` every output names.

A probe raises ``ProbeFailure`` with one ``ErrorType``; the runner turns it into a
``ProbeError`` on the attempt. Whether another attempt can change the outcome
(``retryable``) and whether a failure counts against the link (``judged``) are
properties of the type, decided here once for every layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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
    UNAVAILABLE = "unavailable"  # speaks it, but says it serves nobody now (too many clients)
    BODY_TOO_LARGE = "body_too_large"
    # The forward proxy itself: unreachable, refused our credentials or the tunnel,
    # garbled or cut its answer to CONNECT, or never gave one.
    PROXY = "proxy"
    STALE = "stale"  # the newest sign of life is older than the check's max_age
    FUTURE_TIMESTAMP = "future_timestamp"  # a sign of life dated ahead of our clock
    NO_DATA = "no_data"  # no sign of life to read: the check cannot judge the link
    DATABASE = "database"  # the database refused the login or the statement
    PACKET_LOSS = "packet_loss"  # more echoes went unanswered than the check allows
    PERMISSION = "permission"  # this host does not let the probe open the socket it needs
    # This host ran out of file descriptors (EMFILE, ENFILE) while probing: the probe
    # host's fault, not the link's.
    LOCAL_RESOURCES = "local_resources"
    INTERNAL = "internal"  # a bug in the probe; reported, never raised past the runner


# Failures that another attempt a few hundred milliseconds later cannot change.
_FINAL = frozenset(
    {
        ErrorType.TLS,
        ErrorType.TLS_EXPIRED,
        ErrorType.CERT_EXPIRING,
        ErrorType.BODY_TOO_LARGE,
        ErrorType.STALE,
        ErrorType.FUTURE_TIMESTAMP,
        ErrorType.NO_DATA,
        ErrorType.DATABASE,
        # Loss is already a rate over `count` echoes; retrying until a round passes
        # would hide a link that drops a third of its packets.
        ErrorType.PACKET_LOSS,
        ErrorType.PERMISSION,
        # Descriptors are not freed by waiting a few hundred milliseconds; another
        # attempt would only take one more.
        ErrorType.LOCAL_RESOURCES,
        ErrorType.INTERNAL,
    }
)

# Failures that say nothing about the link itself: a check whose nodes failed only with
# these is "unknown" (Nagios UNKNOWN, exit 3), neither up nor an outage: a source with
# no sign of life to read, and a probe host out of file descriptors (it could not even
# try the link, so showing an outage would be false). A probe's own crash is not: the link
# may be down behind it, and a bug must never make an outage read as "unknown", so a
# run that crashed is down (``probe`` still exits 3 when every error was a crash:
# engine/report.py).
UNJUDGED = frozenset({ErrorType.NO_DATA, ErrorType.LOCAL_RESOURCES})


@dataclass(frozen=True, slots=True)
class ProbeError:
    type: ErrorType
    message: str

    @property
    def retryable(self) -> bool:
        return self.type not in _FINAL

    @property
    def judged(self) -> bool:
        """Whether the failure counts against the link: all but those in UNJUDGED."""
        return self.type not in UNJUDGED


_MAX_MESSAGE = 300


def one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """Messages from peers and parsers end up in tables and syslog lines: one line, capped."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class ProbeFailure(Exception):
    """Raised by a probe for a classified failure, with facts seen before it (``details``).

    Phase timings need no passing: the runner reads them from the attempt's marks."""

    def __init__(
        self,
        type: ErrorType,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        message = one_line(message)
        super().__init__(message)
        self.error = ProbeError(type, message)
        self.details = dict(details or {})
