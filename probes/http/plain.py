"""Plain ``http://`` straight to the node: one HTTP/1.1 exchange on a fresh connection.

Most probes are plain requests to a node's health URL, repeated for every check every
interval. aiohttp's client spends about four times the CPU of this path on each one
(bench/: about 365 µs against 90 µs per loopback request), on machinery a probe does
not use: pooling, cookies, redirects, streaming readers, tracing. Here the request is
written in one piece and the answer is parsed by httptools (the llhttp parser that
Node.js uses) as it arrives, the body capped and inflated on the way (CappedBody). TLS,
a forward proxy, redirects and HEAD stay with aiohttp (probes/http/aiohttp_client.py).

Failures get the error types the aiohttp path gives them, and messages that say the
same (this client adds the address where it knows it). tests/test_probe_http_plain.py
runs both clients against the same scripted answers.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

import httptools
from yarl import URL

from config.kinds.http import HttpCheckBase, HttpNode
from core.clock import Clock
from core.errors import ErrorType, ProbeFailure
from probes.base import ProbeContext
from probes.http.common import Answer, CappedBody, check_announced
from probes.net import RESET, connect_first, os_failure, resolve

HEAD_LIMIT = 64 * 1024
"""Most bytes of status line and headers read before the answer is refused: llhttp
sets no bound of its own, and a peer that sends headers for ever must not get memory
for ever. (aiohttp allows 8190 bytes per line; real answers are far below either.)
Chunk framing and trailers get the same allowance, plus a few bytes per body byte."""

_FRAMING_PER_BODY_BYTE = 8  # "1\r\nx\r\n": one-byte chunks carry five bytes of framing

# Headers this client writes itself, whatever the check says.
_OWN = frozenset({"content-length", "transfer-encoding", "connection"})
_NOT_FOLLOWED = frozenset({"HEAD", "CONNECT"})  # answers without a body llhttp can tell


def suits(check: HttpCheckBase, node: HttpNode) -> bool:
    """Whether this path can carry the check's request exactly as aiohttp would."""
    return (
        node.url[:5].lower() == "http:"
        and check.proxy is None
        and not check.follow_redirects
        and check.method not in _NOT_FOLLOWED
    )


@dataclass(frozen=True, slots=True)
class _Target:
    host: str  # to resolve: IDNA-encoded, no brackets
    port: int
    where: str  # host:port, as messages name it
    path: str  # the request target: path and query, percent-encoded
    host_header: str
    authorization: str | None  # Basic, from credentials written in the URL
    literal: list[tuple[int, str]] | None  # the host is an IP address: nothing to resolve


@functools.lru_cache(maxsize=16384)
def _target(url: str) -> _Target:
    # Parsed once per URL, not per attempt; yarl quotes the path as aiohttp would.
    parsed = URL(url)
    host = parsed.raw_host or ""
    port = parsed.port or 80
    bracketed = f"[{host}]" if ":" in host else host
    authorization = None
    if parsed.user is not None or parsed.password is not None:
        # As aiohttp's BasicAuth: latin-1, the encoding servers assume without a charset;
        # UTF-8 (RFC 7617's charset) only for what latin-1 cannot hold.
        text = f"{parsed.user or ''}:{parsed.password or ''}"
        try:
            pair = text.encode("latin-1")
        except UnicodeEncodeError:
            pair = text.encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    else:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        literal = [(int(family), str(address))]
    return _Target(
        literal=literal,
        host=host,
        port=port,
        where=f"{bracketed}:{port}",
        path=parsed.raw_path_qs or "/",
        host_header=bracketed if port == 80 else f"{bracketed}:{port}",
        authorization=authorization,
    )


def _request(check: HttpCheckBase, target: _Target, headers: dict[str, str]) -> bytes:
    body = check.body.encode() if check.body is not None else None
    own = {name.lower() for name in headers}
    lines = [f"{check.method} {target.path} HTTP/1.1"]
    if "host" not in own:  # a check may name a virtual host on an address URL
        lines.append(f"Host: {target.host_header}")
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in _OWN]
    if target.authorization is not None and "authorization" not in own:
        lines.append(f"Authorization: {target.authorization}")
    if body is not None:
        if "content-type" not in own:
            lines.append("Content-Type: application/octet-stream")
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + body if body else head


_PREPARED_MAX = 65536


class PlainTransport:
    """This client as a transport of ``kind: http`` (probes/http/transport.py), one per
    probe context, with the requests it made once and sends again."""

    def __init__(self, ctx: ProbeContext) -> None:
        self._ctx = ctx
        self.prepared: dict[int, tuple[HttpNode, HttpCheckBase, bytes]] = {}
        """Requests by node: one with no signature is the same bytes every time. An
        entry keeps its node and check, so an id is never mistaken for another
        object's; a reload (``forget``) lets the old config's requests go."""

    def forget(self) -> None:
        self.prepared.clear()

    async def close(self) -> None:
        self.prepared.clear()

    def _request_for(
        self,
        check: HttpCheckBase,
        node: HttpNode,
        target: _Target,
        headers: Callable[[], dict[str, str]],
    ) -> bytes:
        if check.sign is not None:  # a fresh timestamp and nonce every time
            return _request(check, target, headers())
        prepared = self.prepared
        entry = prepared.get(id(node))
        if entry is not None and entry[0] is node and entry[1] is check:
            return entry[2]
        request = _request(check, target, headers())
        if len(prepared) >= _PREPARED_MAX:  # more than any config: a caller never forgets
            prepared.clear()
        prepared[id(node)] = (node, check, request)
        return request

    async def exchange(
        self,
        check: HttpCheckBase,
        node: HttpNode,
        headers: Callable[[], dict[str, str]],
        marks: dict[str, float],
    ) -> Answer:
        """Resolve, connect, send, read the answer; the connection is dropped after it.

        ``headers`` makes the request's headers; it is not called when the same request
        was made before."""
        ctx = self._ctx
        target = _target(node.url)
        request = self._request_for(check, node, target, headers)
        addresses = target.literal or await resolve(target.host, target.port, ctx)
        loop = asyncio.get_running_loop()
        reader = _Reader(
            loop,
            ctx.clock,
            marks,
            check.max_body_bytes,
            target.where,
            keep_headers=check.expect.judges_headers,
        )

        def connect(family: int, address: str) -> Awaitable[tuple[asyncio.Transport, Any]]:
            return loop.create_connection(lambda: reader, address, target.port, family=family)

        transport, _ = await connect_first(addresses, connect, target.where, ctx)
        try:
            transport.write(request)
            marks["sent"] = ctx.clock.monotonic()
            return await reader.answer
        finally:
            transport.abort()  # answered, failed or timed out: the attempt is over


_P = ParamSpec("_P")


def _kept(
    callback: Callable[Concatenate[_Reader, _P], None],
) -> Callable[Concatenate[_Reader, _P], None]:
    """An httptools callback whose exception the reader keeps, to learn why it failed.

    httptools hands it on only as ``__context__`` of its HttpParserCallbackError, and
    Python replaces that with whatever exception is being handled around the parser
    (an ``except ImportError:`` anywhere up the stack made a too-large body "internal").
    """

    @functools.wraps(callback)
    def kept(reader: _Reader, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            callback(reader, *args, **kwargs)
        except BaseException as exc:
            reader._raised = exc
            raise

    return kept


class _Reader(asyncio.Protocol):
    """Feeds what arrives to httptools and settles ``answer`` once, either way."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        marks: dict[str, float],
        limit: int,
        where: str,
        *,
        keep_headers: bool = False,
    ) -> None:
        self.answer: asyncio.Future[Answer] = loop.create_future()
        self._parser = httptools.HttpResponseParser(self)
        # As lenient as aiohttp's parser, which the other client uses: a bare LF ending
        # a line, folded or oddly spaced headers, spaces after a chunk size. A server
        # that answers so is up by aiohttp's reading, and must be by this one too. The
        # risk these leniencies carry for a server (request smuggling over a kept-alive
        # connection) does not arise here: one request, one answer, then the close.
        self._parser.set_dangerous_leniencies(
            lenient_headers=True,
            lenient_optional_cr_before_lf=True,
            lenient_spaces_after_chunk_size=True,
        )
        self._clock = clock
        self._marks = marks
        self._limit = limit
        self._where = where
        self._framing = 0  # bytes fed that were not body: status lines, headers, chunking
        self._raised: BaseException | None = None  # by a callback, kept by _kept
        self._keep_headers = keep_headers
        self._reset_message()

    def _reset_message(self) -> None:
        self._reason: list[bytes] = []
        self._status = 0
        self._headers_done = False
        self._interim = False
        self._declared: int | None = None
        self._chunked = False
        self._encoding: str | None = None
        self._body: CappedBody | None = None
        self._received = 0
        # (lower-case name, value) as they came, when the check judges them; None
        # otherwise, so that the common check pays nothing for it.
        self._headers: list[tuple[bytes, bytes]] | None = [] if self._keep_headers else None

    # -- asyncio.Protocol ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._marks.setdefault("first_byte", self._clock.monotonic())
        body_before = self._received
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # 101 Switching Protocols: the answer is complete; the status judges it.
            self._complete()
        except httptools.HttpParserCallbackError as exc:
            failure, self._raised = self._raised, None
            if isinstance(failure, ProbeFailure):
                self._fail(failure)
            else:  # a bug of ours inside a callback: the runner reports it as internal
                self._settle_exception(failure or exc)
        except httptools.HttpParserError as exc:
            self._fail(ProbeFailure(ErrorType.PROTOCOL, f"not a valid HTTP response: {exc}"))
        else:
            self._framing += len(data) - max(self._received - body_before, 0)
            if self._framing > HEAD_LIMIT + _FRAMING_PER_BODY_BYTE * self._received:
                what = "chunk framing and trailers" if self._headers_done else "no end of headers"
                self._fail(
                    ProbeFailure(
                        ErrorType.PROTOCOL,
                        f"not a valid HTTP response: {what} in {self._framing} bytes",
                    )
                )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer.done():
            return
        if self._headers_done:
            if exc is None and self._declared is None and not self._chunked:
                self._complete()  # no length given: the body ends where the connection does
                return
            if exc is None:
                how = "the server closed the connection"
            else:
                how = "connection reset" if _is_reset(exc) else f"{type(exc).__name__}: {exc}"
            got = f"after {self._received} of {self._declared} bytes" if self._declared else ""
            message = f"response body cut short {got}".rstrip() + f": {how}"
            self._fail(ProbeFailure(ErrorType.CONNECTION_RESET, message))
        elif exc is None:
            self._fail(
                ProbeFailure(
                    ErrorType.CONNECTION_RESET, "server closed the connection without answering"
                )
            )
        elif isinstance(exc, OSError):
            kind = ErrorType.CONNECTION_RESET if _is_reset(exc) else None
            self._fail(os_failure(exc, self._where, during="during the exchange", kind=kind))
        else:
            self._fail(ProbeFailure(ErrorType.CONNECTION, f"{type(exc).__name__}: {exc}"))

    # -- httptools callbacks (a ProbeFailure raised here ends the answer) ----------

    @_kept
    def on_status(self, status: bytes) -> None:
        self._reason.append(status)

    @_kept
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.strip().lower()  # leniency lets "Content-Length :" through
        if lowered == b"content-length":
            try:
                self._declared = int(value)
            except ValueError:
                raise ProbeFailure(
                    ErrorType.PROTOCOL, "not a valid HTTP response: bad Content-Length"
                ) from None
        elif lowered == b"transfer-encoding":
            # Chunked only when it is the last coding applied (RFC 9112 6.3); otherwise
            # the body runs to the end of the connection, as llhttp reads it too.
            self._chunked = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        elif lowered == b"content-encoding":
            self._encoding = value.decode("latin-1")
        if self._headers is not None and not self._headers_done:  # trailers are not kept
            self._headers.append((lowered, value))

    @_kept
    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        if 100 <= self._status < 200 and self._status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        self._headers_done = True
        check_announced(self._status, self._declared, self._limit)
        self._body = CappedBody(self._limit, self._encoding)

    @_kept
    def on_body(self, body: bytes) -> None:
        assert self._body is not None
        self._received += len(body)
        self._body.feed(body)

    @_kept
    def on_message_complete(self) -> None:
        if self._interim:
            self._reset_message()
            return
        self._complete()

    # -- settling ------------------------------------------------------------------

    def _complete(self) -> None:
        if self.answer.done():
            return
        self._marks["end"] = self._clock.monotonic()
        try:
            body = self._body.finish() if self._body is not None else b""
        except ProbeFailure as failure:
            self._fail(failure)
            return
        self.answer.set_result(
            Answer(
                status=self._status or self._parser.get_status_code(),
                reason=b"".join(self._reason).decode("latin-1"),
                version=self._parser.get_http_version(),
                body=body,
                headers=_decoded(self._headers) if self._headers else (),
            )
        )

    def _fail(self, failure: ProbeFailure) -> None:
        self._settle_exception(failure)

    def _settle_exception(self, exc: BaseException) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


def _decoded(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    # As aiohttp's parser decodes them, so that a pattern reads both clients' alike; the
    # spaces and tabs around a value are not part of it (RFC 9110 5.5).
    return tuple(
        (
            name.decode("utf-8", "surrogateescape"),
            value.strip(b" \t").decode("utf-8", "surrogateescape"),
        )
        for name, value in headers
    )


def _is_reset(exc: BaseException) -> bool:
    # asyncio's own "Connection lost" carries no errno: a reset all the same.
    return isinstance(exc, ConnectionError) or getattr(exc, "errno", None) in RESET
