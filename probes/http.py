"""``kind: http``: one request to one node, judged against the check's ``expect:``."""

from __future__ import annotations

import errno
import json
import ssl
import zlib
from contextvars import ContextVar
from typing import Any

import aiohttp

from config.models import HttpCheck, HttpExpect, HttpNode
from probes.base import ErrorType, Observation, ProbeContext, ProbeFailure, attempt_marks
from probes.resolve import AiohttpResolver, Resolver
from probes.tls_common import inspect_certificate, ssl_failure

_CHUNK = 64 * 1024


async def probe(check: HttpCheck, node: HttpNode, ctx: ProbeContext) -> Observation:
    marks = attempt_marks()
    marks["start"] = ctx.clock.monotonic()
    https = node.url.startswith("https:")
    # A redirect may lead from http to https: verify there too, with the check's CA.
    tls = ctx.ssl_context(check.tls) if https or check.follow_redirects else False
    seen: dict[str, Any] = {}
    token = _connection_facts.set(seen)
    try:
        async with ctx.session.request(
            check.method,
            node.url,
            headers=_headers(check),
            data=check.body.encode() if check.body is not None else None,
            ssl=tls,
            server_hostname=check.tls.server_name if https and check.tls else None,
            allow_redirects=check.follow_redirects,
            trace_request_ctx={"clock": ctx.clock, "marks": marks},
        ) as response:
            marks["first_byte"] = ctx.clock.monotonic()
            peercert = seen.get("peercert")
            details, warnings = inspect_certificate(peercert, check.tls, ctx.clock.now())
            body = await _read_body(response, check.max_body_bytes)
            marks["end"] = ctx.clock.monotonic()
            status, version = response.status, response.version
    except ProbeFailure:
        raise
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ssl_failure(exc.certificate_error) from None
    except aiohttp.ClientConnectorSSLError as exc:
        raise ssl_failure(exc.os_error if isinstance(exc.os_error, ssl.SSLError) else exc) from None
    except ssl.SSLError as exc:
        raise ssl_failure(exc) from None
    except aiohttp.ClientError as exc:
        raise _classify(exc) from None
    finally:
        _connection_facts.reset(token)

    details |= {"status_code": status, "body_bytes": len(body)}
    if version is not None:
        details["http_version"] = f"{version.major}.{version.minor}"
    _judge(check.expect, status, body, marks["end"] - marks["start"], details)
    return Observation(details=details, warnings=warnings)


def _headers(check: HttpCheck) -> dict[str, str]:
    headers = {name: value.get_secret_value() for name, value in check.headers.items()}
    if not any(name.lower() == "accept-encoding" for name in headers):
        # The body cap counts bytes after decompression (see _read_body); asking for an
        # uncompressed answer keeps the two the same for well-behaved servers.
        headers["Accept-Encoding"] = "identity"
    return headers


async def _read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of body, decompressed; never more in memory than that.

    The session does not decompress (a 30 KB gzip bomb inflates to gigabytes), so gzip
    and deflate are inflated here, chunk by chunk, with the cap applied to the output.
    """
    declared = response.content_length
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if declared is not None and declared > limit:
        raise ProbeFailure(
            ErrorType.BODY_TOO_LARGE,
            f"body of {declared} bytes announced, the check reads at most {limit}",
        )
    inflater = zlib.decompressobj(wbits=47) if encoding in _COMPRESSED else None
    if inflater is None and declared is not None:
        return await response.read()  # aiohttp stops at Content-Length, already under the cap
    chunks: list[bytes] = []
    size = 0
    async for raw in response.content.iter_chunked(_CHUNK):
        try:
            chunk = inflater.decompress(raw, limit + 1 - size) if inflater else raw
        except zlib.error as exc:
            raise ProbeFailure(ErrorType.PROTOCOL, f"{encoding} body is corrupt: {exc}") from None
        size += len(chunk)
        if size > limit or (inflater is not None and inflater.unconsumed_tail):
            raise _too_large(limit)
        chunks.append(chunk)
    if inflater is not None:
        chunks.append(tail := inflater.flush())
        if size + len(tail) > limit:
            raise _too_large(limit)
    return b"".join(chunks)


def _too_large(limit: int) -> ProbeFailure:
    return ProbeFailure(
        ErrorType.BODY_TOO_LARGE, f"body exceeds {limit} bytes, the most the check reads"
    )


_COMPRESSED = frozenset({"gzip", "x-gzip", "deflate"})


def _judge(
    expect: HttpExpect, status: int, body: bytes, elapsed: float, details: dict[str, Any]
) -> None:
    def fail(kind: ErrorType, message: str) -> ProbeFailure:
        return ProbeFailure(kind, message, details=details)

    if expect.status and status not in expect.status:
        wanted = ", ".join(map(str, expect.status))
        raise fail(ErrorType.HTTP_STATUS, f"status {status}, expected {wanted}")
    if not expect.status and not 200 <= status < 300:
        raise fail(ErrorType.HTTP_STATUS, f"status {status}, expected 2xx")
    if expect.max_latency is not None and elapsed > expect.max_latency:
        raise fail(
            ErrorType.LATENCY,
            f"answered in {elapsed * 1000:.0f} ms, limit {expect.max_latency * 1000:.0f} ms",
        )
    text = body.decode("utf-8", errors="replace")
    if expect.body_contains is not None and expect.body_contains not in text:
        raise fail(ErrorType.ASSERTION, f"body does not contain {expect.body_contains!r}")
    if expect.body_regex is not None and not expect.body_regex.search(text):
        raise fail(ErrorType.ASSERTION, f"body does not match /{expect.body_regex.pattern}/")
    if expect.json_fields:
        try:
            document = json.loads(text)
        except ValueError:
            raise fail(ErrorType.ASSERTION, "body is not JSON") from None
        for path, wanted_value in expect.json_fields.items():
            found, value = _lookup(document, path)
            if not found:
                raise fail(ErrorType.ASSERTION, f"JSON field {path} is missing")
            if value != wanted_value:
                raise fail(
                    ErrorType.ASSERTION,
                    f"JSON field {path} is {_short(value)}, expected {_short(wanted_value)}",
                )


def _lookup(document: Any, path: str) -> tuple[bool, Any]:
    """Follow ``a.b.0.c`` through objects and arrays."""
    node = document
    for key in path.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False, None
    return True, node


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


_RESET = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}


def _classify(exc: aiohttp.ClientError) -> ProbeFailure:
    failure = ProbeFailure

    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return failure(ErrorType.DNS, f"cannot resolve {exc.host}: {exc.os_error.strerror}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        code = exc.os_error.errno
        where = f"{exc.host}:{exc.port}"
        if code == errno.ECONNREFUSED:
            return failure(ErrorType.CONNECTION_REFUSED, f"connection refused by {where}")
        if code in _RESET:
            return failure(ErrorType.CONNECTION_RESET, f"connection reset by {where}")
        if code in _UNREACHABLE:
            return failure(ErrorType.CONNECTION, f"{where} unreachable: {exc.os_error.strerror}")
        if code == errno.ETIMEDOUT:
            return failure(ErrorType.TIMEOUT, f"connect to {where} timed out")
        return failure(ErrorType.CONNECTION, f"cannot connect to {where}: {exc.os_error}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return failure(ErrorType.CONNECTION_RESET, "server closed the connection without answering")
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno in _RESET:
        return failure(ErrorType.CONNECTION_RESET, "connection reset during the exchange")
    if isinstance(exc, ConnectionResetError):
        return failure(ErrorType.CONNECTION_RESET, "connection reset during the exchange")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return failure(ErrorType.CONNECTION_RESET, f"response body cut short: {_cause(exc)}")
    if isinstance(exc, aiohttp.TooManyRedirects):
        return failure(ErrorType.PROTOCOL, "too many redirects")
    if isinstance(exc, aiohttp.ClientResponseError):
        return failure(ErrorType.PROTOCOL, f"not a valid HTTP response: {exc.message}")
    return failure(ErrorType.CONNECTION, f"{type(exc).__name__}: {exc}")


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return type(cause).__name__ if cause else str(exc)


# --- the session: fresh connections, phase timing, the peer's certificate -----------

# Where the connector leaves facts about the connection it opened for the current
# attempt. aiohttp hands a short response back with its connection already released,
# so the certificate must be read when the connection is made, not from the response.
# The connector runs in the probing task, so a context variable reaches the right probe.
_connection_facts: ContextVar[dict[str, Any] | None] = ContextVar(
    "hotline_probe_connection_facts", default=None
)


class _Connector(aiohttp.TCPConnector):
    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109 - aiohttp's signature
        protocol = await super()._create_connection(req, traces, timeout)
        facts = _connection_facts.get()
        transport = getattr(protocol, "transport", None)
        if facts is not None and transport is not None:
            facts["peercert"] = transport.get_extra_info("peercert")
        return protocol


def new_session(resolver: Resolver) -> aiohttp.ClientSession:
    connector = _Connector(
        resolver=AiohttpResolver(resolver),
        # A monitor must see the connect and the handshake every time; a pooled
        # connection would hide a node whose listener died an hour ago.
        force_close=True,
        # Name resolution is part of what is checked; a cached answer would hide a
        # broken resolver. The caller's concurrency bound replaces the pool limit.
        use_dns_cache=False,
        limit=0,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # The runner owns the deadline of each attempt (asyncio.timeout), so the
        # session's own timeouts are switched off explicitly rather than left to defaults.
        timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None),
        cookie_jar=aiohttp.DummyCookieJar(),  # no state leaks from one check into another
        trust_env=False,  # proxies are configured per check, never picked up by surprise
        trace_configs=[_trace_config()],
        # Decompression happens in _read_body, under the body cap.
        auto_decompress=False,
    )


# --- phase timing through aiohttp's tracing hooks -----------------------------------


def _mark(name: str) -> Any:
    async def hook(session: aiohttp.ClientSession, trace_ctx: Any, params: object) -> None:
        request_ctx = trace_ctx.trace_request_ctx
        if request_ctx is not None:
            request_ctx["marks"][name] = request_ctx["clock"].monotonic()

    return hook


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_dns_resolvehost_start.append(_mark("dns_start"))
    config.on_dns_resolvehost_end.append(_mark("dns_end"))
    config.on_connection_create_start.append(_mark("connect_start"))
    config.on_connection_create_end.append(_mark("connect_end"))
    config.on_request_headers_sent.append(_mark("sent"))
    return config
