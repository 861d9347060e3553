"""``kind: http``: one request to one node, judged against the check's ``expect:``."""

from __future__ import annotations

import ssl
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from config.models import HttpCheckBase, HttpExpect, HttpNode
from probes import via_proxy
from probes.base import ErrorType, Observation, ProbeContext, ProbeFailure, attempt_marks
from probes.http_common import client_failure, json_document, lookup, read_body, short
from probes.resolve import AiohttpResolver, Resolver
from probes.signing import signature_headers
from probes.tls_common import inspect_certificate


async def probe(check: HttpCheckBase, node: HttpNode, ctx: ProbeContext) -> Observation:
    """One request; also kind proxy's, which is an http check whose proxy is the point."""
    marks = attempt_marks()
    marks["start"] = ctx.clock.monotonic()
    https = node.url.startswith("https:")
    # A redirect may lead from http to https: verify there too, with the check's CA.
    tls = ctx.ssl_context(check.tls) if https or check.follow_redirects else False
    proxy = check.proxy
    seen: dict[str, Any] = {"clock": ctx.clock, "marks": marks}
    token = _connection_facts.set(seen)
    try:
        async with ctx.session.request(
            check.method,
            node.url,
            headers=_headers(check, node, ctx),
            data=check.body.encode() if check.body is not None else None,
            ssl=tls,
            server_hostname=check.tls.server_name if https and check.tls else None,
            allow_redirects=check.follow_redirects,
            trace_request_ctx={"clock": ctx.clock, "marks": marks},
            **(via_proxy.request_arguments(proxy) if proxy else {}),
        ) as response:
            marks["first_byte"] = ctx.clock.monotonic()
            if proxy is not None and response.status == 407:  # only a proxy answers 407
                raise via_proxy.connect_refused(
                    407, response.reason or "", proxy, _authority(node.url)
                )
            peercert = seen.get("peercert")
            details, warnings = inspect_certificate(peercert, check.tls, ctx.clock.now())
            body = await read_body(response, check.max_body_bytes)
            marks["end"] = ctx.clock.monotonic()
            status, version = response.status, response.version
            reason = response.reason or ""
    except ProbeFailure:
        raise
    except (aiohttp.ClientError, ssl.SSLError) as exc:
        if proxy is not None and via_proxy.in_proxy_phase(marks):
            raise via_proxy.proxy_failure(exc, proxy, _authority(node.url)) from None
        raise client_failure(exc) from None
    finally:
        _connection_facts.reset(token)

    details |= {"status_code": status, "body_bytes": len(body)}
    if version is not None:
        details["http_version"] = f"{version.major}.{version.minor}"
    answered = ""
    if proxy is not None:
        details["proxy"] = proxy.address
        if not https:
            # An http:// answer through a proxy may be the proxy's own error page (one
            # that cannot reach the target): the message shows both rather than guessing.
            answered = (f" ({reason})" if reason else "") + f" through proxy {proxy.address}"
    _judge(check.expect, status, body, marks["end"] - marks["start"], details, answered)
    return Observation(details=details, warnings=warnings)


def _authority(url: str) -> str:
    """``host:port`` of a node URL, as a proxy's CONNECT names it (no credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _headers(check: HttpCheckBase, node: HttpNode, ctx: ProbeContext) -> dict[str, str]:
    headers = {name: value.get_secret_value() for name, value in check.headers.items()}
    if not any(name.lower() == "accept-encoding" for name in headers):
        # The body cap counts bytes after decompression (see read_body); asking for an
        # uncompressed answer keeps the two the same for well-behaved servers.
        headers["Accept-Encoding"] = "identity"
    if check.sign is not None:
        # Per attempt, never cached: a server rejects a replayed timestamp or nonce.
        headers |= signature_headers(
            check.sign,
            method=check.method,
            url=node.url,
            body=check.body,
            now=ctx.clock.now(),
            nonce=ctx.nonce(),
        )
    return headers


def _judge(
    expect: HttpExpect,
    status: int,
    body: bytes,
    elapsed: float,
    details: dict[str, Any],
    answered: str = "",
) -> None:
    """``answered`` follows the status in a status failure (its reason, and the proxy)."""

    def fail(kind: ErrorType, message: str) -> ProbeFailure:
        return ProbeFailure(kind, message, details=details)

    if expect.status and status not in expect.status:
        wanted = ", ".join(map(str, expect.status))
        raise fail(ErrorType.HTTP_STATUS, f"status {status}{answered}, expected {wanted}")
    if not expect.status and not 200 <= status < 300:
        raise fail(ErrorType.HTTP_STATUS, f"status {status}{answered}, expected 2xx")
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
        document = json_document(text, details)
        for path, wanted_value in expect.json_fields.items():
            found, value = lookup(document, path)
            if not found:
                raise fail(ErrorType.ASSERTION, f"JSON field {path} is missing")
            if value != wanted_value:
                raise fail(
                    ErrorType.ASSERTION,
                    f"JSON field {path} is {short(value)}, expected {short(wanted_value)}",
                )


# --- the session: fresh connections, phase timing, the peer's certificate -----------

# Where the connector leaves facts about the connection it opened for the current
# attempt, and finds the attempt's clock and marks. aiohttp hands a short response back
# with its connection already released, so the certificate must be read when the
# connection is made, not from the response; and its tracing hooks do not see a proxy's
# steps. The connector runs in the probing task, so a context variable reaches the
# right probe.
_connection_facts: ContextVar[dict[str, Any] | None] = ContextVar(
    "hotline_probe_connection_facts", default=None
)


def _stamp(*names: str) -> None:
    facts = _connection_facts.get()
    if facts is not None:
        now = facts["clock"].monotonic()
        for name in names:
            facts["marks"][name] = now


_PROXY_MARKS = ("proxy_connected", "tunnel_start", "tunnel_end", "tls_start", "tls_end")


class _Connector(aiohttp.TCPConnector):
    # The overrides below are aiohttp's internal steps (pinned < 3.14 in pyproject);
    # each only marks a boundary and calls the original.

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109 - aiohttp's signature
        facts = _connection_facts.get()
        if facts is not None and req.proxy is not None:
            facts["tunnel"] = req.is_ssl()  # https: a CONNECT follows the proxy's connect
            for name in _PROXY_MARKS:  # a redirect's connection starts the proxy anew
                facts["marks"].pop(name, None)
            _stamp("proxy_start")
        protocol = await super()._create_connection(req, traces, timeout)
        transport = getattr(protocol, "transport", None)
        if facts is not None and transport is not None:
            facts["peercert"] = transport.get_extra_info("peercert")
        return protocol

    async def _create_direct_connection(
        self,
        req: Any,
        traces: Any,
        timeout: Any,  # noqa: ASYNC109 - aiohttp's signature
        *,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
    ) -> Any:
        connected = await super()._create_direct_connection(
            req, traces, timeout, client_error=client_error
        )
        # aiohttp connects to a proxy through this same step, naming the error to raise.
        if client_error is aiohttp.ClientProxyConnectionError:
            facts = _connection_facts.get()
            tunnel = facts is not None and facts.get("tunnel")
            if tunnel:
                _stamp("proxy_connected", "tunnel_start")
            else:
                _stamp("proxy_connected")
        return connected

    async def _start_tls_connection(
        self,
        underlying_transport: Any,
        req: Any,
        timeout: Any,  # noqa: ASYNC109 - aiohttp's signature
        client_error: type[Exception] = aiohttp.ClientConnectorError,
    ) -> Any:
        # Reached only once the proxy has answered CONNECT with 200: the tunnel stands,
        # and what follows (the TLS handshake with the target) is the target's.
        _stamp("tunnel_end", "tls_start")
        result = await super()._start_tls_connection(
            underlying_transport, req, timeout, client_error
        )
        _stamp("tls_end")
        return result


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
        # Decompression happens in http_common.read_body, under the body cap.
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
