"""The plain HTTP transport (probes/http/plain.py) against scripted loopback servers.

Each server here is a raw asyncio listener on 127.0.0.1, port 0, that records the bytes
of the request and answers with bytes written out in the test, so framing the higher
level servers never produce (1xx, a body cut short, headers without end) can be sent.
The same checks are also run through the aiohttp transport (probes/http/aiohttp_client.py)
where both must agree: the two transports' contract.
"""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from config.kinds.http import HttpCheck
from config.load import parse_config
from core.errors import ErrorType
from core.result import CheckResult, Status
from engine.runner import run_check
from probes import http
from probes.base import ProbeContext
from probes.http.aiohttp_client import AiohttpTransport
from probes.http.aiohttp_client import session as http_session
from probes.http.common import user_agent
from probes.http.plain import HEAD_LIMIT, PlainTransport, suits
from probes.http.transport import Transport

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A listener that answers every connection with ``answer`` and keeps each request."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            self.requests.append(head + await reader.readexactly(length))
            await self.answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def head(self, index: int = -1) -> dict[str, str]:
        """Header names (lower case) and values of a recorded request."""
        lines = self.requests[index].split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}


@asynccontextmanager
async def scripted(answer: Answer, host: str = "127.0.0.1") -> AsyncIterator[Scripted]:
    server_state = Scripted(answer)
    server = await asyncio.start_server(server_state._serve, host, 0)
    server_state.port = server.sockets[0].getsockname()[1]
    try:
        yield server_state
    finally:
        server.close()
        await server.wait_closed()


def sends(*parts: bytes, then_close: bool = True) -> Answer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
        if not then_close:
            await reader.read()  # until the client drops the connection

    return answer


def http_check(url: str, **opts: Any) -> HttpCheck:
    options = "".join(f", {k}: {v}" for k, v in opts.items())
    check = parse_config(
        f"checks:\n  - {{name: c, kind: http, timeout: 2s, retries: {{attempts: 1}}, "
        f'nodes: [{{name: n, url: "{url}"}}]{options}}}\n'
    ).checks[0]
    assert isinstance(check, HttpCheck)
    return check


async def run(url: str, ctx: ProbeContext, **opts: Any) -> CheckResult:
    return await run_check(http_check(url, **opts), ctx)


async def run_with_peak(answer: Answer, ctx: ProbeContext) -> tuple[CheckResult, int]:
    """A check against a server that answers so, and the most memory traced meanwhile."""
    async with scripted(answer) as server:
        tracemalloc.start()
        try:
            result = await run(f"http://127.0.0.1:{server.port}/", ctx)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return result, peak


def failure(result: CheckResult) -> tuple[ErrorType, str]:
    error = result.nodes[0].error
    assert error is not None, "expected the node to fail"
    return error.type, error.message


def plain_transport(ctx: ProbeContext) -> Transport:
    return ctx.resource(PlainTransport)


def aiohttp_transport(ctx: ProbeContext) -> Transport:
    return ctx.resource(AiohttpTransport)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_the_request_carries_what_the_check_says(ctx: ProbeContext) -> None:
    """Method, quoted path and query, Host with the port, the check's headers, the body
    with its length, our User-Agent, identity encoding, and Connection: close."""
    async with scripted(sends(OK)) as server:
        url = f"http://127.0.0.1:{server.port}/api/健康?x=1 2"
        result = await run(
            url,
            ctx,
            method="POST",
            body='"<soap/>"',
            headers="{SOAPAction: urn:hb, Content-Type: text/xml}",
        )
    assert result.status is Status.UP
    request_line, _, _ = server.requests[0].partition(b"\r\n")
    assert request_line == b"POST /api/%E5%81%A5%E5%BA%B7?x=1+2 HTTP/1.1"  # as yarl quotes
    assert server.requests[0].endswith(b"\r\n\r\n<soap/>")
    assert server.head() == {
        "host": f"127.0.0.1:{server.port}",
        "soapaction": "urn:hb",
        "content-type": "text/xml",
        "accept-encoding": "identity",
        "user-agent": user_agent(),
        "accept": "*/*",
        "content-length": "7",
        "connection": "close",
    }


async def test_both_clients_send_the_same_headers(ctx: ProbeContext) -> None:
    """The same check through aiohttp and through the plain client: the same header
    names and values, credentials from the URL included."""
    async with scripted(sends(OK)) as server:
        check = http_check(
            f"http://user:pa%20ss@127.0.0.1:{server.port}/p",
            method="PUT",
            body="x",
            headers="{X-Token: canary-6161}",
        )
        node = check.nodes[0]
        headers = http._headers(check, node, ctx)  # what probe() hands either client
        plain = await plain_transport(ctx).exchange(check, node, lambda: dict(headers), {})
        through_aiohttp = await aiohttp_transport(ctx).exchange(
            check, node, lambda: dict(headers), {}
        )
    assert (plain.status, plain.body) == (through_aiohttp.status, through_aiohttp.body)
    plain_head, aiohttp_head = server.head(0), server.head(1)
    assert plain_head["authorization"] == "Basic dXNlcjpwYSBzcw=="  # user:pa ss
    # aiohttp leaves the connection header out when it will close anyway.
    assert {k: v for k, v in plain_head.items() if k != "connection"} == {
        k: v for k, v in aiohttp_head.items() if k != "connection"
    }


async def test_a_host_header_in_the_check_replaces_the_url_host(ctx: ProbeContext) -> None:
    """A virtual host on an address URL: the check's Host is sent, once."""
    async with scripted(sends(OK)) as server:
        await run(f"http://127.0.0.1:{server.port}/", ctx, headers="{Host: app.hotline.invalid}")
    assert server.requests[0].count(b"Host:") + server.requests[0].count(b"host:") == 1
    assert server.head()["host"] == "app.hotline.invalid"


async def test_ipv6_loopback_url(ctx: ProbeContext) -> None:
    async with scripted(sends(OK), host="::1") as server:
        result = await run(f"http://[::1]:{server.port}/", ctx)
    assert result.status is Status.UP
    assert server.head()["host"] == f"[::1]:{server.port}"


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n-go\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("answer", "body", "server_closes"),
    [
        (CHUNKED, b"ok-go", False),
        (b"HTTP/1.0 200 OK\r\n\r\nto the end", b"to the end", True),  # no length: to EOF
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"ok",
            False,
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"", False),
    ],
    ids=["chunked", "until-close", "after-100-continue", "no-content"],
)
async def test_framings_are_read_to_their_end(
    ctx: ProbeContext, answer: bytes, body: bytes, server_closes: bool
) -> None:
    """Each answer ends where its framing says, not at the timeout: the servers that do
    not close wait for the client to hang up."""
    async with scripted(sends(answer, then_close=server_closes)) as server:
        check = http_check(f"http://127.0.0.1:{server.port}/")
        got = await plain_transport(ctx).exchange(check, check.nodes[0], dict, {})
    assert got.body == body
    assert got.status in (200, 204)


async def test_both_clients_read_the_same_answers(ctx: ProbeContext) -> None:
    """Status, reason, version and inflated body agree across the two clients."""
    compressed = gzip.compress(b'{"state": "ok"}')
    answers = [
        b"HTTP/1.1 404 Not Here\r\nContent-Length: 4\r\n\r\nnope",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
        % (len(compressed), compressed),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ]
    for answer in answers:
        async with scripted(sends(answer)) as server:
            check = http_check(f"http://127.0.0.1:{server.port}/")
            node = check.nodes[0]
            plain = await plain_transport(ctx).exchange(check, node, dict, {})
            other = await aiohttp_transport(ctx).exchange(check, node, dict, {})
        assert (plain.status, plain.reason, plain.version, plain.body) == (
            other.status,
            other.reason,
            other.version,
            other.body,
        )


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (b"", ErrorType.CONNECTION_RESET, "closed the connection without answering"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this",
            ErrorType.CONNECTION_RESET,
            "cut short after 9 of 1000 bytes",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            ErrorType.CONNECTION_RESET,
            "cut short",
        ),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", ErrorType.PROTOCOL, "not a valid HTTP response"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
            ErrorType.PROTOCOL,
            "Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
            ErrorType.BODY_TOO_LARGE,
            "99999999 bytes announced",
        ),
    ],
    ids=["silent-close", "short-body", "short-chunk", "not-http", "bad-length", "announced-big"],
)
async def test_bad_answers_are_named(
    ctx: ProbeContext, answer: bytes, kind: ErrorType, words: str
) -> None:
    async with scripted(sends(answer)) as server:
        result = await run(f"http://127.0.0.1:{server.port}/", ctx)
    assert result.status is Status.DOWN
    error_type, message = failure(result)
    assert error_type is kind
    assert words in message


async def test_headers_without_end_are_refused_with_bounded_memory(ctx: ProbeContext) -> None:
    """A peer that sends header lines for ever: a protocol failure after HEAD_LIMIT
    bytes, not a probe that keeps reading until its timeout."""

    async def endless_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(10_000):  # 5 MB, far past the limit
            writer.write(b"X-Padding: " + b"p" * 500 + b"\r\n")
            await writer.drain()

    result, peak = await run_with_peak(endless_headers, ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.PROTOCOL
    assert "not a valid HTTP response: no end of headers in" in message
    assert int(message.split(" in ")[1].split()[0]) > HEAD_LIMIT
    assert peak < 4 * 2**20
    assert result.duration < 1.0  # refused as soon as seen, not at the 2 s timeout


async def test_a_chunked_body_over_the_cap_is_too_large(ctx: ProbeContext) -> None:
    chunk = b"%x\r\n%s\r\n" % (4096, b"a" * 4096)
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 4
    async with scripted(sends(answer, then_close=False)) as server:
        result = await run(f"http://127.0.0.1:{server.port}/", ctx, max_body_bytes=10000)
    assert failure(result)[0] is ErrorType.BODY_TOO_LARGE


async def test_head_goes_through_aiohttp(ctx: ProbeContext) -> None:
    """A HEAD answer announces a length it never sends: only a client that knows the
    method can end it, so HEAD is aiohttp's (the plain client would wait it out)."""
    head_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    async with scripted(sends(head_answer, then_close=False)) as server:
        check = http_check(f"http://127.0.0.1:{server.port}/", method="HEAD")
        assert not suits(check, check.nodes[0])
        result = await run_check(check, ctx)
    assert result.status is Status.UP


async def test_client_aiohttp_sends_a_plain_request_through_aiohttp(
    ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``client: aiohttp`` on a plain http:// node: aiohttp carries the request, and the
    check is judged alike; ``auto`` (the default) keeps the plain transport."""
    carried: list[str] = []

    def spy(transport: type[Any]) -> None:
        exchange = transport.exchange

        async def exchange_and_say(self: Any, *args: Any) -> Any:
            carried.append(transport.__name__)
            return await exchange(self, *args)

        monkeypatch.setattr(transport, "exchange", exchange_and_say)

    spy(PlainTransport)
    spy(AiohttpTransport)
    async with scripted(sends(OK)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        forced = http_check(url, client="aiohttp")
        assert (await run_check(forced, ctx)).status is Status.UP
        auto = http_check(url)
        assert (await run_check(auto, ctx)).status is Status.UP
    assert carried == ["AiohttpTransport", "PlainTransport"]
    assert len(server.requests) == 2
    assert forced.client == "aiohttp" and auto.client == "auto"


def test_only_plain_direct_requests_take_the_plain_client() -> None:
    for url in ("http://app.hotline.invalid/", "HTTP://app.hotline.invalid/"):
        check = http_check(url)
        assert suits(check, check.nodes[0]), url
    others = [
        ("https://app.hotline.invalid/", {}),
        ("http://app.hotline.invalid/", {"follow_redirects": "true"}),
        ("http://app.hotline.invalid/", {"proxy": "{url: 'http://proxy.hotline.invalid:3128'}"}),
    ]
    for url, opts in others:
        check = http_check(url, **opts)
        assert not suits(check, check.nodes[0]), (url, opts)


async def test_url_credentials_never_reach_a_message(ctx: ProbeContext) -> None:
    """A refused node whose URL carries a password: the message names host and port
    only."""
    async with scripted(sends(OK)) as server:
        port = server.port
    result = await run(f"http://ops:canary-s3cr3t@127.0.0.1:{port}/", ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.CONNECTION_REFUSED
    assert message == f"connection refused by 127.0.0.1:{port}"
    assert "canary" not in repr(result)


async def test_a_prepared_request_is_reused_and_dropped_with_the_config(ctx: ProbeContext) -> None:
    """A request without a signature is made once per node; a reloaded check (new
    objects) sends its own headers, and forget() lets the old config's requests go."""
    async with scripted(sends(OK)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        first = http_check(url, headers="{X-Version: one}")
        await run_check(first, ctx)
        await run_check(first, ctx)
        assert len(ctx.resource(PlainTransport).prepared) == 1
        reloaded = http_check(url, headers="{X-Version: two}")
        await run_check(reloaded, ctx)
        ctx.forget()
        assert ctx.resource(PlainTransport).prepared == {}
    assert [server.head(i)["x-version"] for i in range(3)] == ["one", "one", "two"]


async def test_each_transport_is_made_once_and_closed_with_the_context() -> None:
    """The transports are resources of the context: one of each per context, the aiohttp
    session made for its first use and closed with the context, none kept after."""
    async with ProbeContext() as ctx:
        assert ctx.resource(PlainTransport) is ctx.resource(PlainTransport)
        session = http_session(ctx)
        assert http_session(ctx) is session
        assert not session.closed
    assert session.closed
    async with ctx:  # closed, the context makes them anew on next use
        assert http_session(ctx) is not session


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Odd: a\x01b\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\nto the end",
    ],
    ids=["bare-lf", "folded", "chunk-size-space", "control-char", "name-space", "not-last-chunked"],
)
async def test_sloppy_answers_read_as_aiohttp_reads_them(ctx: ProbeContext, answer: bytes) -> None:
    """Servers that bend HTTP/1.1 (bare LF, folded headers, stray spaces): what aiohttp
    accepts, the plain client accepts, with the same body."""
    async with scripted(sends(answer)) as server:
        check = http_check(f"http://127.0.0.1:{server.port}/")
        plain = await plain_transport(ctx).exchange(check, check.nodes[0], dict, {})
        other = await aiohttp_transport(ctx).exchange(check, check.nodes[0], dict, {})
    assert (plain.status, plain.body) == (other.status, other.body)
    assert plain.status == 200


async def test_endless_trailers_are_refused_with_bounded_memory(ctx: ProbeContext) -> None:
    """After the last chunk, a trailer that never ends: refused once framing passes its
    allowance, not read until the timeout."""

    async def endless_trailer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: ")
        for _ in range(2000):  # 128 MB if nobody stops reading
            writer.write(b"a" * 65536)
            await writer.drain()

    result, peak = await run_with_peak(endless_trailer, ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.PROTOCOL
    assert "chunk framing and trailers" in message
    assert peak < 4 * 2**20
    assert result.duration < 1.0


async def test_a_truncated_gzip_body_is_a_protocol_failure(ctx: ProbeContext) -> None:
    whole = gzip.compress(b'{"state": "ok"}' * 100)
    cut = whole[: len(whole) // 2]
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (
        len(cut),
        cut,
    )
    async with scripted(sends(answer)) as server:
        result = await run(f"http://127.0.0.1:{server.port}/", ctx)
    assert failure(result) == (ErrorType.PROTOCOL, "gzip body is cut short")


def raw_deflate(data: bytes) -> bytes:
    """A deflate stream without zlib's header and trailer, as some servers send it."""
    deflater = zlib.compressobj(wbits=-15)
    return deflater.compress(data) + deflater.flush()


def deflated(body: bytes, chunk: int = 0) -> bytes:
    """A 200 answer with Content-Encoding: deflate and this body, chunked in pieces of
    ``chunk`` bytes if given."""
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n"
    if chunk:
        pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"
    return head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


DOCUMENT = b'{"state": "ok"}'


@pytest.mark.parametrize("client", ["auto", "aiohttp"])
@pytest.mark.parametrize(
    ("body", "chunk"),
    [(zlib.compress(DOCUMENT), 0), (raw_deflate(DOCUMENT), 0), (raw_deflate(DOCUMENT), 1)],
    ids=["zlib", "raw", "raw-byte-by-byte"],
)
async def test_a_deflate_body_is_read_zlib_wrapped_or_raw(
    ctx: ProbeContext, client: str, body: bytes, chunk: int
) -> None:
    """Content-Encoding: deflate means zlib-wrapped (RFC 9110 8.4.1.2), but some servers
    send raw deflate: both are inflated before expect: judges the body, as curl does,
    by either client."""
    async with scripted(sends(deflated(body, chunk))) as server:
        url = f"http://127.0.0.1:{server.port}/"
        check = http_check(url, client=client, expect="{json: {state: ok}}")
        result = await run_check(check, ctx)
        got = await plain_transport(ctx).exchange(check, check.nodes[0], dict, {})
        other = await aiohttp_transport(ctx).exchange(check, check.nodes[0], dict, {})
    assert result.status is Status.UP, result.nodes[0].error
    assert got.body == other.body == DOCUMENT


@pytest.mark.parametrize("client", ["auto", "aiohttp"])
@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe not deflate at all", zlib.compress(DOCUMENT)[:2] + b"\xff" * 20],
    ids=["neither", "zlib-header-then-garbage"],
)
async def test_a_corrupt_deflate_body_is_a_protocol_failure(
    ctx: ProbeContext, client: str, body: bytes
) -> None:
    async with scripted(sends(deflated(body))) as server:
        result = await run(f"http://127.0.0.1:{server.port}/", ctx, client=client)
    error_type, message = failure(result)
    assert error_type is ErrorType.PROTOCOL
    assert message.startswith("deflate body is corrupt")


@pytest.mark.parametrize("client", ["auto", "aiohttp"])
async def test_a_raw_deflate_bomb_stops_at_the_body_cap(ctx: ProbeContext, client: str) -> None:
    """30 KB of raw deflate that inflates to 30 MiB: body_too_large at max_body_bytes,
    with memory bounded, whichever way deflate was sent."""
    bomb = raw_deflate(b"\0" * (30 * 2**20))
    async with scripted(sends(deflated(bomb, chunk=4096))) as server:
        check = http_check(f"http://127.0.0.1:{server.port}/", client=client, max_body_bytes=2**20)
        tracemalloc.start()
        try:
            result = await run_check(check, ctx)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    error_type, message = failure(result)
    assert error_type is ErrorType.BODY_TOO_LARGE
    assert f"exceeds {2**20} bytes" in message
    assert peak < 8 * 2**20


@pytest.mark.parametrize(
    ("userinfo", "header"),
    [(":pw", "Basic OnB3"), ("us%C3%A9r:p%C3%A4ss", "Basic dXPpcjpw5HNz")],
    ids=["no-user", "latin-1"],
)
async def test_url_credentials_are_sent_as_aiohttp_sends_them(
    ctx: ProbeContext, userinfo: str, header: str
) -> None:
    async with scripted(sends(OK)) as server:
        check = http_check(f"http://{userinfo}@127.0.0.1:{server.port}/")
        await plain_transport(ctx).exchange(check, check.nodes[0], dict, {})
        await aiohttp_transport(ctx).exchange(check, check.nodes[0], dict, {})
    assert server.head(0)["authorization"] == server.head(1)["authorization"] == header


async def test_a_304_with_a_large_length_is_not_too_large(ctx: ProbeContext) -> None:
    """A 304 (or 204) carries no body whatever its Content-Length says."""
    answer = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99999999\r\n\r\n"
    async with scripted(sends(answer, then_close=False)) as server:
        check = http_check(f"http://127.0.0.1:{server.port}/")
        got = await plain_transport(ctx).exchange(check, check.nodes[0], dict, {})
    assert (got.status, got.body) == (304, b"")
