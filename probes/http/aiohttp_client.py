"""The aiohttp path of ``kind: http``: TLS, a forward proxy, redirects, HEAD.

Everything plain ``http://`` cannot do goes through one aiohttp session per probe
context, owned by AiohttpTransport (fresh connection every time, phases marked through
aiohttp's tracing hooks and a thin connector subclass, the peer's certificate read as
the connection is made). Plain ``http://`` to the node itself takes probes/http/plain.py
instead.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from http.cookies import BaseCookie, Morsel, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractCookieJar, AbstractResolver, ClearCookiePredicate, ResolveResult
from aiohttp.typedefs import LooseCookies
from yarl import URL

from config.kinds.http import HttpCheckBase, HttpNode
from core.errors import ErrorType, ProbeFailure
from probes import via_proxy
from probes.base import ProbeContext
from probes.http.common import Answer, CappedBody, check_announced
from probes.net import RESET, os_failure
from probes.resolve import Resolver
from probes.tls_common import inspect_certificate, ssl_failure

_CHUNK = 64 * 1024


class AiohttpTransport:
    """aiohttp as a transport of ``kind: http`` (probes/http/transport.py), one per probe
    context, with the session it makes for its first request and closes with it."""

    def __init__(self, ctx: ProbeContext) -> None:
        self._ctx = ctx
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(self._ctx.resolver)
        return self._session

    def forget(self) -> None:
        """Nothing from the config lives in the session: TLS contexts come per request."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def exchange(
        self,
        check: HttpCheckBase,
        node: HttpNode,
        headers: Callable[[], dict[str, str]],
        marks: dict[str, float],
    ) -> Answer:
        return await _exchange(check, node, headers(), self._ctx, self.session, marks)


def session(ctx: ProbeContext) -> aiohttp.ClientSession:
    """The context's aiohttp session, for other requests than kind http's (freshness's
    http source, the demo's callbacks): the same connector, resolver and tracing."""
    return ctx.resource(AiohttpTransport).session


async def _exchange(
    check: HttpCheckBase,
    node: HttpNode,
    headers: dict[str, str],
    ctx: ProbeContext,
    client: aiohttp.ClientSession,
    marks: dict[str, float],
) -> Answer:
    """One request through the session; a failure without an answer is a ProbeFailure."""
    https = node.url.startswith("https:")
    # A redirect may lead from http to https: verify there too, with the check's CA.
    tls = ctx.ssl_context(check.tls) if https or check.follow_redirects else False
    proxy = check.proxy
    seen: dict[str, Any] = {"clock": ctx.clock, "marks": marks}
    token = _connection_facts.set(seen)
    try:
        async with client.request(
            check.method,
            node.url,
            headers=headers,
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
                    407, response.reason or "", proxy, authority(node.url)
                )
            details, warnings = inspect_certificate(
                seen.get("peercert"), check.tls, ctx.clock.now()
            )
            body = await read_body(response, check.max_body_bytes)
            marks["end"] = ctx.clock.monotonic()
            # Around a value, spaces and tabs are not part of it (RFC 9110 5.5), though
            # aiohttp keeps those at its end: the plain client strips them too.
            answer_headers = (
                tuple((k.lower(), v.strip(" \t")) for k, v in response.headers.items())
                if check.expect.judges_headers
                else ()
            )
    except ProbeFailure:
        raise
    except (aiohttp.ClientError, ssl.SSLError) as exc:
        if proxy is not None and via_proxy.in_proxy_phase(marks):
            raise via_proxy.proxy_failure(exc, proxy, authority(node.url)) from None
        raise client_failure(exc) from None
    finally:
        _connection_facts.reset(token)
    version = response.version
    return Answer(
        status=response.status,
        reason=response.reason or "",
        version=f"{version.major}.{version.minor}" if version is not None else None,
        body=body,
        details=details,
        warnings=warnings,
        # The final URL's scheme: aiohttp speaks TLS to every https:// one and to no
        # http:// one, proxy or not (CONNECT carries TLS end to end).
        tls=response.url.scheme == "https",
        headers=answer_headers,
    )


def authority(url: str) -> str:
    """``host:port`` of a node URL, as a proxy's CONNECT names it (no credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of body, decompressed (see CappedBody)."""
    check_announced(response.status, response.content_length, limit)
    body = CappedBody(limit, response.headers.get("Content-Encoding"))
    if not body.inflating and response.content_length is not None:
        return await response.read()  # aiohttp stops at Content-Length, already under the cap
    async for raw in response.content.iter_chunked(_CHUNK):
        body.feed(raw)
    return body.finish()


def client_failure(exc: aiohttp.ClientError | ssl.SSLError) -> ProbeFailure:
    """What a request that failed without an answer means (TLS, DNS, the connection)."""
    # aiohttp's TLS errors are ssl.SSLError subclasses too: unwrapped first.
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ssl_failure(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return ssl_failure(exc.os_error if isinstance(exc.os_error, ssl.SSLError) else exc)
    if isinstance(exc, ssl.SSLError):
        return ssl_failure(exc)
    failure = ProbeFailure
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return failure(ErrorType.DNS, f"cannot resolve {exc.host}: {exc.os_error.strerror}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return os_failure(exc.os_error, f"{exc.host}:{exc.port}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return failure(ErrorType.CONNECTION_RESET, "server closed the connection without answering")
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno in RESET:
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


class _AiohttpResolver(AbstractResolver):
    """aiohttp's resolver interface over ``Resolver``."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self._resolver.getaddrinfo(
            host, port, family=family, flags=socket.AI_ADDRCONFIG
        )
        return [
            ResolveResult(
                hostname=host,
                host=address[0],
                port=address[1],
                family=info_family,
                proto=proto,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for info_family, _, proto, _, address in infos
            if info_family in (socket.AF_INET, socket.AF_INET6)
        ]

    async def close(self) -> None:
        pass


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


class _AttemptCookies(AbstractCookieJar):
    """The session's cookie jar, standing for the jar of the attempt in progress.

    A login redirect sets a cookie the next hop needs, as a browser keeps it; but the
    session serves every check of the context at once, and aiohttp takes a jar per
    session only (a request's ``cookies=`` are not updated by the redirects it follows),
    while a session per attempt costs CPU. So the jar lives in the attempt's facts
    (``_connection_facts``, set by ``_exchange`` in the probing task, where aiohttp's
    redirect loop runs too), made when the attempt's first cookie arrives: nothing
    passes from one attempt, or check, to another. Outside an attempt (the session
    lent by ``session()``), no cookie is kept.
    """

    def __init__(self) -> None:
        super().__init__()

    @staticmethod
    def _jar(create: bool = False) -> aiohttp.CookieJar | None:
        facts = _connection_facts.get()
        if facts is None:
            return None
        jar: aiohttp.CookieJar | None = facts.get("cookies")
        if jar is None and create:
            # unsafe=True: aiohttp refuses cookies from a host named by its IP address
            # by default, while a browser keeps them (host-only, for that address);
            # a node is often named so (an IP literal in the URL; 127.0.0.1 in the tests), and a
            # jar that lives for one attempt shares nothing with other hosts' requests
            # beyond what RFC 6265's matching allows, as a browser's would.
            jar = facts["cookies"] = aiohttp.CookieJar(unsafe=True)
        return jar

    @property
    def quote_cookie(self) -> bool:
        return True

    def clear(self, predicate: ClearCookiePredicate | None = None) -> None:
        jar = self._jar()
        if jar is not None:
            jar.clear(predicate)

    def clear_domain(self, domain: str) -> None:
        jar = self._jar()
        if jar is not None:
            jar.clear_domain(domain)

    def update_cookies(self, cookies: LooseCookies, response_url: URL = URL()) -> None:  # noqa: B008 - aiohttp's signature
        jar = self._jar(create=True)
        if jar is not None:
            jar.update_cookies(cookies, response_url)

    def filter_cookies(self, request_url: URL) -> BaseCookie[str]:
        jar = self._jar()
        return jar.filter_cookies(request_url) if jar is not None else SimpleCookie()

    def __iter__(self) -> Iterator[Morsel[str]]:
        jar = self._jar()
        return iter(jar) if jar is not None else iter(())

    def __len__(self) -> int:
        jar = self._jar()
        return len(jar) if jar is not None else 0


def new_session(resolver: Resolver) -> aiohttp.ClientSession:
    connector = _Connector(
        resolver=_AiohttpResolver(resolver),
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
        cookie_jar=_AttemptCookies(),  # one jar per attempt: nothing leaks between them
        trust_env=False,  # proxies are configured per check, never picked up by surprise
        trace_configs=[_trace_config()],
        # Decompression happens in read_body, under the body cap.
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
