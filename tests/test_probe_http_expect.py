"""The assertions on an answer that blackbox_exporter has too (probes/http/expect.py):
``expect.headers`` and ``headers_not``, ``expect.tls``, ``expect.http_version`` and
``expect.body_not_regex``, each through both transports where both can carry the check
(``client: auto`` takes the plain one for http://), against real loopback servers."""

from __future__ import annotations

import gzip
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from config.kinds.http import HttpCheck
from config.load import parse_config
from core.errors import ErrorType
from core.result import CheckResult, Status
from engine.runner import run_check
from probes import http
from probes.base import ProbeContext
from probes.http.aiohttp_client import AiohttpTransport
from probes.http.plain import PlainTransport
from tests.endpoint import scripted, serving

CLIENTS = ["auto", "aiohttp"]  # auto: the plain client, for a plain http:// node

HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Server: nginx/1.24.0\r\n"
    b"Via: 1.1 edge-a\r\n"
    b"Via: 1.1 edge-b\r\n"
    b"Set-Cookie: session=canary-cookie-5d1\r\n"
    b"X-Long: " + b"x" * 200 + b"\r\n"
    b"Content-Length: 2\r\n\r\nok"
)


def http_check(url: str, client: str = "auto", **opts: Any) -> HttpCheck:
    options = "".join(f", {k}: {v}" for k, v in opts.items())
    check = parse_config(
        f"checks:\n  - {{name: c, kind: http, timeout: 2s, retries: {{attempts: 1}}, "
        f'client: {client}, nodes: [{{name: n, url: "{url}"}}]{options}}}\n'
    ).checks[0]
    assert isinstance(check, HttpCheck)
    return check


async def run(url: str, ctx: ProbeContext, client: str = "auto", **opts: Any) -> CheckResult:
    check = http_check(url, client, **opts)
    if url.startswith("http:") and "follow_redirects" not in opts:
        # Each test says which client it means: make sure that one carries the request.
        wanted = PlainTransport if client == "auto" else AiohttpTransport
        assert isinstance(http.transport(check, check.nodes[0], ctx), wanted)
    return await run_check(check, ctx)


def failure(result: CheckResult) -> tuple[ErrorType, str]:
    error = result.nodes[0].error
    assert error is not None, "expected the node to fail"
    return error.type, error.message


def up(result: CheckResult) -> bool:
    error = result.nodes[0].error
    assert result.status is Status.UP, error and error.message
    return True


# --- expect.headers and expect.headers_not ------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_any_value_of_a_repeated_header_may_match(ctx: ProbeContext, client: str) -> None:
    """A header sent twice passes when either value matches, and names match in any case."""
    async with scripted(HEADERS) as port:
        url = f"http://127.0.0.1:{port}/"
        expect = '{headers: {VIA: "edge-b$", content-type: "^application/json", Server: ""}}'
        assert up(await run(url, ctx, client, expect=expect))


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_header_that_does_not_match_fails(ctx: ProbeContext, client: str) -> None:
    """A value that misses the pattern fails as an assertion naming the header, the
    pattern and the value; with several values, how many there were and the first."""
    async with scripted(HEADERS) as port:
        url = f"http://127.0.0.1:{port}/"
        single = await run(url, ctx, client, expect='{headers: {Content-Type: "^text/html"}}')
        repeated = await run(url, ctx, client, expect='{headers: {Via: "edge-c"}}')
    assert failure(single) == (
        ErrorType.ASSERTION,
        'header Content-Type does not match /^text/html/ (is "application/json; charset=utf-8")',
    )
    assert failure(repeated) == (
        ErrorType.ASSERTION,
        'header Via does not match /edge-c/ in any of its 2 values (the first is "1.1 edge-a")',
    )


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_missing_header_fails_even_an_empty_pattern(ctx: ProbeContext, client: str) -> None:
    """A header that ``expect.headers`` names must be there: ``""`` asks for presence."""
    async with scripted(HEADERS) as port:
        result = await run(
            f"http://127.0.0.1:{port}/", ctx, client, expect='{headers: {X-Health: ""}}'
        )
    assert failure(result) == (ErrorType.ASSERTION, "header X-Health is missing")


@pytest.mark.parametrize("client", CLIENTS)
async def test_headers_not(ctx: ProbeContext, client: str) -> None:
    """The negative form passes when no value matches or the header is absent, and fails
    on a match in any of a repeated header's values."""
    async with scripted(HEADERS) as port:
        url = f"http://127.0.0.1:{port}/"
        passing = '{headers_not: {Server: "Apache", X-Debug: "", via: "edge-c"}}'
        assert up(await run(url, ctx, client, expect=passing))
        second = await run(url, ctx, client, expect='{headers_not: {Via: "edge-b"}}')
        present = await run(url, ctx, client, expect='{headers_not: {server: ""}}')
    assert failure(second) == (
        ErrorType.ASSERTION,
        'header Via matches /edge-b/, it must not (is "1.1 edge-b")',
    )
    assert failure(present) == (
        ErrorType.ASSERTION,
        'header server matches //, it must not (is "nginx/1.24.0")',
    )


@pytest.mark.parametrize("client", CLIENTS)
async def test_messages_cut_long_values_and_never_quote_secret_ones(
    ctx: ProbeContext, client: str
) -> None:
    """A long value is cut to 60 characters in the message, and a Set-Cookie value is
    not quoted at all, in either form."""
    async with scripted(HEADERS) as port:
        url = f"http://127.0.0.1:{port}/"
        long = await run(url, ctx, client, expect='{headers: {X-Long: "y"}}')
        cookie = await run(url, ctx, client, expect='{headers: {Set-Cookie: "^theme="}}')
        cookie_not = await run(url, ctx, client, expect='{headers_not: {Set-Cookie: "session"}}')
    _, message = failure(long)
    assert message == f'header X-Long does not match /y/ (is "{"x" * 56}...)'
    assert failure(cookie) == (
        ErrorType.ASSERTION,
        "header Set-Cookie does not match /^theme=/ (value not shown)",
    )
    assert failure(cookie_not) == (
        ErrorType.ASSERTION,
        "header Set-Cookie matches /session/, it must not (value not shown)",
    )


async def test_both_transports_hand_back_the_same_headers_and_only_when_judged(
    ctx: ProbeContext,
) -> None:
    """Both transports give the final answer's header lines alike (names lower-cased,
    repeats kept, a 100 Continue's and the trailers' left out), and none to a check
    that judges no header."""
    answer = (
        b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nVia: a\r\nVIA: b  \r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: X-Sum\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 9\r\n\r\n"
    )
    async with scripted(answer) as port:
        url = f"http://127.0.0.1:{port}/"
        judged = http_check(url, expect='{headers_not: {X-Sum: ""}}')
        plain = await ctx.resource(PlainTransport).exchange(judged, judged.nodes[0], dict, {})
        other = await ctx.resource(AiohttpTransport).exchange(judged, judged.nodes[0], dict, {})
        unjudged = http_check(url)
        spared = await ctx.resource(PlainTransport).exchange(unjudged, unjudged.nodes[0], dict, {})
    assert plain.headers == (
        ("via", "a"),
        ("via", "b"),
        ("transfer-encoding", "chunked"),
        ("trailer", "X-Sum"),
    )
    assert other.headers == plain.headers
    assert plain.header_values("Via") == ["a", "b"]
    assert spared.headers == ()


# --- expect.http_version -------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_http_version(ctx: ProbeContext, client: str) -> None:
    """An HTTP/1.0 answer passes ``[1.0, 1.1]`` and fails ``[1.1]``; an HTTP/1.1 answer
    fails ``["1.0"]``."""
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with scripted(old) as port:
        url = f"http://127.0.0.1:{port}/"
        assert up(await run(url, ctx, client, expect="{http_version: [1.0, 1.1]}"))
        strict = await run(url, ctx, client, expect="{http_version: [1.1]}")
    async with scripted(HEADERS) as port:
        newer = await run(
            f"http://127.0.0.1:{port}/", ctx, client, expect='{http_version: ["HTTP/1.0"]}'
        )
    assert failure(strict) == (ErrorType.ASSERTION, "answered in HTTP/1.0, expected 1.1")
    assert failure(newer) == (ErrorType.ASSERTION, "answered in HTTP/1.1, expected 1.0")


def test_http_versions_are_read_as_written_in_yaml_or_by_blackbox_exporter() -> None:
    """An unquoted ``1.1`` (a YAML number) and blackbox_exporter's ``HTTP/1.0`` both
    become the version string the answer is compared with."""
    check = http_check("http://a.invalid/", expect='{http_version: [1.1, "HTTP/1.0", 1.0]}')
    assert check.expect.http_version == ["1.1", "1.0", "1.0"]


# --- expect.body_not_regex -----------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_body_not_regex_judges_the_inflated_body(ctx: ProbeContext, client: str) -> None:
    """A gzip body is inflated before the pattern is looked for: a word only the inflated
    body shows fails the check, naming the pattern, and an absent one passes."""
    compressed = gzip.compress(b'{"db": "degraded", "cache": "ok"}')
    assert b"degraded" not in compressed  # found only by reading the inflated body
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (
        len(compressed),
        compressed,
    )
    async with scripted(answer) as port:
        url = f"http://127.0.0.1:{port}/"
        assert up(await run(url, ctx, client, expect='{body_not_regex: "fail(ed|ing)"}'))
        degraded = await run(url, ctx, client, expect='{body_not_regex: "degrad(ed|ing)"}')
    assert failure(degraded) == (
        ErrorType.ASSERTION,
        "body matches /degrad(ed|ing)/, it must not",
    )


# --- expect.tls ----------------------------------------------------------------------


@dataclass
class Sites:
    """An https and an http server on loopback, each redirecting to the other."""

    https: int
    http: int
    tls: str  # the check's tls: option trusting the https server's CA


@pytest.fixture
async def sites(tmp_path: Path) -> AsyncIterator[Sites]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ports: dict[str, int] = {}

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def to_other(request: web.Request) -> web.Response:
        other = "http" if request.secure else "https"
        raise web.HTTPFound(f"{other}://127.0.0.1:{ports[other]}/ok")

    def app() -> web.Application:
        application = web.Application()
        application.router.add_get("/ok", ok)
        application.router.add_get("/away", to_other)
        return application

    async with AsyncExitStack() as stack:
        ports["https"] = await stack.enter_async_context(serving(app(), server_ctx))
        ports["http"] = await stack.enter_async_context(serving(app()))
        yield Sites(https=ports["https"], http=ports["http"], tls=f"{{ca_file: {ca_file}}}")


async def test_tls_true_fails_when_https_redirects_to_http(ctx: ProbeContext, sites: Sites) -> None:
    """With follow_redirects, an https node that sends the probe to http:// fails
    ``expect.tls: true`` (the final answer was plain) and passes ``expect.tls: false``."""
    url = f"https://127.0.0.1:{sites.https}/away"
    opts = {"follow_redirects": "true", "tls": sites.tls}
    downgraded = await run(url, ctx, expect="{tls: true}", **opts)
    assert failure(downgraded) == (ErrorType.ASSERTION, "answer came over plain HTTP, expected TLS")
    assert up(await run(url, ctx, expect="{tls: false}", **opts))
    assert up(await run(f"https://127.0.0.1:{sites.https}/ok", ctx, expect="{tls: true}", **opts))


async def test_tls_false_fails_when_http_redirects_to_https(
    ctx: ProbeContext, sites: Sites
) -> None:
    """An http node that sends the probe to https:// passes ``expect.tls: true`` and
    fails ``expect.tls: false`` (the final answer came over TLS)."""
    url = f"http://127.0.0.1:{sites.http}/away"
    opts = {"follow_redirects": "true", "tls": sites.tls}
    assert up(await run(url, ctx, expect="{tls: true}", **opts))
    upgraded = await run(url, ctx, expect="{tls: false}", **opts)
    assert failure(upgraded) == (ErrorType.ASSERTION, "answer came over TLS, expected plain HTTP")


@pytest.mark.parametrize("client", CLIENTS)
async def test_plain_http_is_not_tls(ctx: ProbeContext, sites: Sites, client: str) -> None:
    """Without redirects, an http:// answer passes ``expect.tls: false`` through either
    client."""
    assert up(await run(f"http://127.0.0.1:{sites.http}/ok", ctx, client, expect="{tls: false}"))
