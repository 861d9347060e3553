"""Opening a TCP (and optionally TLS) stream with each phase timed and each failure named.

Shared by the kinds that speak over a raw stream (tcp, tls); http goes through aiohttp.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl

from probes.base import ErrorType, ProbeContext, ProbeFailure, attempt_marks
from probes.tls_common import ssl_failure

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]

_FAILURES: dict[int, tuple[ErrorType, str]] = {
    errno.ECONNREFUSED: (ErrorType.CONNECTION_REFUSED, "connection refused by"),
    errno.ECONNRESET: (ErrorType.CONNECTION_RESET, "connection reset by"),
    errno.EHOSTUNREACH: (ErrorType.CONNECTION, "host unreachable:"),
    errno.ENETUNREACH: (ErrorType.CONNECTION, "network unreachable for"),
    errno.ETIMEDOUT: (ErrorType.TIMEOUT, "connect timed out to"),
}


async def open_stream(
    host: str,
    port: int,
    ctx: ProbeContext,
    *,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> Stream:
    """Resolve, connect, then shake hands, marking each phase's boundaries."""
    marks = attempt_marks()
    addresses = await _resolve(host, port, ctx, marks)
    where = f"{host}:{port}"
    marks["connect_start"] = ctx.clock.monotonic()
    last: OSError | None = None
    for family, address in addresses:
        try:
            reader, writer = await asyncio.open_connection(address, port, family=family)
            break
        except OSError as exc:  # try the next address, as a browser would
            last = exc
    else:
        assert last is not None
        raise os_failure(last, where) from None
    marks["connect_end"] = ctx.clock.monotonic()
    if tls is not None:
        await start_tls(writer, tls, server_name or host, where, ctx)
    return reader, writer


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


async def _resolve(
    host: str, port: int, ctx: ProbeContext, marks: dict[str, float]
) -> list[tuple[int, str]]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, host)]
    marks["dns_start"] = ctx.clock.monotonic()
    try:
        infos = await ctx.resolver.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProbeFailure(ErrorType.DNS, f"cannot resolve {host}: {exc.strerror}") from None
    marks["dns_end"] = ctx.clock.monotonic()
    return [(family, str(sockaddr[0])) for family, _, _, _, sockaddr in infos]


def os_failure(exc: OSError, where: str, during: str = "") -> ProbeFailure:
    kind, text = _FAILURES.get(exc.errno or 0, (ErrorType.CONNECTION, "cannot connect to"))
    message = f"{text} {where}" + (f" {during}" if during else "")
    if kind is ErrorType.CONNECTION and exc.errno not in _FAILURES:
        message += f": {exc.strerror or exc}"
    return ProbeFailure(kind, message)


def close(writer: asyncio.StreamWriter) -> None:
    """Drop the connection at once: the attempt is over and a TLS goodbye could hang."""
    writer.transport.abort()


def printable(data: bytes, limit: int = 80) -> str:
    """Peer bytes made safe for a log line: control characters escaped, length capped."""
    text = data[:limit].decode("utf-8", errors="backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text + ("..." if len(data) > limit else "")
