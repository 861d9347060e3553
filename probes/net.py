"""Opening a TCP (and optionally TLS) stream with each phase timed and each failure named.

Shared by the kinds that speak over a raw stream (tcp, tls); http goes through aiohttp.
Every kind resolves names through ``resolve`` and names a socket error through
``os_failure``, so a refused port or a dead name reads the same whatever the kind.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.errors import ErrorType, ProbeFailure
from probes.base import ProbeContext, attempt_marks
from probes.tls_common import ssl_failure

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
T = TypeVar("T")

RESET = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
"""The peer (or a box on the way) dropped an established connection."""

_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL})

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
"""This process (EMFILE) or the whole host (ENFILE) has no file descriptor left for a
socket: the probe host's fault, whatever was being connected to."""

# {where} is what was connected to ("db-1.hotline.invalid:3306", "the proxy
# zzd-proxy.hotline.invalid:3128"), {during} the phase when it was not the connect
# (" during the exchange"), {reason} the kernel's words.
_REFUSED = (ErrorType.CONNECTION_REFUSED, "connection refused by {where}{during}")
_RESET = (ErrorType.CONNECTION_RESET, "connection reset by {where}{during}")
_UNREACHED = (ErrorType.CONNECTION, "{where} unreachable{during}: {reason}")
_TIMED_OUT = (ErrorType.TIMEOUT, "connection to {where} timed out{during}")
_FAILURES: dict[int, tuple[ErrorType, str]] = {
    errno.ECONNREFUSED: _REFUSED,
    errno.ETIMEDOUT: _TIMED_OUT,
    **dict.fromkeys(RESET, _RESET),
    **dict.fromkeys(_UNREACHABLE, _UNREACHED),
}
_OTHER = (ErrorType.CONNECTION, "connection to {where} failed{during}: {reason}")


def os_failure(
    exc: OSError, where: str, *, during: str = "", kind: ErrorType | None = None
) -> ProbeFailure:
    """What a socket error means, for every kind: refused, reset, unreachable, timed out.

    ``during`` names the phase when it was not the connect ("during the TLS handshake");
    ``kind`` overrides the error type when the failing peer decides it (a forward
    proxy's failures are ``proxy`` whatever the errno). Running out of descriptors is
    ``local_resources`` whatever ``kind`` says: neither the peer nor the proxy caused it."""
    if exc.errno in OUT_OF_DESCRIPTORS:
        return out_of_descriptors(exc, where)
    default, template = _FAILURES.get(exc.errno or 0, _OTHER)
    message = template.format(
        where=where, during=f" {during}" if during else "", reason=exc.strerror or exc
    )
    return ProbeFailure(kind or default, message)


def out_of_descriptors(exc: OSError, where: str) -> ProbeFailure:
    """EMFILE/ENFILE while probing ``where``: said as this host's shortage, not the link's."""
    message = f"out of file descriptors on this probe host, {where} not probed: {exc.strerror}"
    return ProbeFailure(ErrorType.LOCAL_RESOURCES, message)


async def resolve(
    host: str, port: int, ctx: ProbeContext, *, type: int = socket.SOCK_STREAM, what: str = ""
) -> list[tuple[int, str]]:
    """(family, address) for ``host``: an IP address as it is, a name through the
    context's resolver, with the ``resolve`` phase marked. A lookup that fails is a
    ``dns`` failure naming ``what`` was looked up (by default the host)."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, str(literal))]
    marks = attempt_marks()
    marks["dns_start"] = ctx.clock.monotonic()
    try:
        infos = await ctx.resolver.getaddrinfo(host, port, type=type)
    except socket.gaierror as exc:
        message = f"cannot resolve {what or host}: {exc.strerror}"
        raise ProbeFailure(ErrorType.DNS, message) from None
    marks["dns_end"] = ctx.clock.monotonic()
    return [(family, str(sockaddr[0])) for family, _, _, _, sockaddr in infos]


async def open_stream(
    host: str,
    port: int,
    ctx: ProbeContext,
    *,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> Stream:
    """Resolve, connect, then shake hands, marking each phase's boundaries."""
    addresses = await resolve(host, port, ctx)
    where = f"{host}:{port}"

    def connect(family: int, address: str) -> Awaitable[Stream]:
        return asyncio.open_connection(address, port, family=family)

    reader, writer = await connect_first(addresses, connect, where, ctx)
    if tls is not None:
        await start_tls(writer, tls, server_name or host, where, ctx)
    return reader, writer


async def connect_first(
    addresses: list[tuple[int, str]],
    connect: Callable[[int, str], Awaitable[T]],
    where: str,
    ctx: ProbeContext,
) -> T:
    """``connect`` to each address in turn until one answers (as browsers do), with
    the connect phase marked; the last refusal, named, when none does."""
    marks = attempt_marks()
    marks["connect_start"] = ctx.clock.monotonic()
    last: OSError | None = None
    for family, address in addresses:
        try:
            connected = await connect(family, address)
            break
        except OSError as exc:
            last = exc
    else:
        assert last is not None
        raise os_failure(last, where) from None
    marks["connect_end"] = ctx.clock.monotonic()
    return connected


async def start_tls(
    writer: asyncio.StreamWriter,
    tls: ssl.SSLContext,
    server_name: str,
    where: str,
    ctx: ProbeContext,
) -> None:
    """Shake hands on an open stream, at once or after a protocol asked for TLS
    (PostgreSQL's SSLRequest); the connection is dropped if the handshake fails."""
    marks = attempt_marks()
    marks["tls_start"] = ctx.clock.monotonic()
    try:
        await writer.start_tls(tls, server_hostname=server_name)
    except ssl.SSLError as exc:
        writer.transport.abort()
        raise ssl_failure(exc) from None
    except OSError as exc:
        writer.transport.abort()
        raise os_failure(exc, where, during="during the TLS handshake") from None
    marks["tls_end"] = ctx.clock.monotonic()


def close(writer: asyncio.StreamWriter) -> None:
    """Drop the connection at once: the attempt is over and a TLS goodbye could hang."""
    writer.transport.abort()


def printable(data: bytes, limit: int = 80) -> str:
    """Peer bytes made safe for a log line: control characters escaped, length capped."""
    text = data[:limit].decode("utf-8", errors="backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text + ("..." if len(data) > limit else "")
