"""HTTP pieces shared by the kinds that read an HTTP answer (http, proxy, freshness's
http source), whichever client carried the request: the capped body, a JSON document
and its fields, the User-Agent. Nothing here imports aiohttp (see probes/http/plain.py).
"""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from core.errors import ErrorType, ProbeFailure

_COMPRESSED = frozenset({"gzip", "x-gzip", "deflate"})
_GZIP_OR_ZLIB = 47  # 32 + 15: zlib tells a gzip header from a zlib one
_RAW_DEFLATE = -15  # no header and no trailer: a deflate stream alone


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server said, whichever client carried the request."""

    status: int
    reason: str
    version: str | None  # "1.1"
    body: bytes
    details: dict[str, Any] = field(default_factory=dict)  # the certificate's, over TLS
    warnings: tuple[str, ...] = ()
    tls: bool = False
    """Whether the final answer (after any redirects) came over TLS."""
    headers: tuple[tuple[str, str], ...] = ()
    """The final answer's header lines in order, each (lower-case name, value); a name
    comes as often as the server sent it. Only for a check whose ``expect`` judges
    headers (HttpExpect.judges_headers): the plain client spares the others the cost."""

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in the order they came."""
        folded = name.lower()
        return [value for header, value in self.headers if header == folded]


class CappedBody:
    """A body collected up to ``limit`` bytes, gzip and deflate inflated on the way.

    Neither client decompresses on its own (a 30 KB gzip bomb inflates to gigabytes):
    the body is inflated here, piece by piece as it arrives, with the cap applied to
    the output, so a probe never holds more than ``limit`` bytes of it.
    """

    # deflate only, until its first two bytes have come: what arrived of them so far.
    _head: bytes | None = None

    def __init__(self, limit: int, encoding: str | None) -> None:
        self.limit = limit
        self.encoding = (encoding or "identity").strip().lower()
        self._inflater = None
        if self.encoding in _COMPRESSED:
            self._inflater = zlib.decompressobj(wbits=_GZIP_OR_ZLIB)
            if self.encoding == "deflate":
                self._head = b""
        self._chunks: list[bytes] = []
        self._size = 0

    @property
    def inflating(self) -> bool:
        return self._inflater is not None

    def feed(self, raw: bytes) -> None:
        """Take the next piece as it came off the wire; BODY_TOO_LARGE past the cap."""
        inflater = self._inflater
        if inflater is None:
            chunk = raw
        else:
            if self._head is not None:
                inflater, raw = self._sniff(inflater, raw)
            try:
                # Never more output than one byte past the cap (size <= limit here, so
                # the bound is at least 1: zlib reads 0 as "no bound").
                chunk = inflater.decompress(raw, self.limit + 1 - self._size)
            except zlib.error as exc:
                raise ProbeFailure(
                    ErrorType.PROTOCOL, f"{self.encoding} body is corrupt: {exc}"
                ) from None
        self._size += len(chunk)
        if self._size > self.limit or (inflater is not None and inflater.unconsumed_tail):
            raise _too_large(self.limit)
        self._chunks.append(chunk)

    def _sniff(self, inflater: zlib._Decompress, raw: bytes) -> tuple[zlib._Decompress, bytes]:
        """Content-Encoding: deflate is zlib-wrapped (RFC 9110 8.4.1.2), but some servers
        send raw deflate: as curl does, a body whose first two bytes are no zlib header
        is read as raw deflate. The inflater to use and what to feed it now (nothing
        before two bytes have come).
        """
        head = (self._head or b"") + raw
        if len(head) < 2:
            self._head = head
            return inflater, b""
        self._head = None
        if not _wrapped(head):
            inflater = self._inflater = zlib.decompressobj(wbits=_RAW_DEFLATE)
        return inflater, head

    def finish(self) -> bytes:
        """The whole body, once the answer has ended."""
        if self._inflater is not None:
            tail = self._inflater.flush()
            if self._size + len(tail) > self.limit:
                raise _too_large(self.limit)
            if self._size and not self._inflater.eof:
                raise ProbeFailure(ErrorType.PROTOCOL, f"{self.encoding} body is cut short")
            self._chunks.append(tail)
        return b"".join(self._chunks)


def _wrapped(head: bytes) -> bool:
    """Whether a deflate body starts as zlib's inflate accepts: a gzip header (which the
    inflater takes too), or a zlib one, checked as zlib checks it (method 8, a window of
    at most 32 KiB, the two bytes a multiple of 31) and with no preset dictionary, which
    no HTTP server uses."""
    cmf, flg = head[0], head[1]
    if cmf == 0x1F and flg == 0x8B:
        return True
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0 and not flg & 0x20


_NO_BODY = frozenset({101, 204, 304})  # a Content-Length here announces no body to read


def check_announced(status: int, declared: int | None, limit: int) -> None:
    """Refuse a body whose Content-Length is over the cap before reading any of it."""
    if declared is not None and declared > limit and status not in _NO_BODY:
        raise ProbeFailure(
            ErrorType.BODY_TOO_LARGE,
            f"body of {declared} bytes announced, the check reads at most {limit}",
        )


def _too_large(limit: int) -> ProbeFailure:
    return ProbeFailure(
        ErrorType.BODY_TOO_LARGE, f"body exceeds {limit} bytes, the most the check reads"
    )


def json_document(text: str, details: dict[str, Any]) -> Any:
    """The body as JSON; an ``assertion`` failure (with ``details``) when it is not."""
    try:
        return json.loads(text)
    except ValueError:
        raise ProbeFailure(ErrorType.ASSERTION, "body is not JSON", details=details) from None
    except RecursionError:  # "[[[[..." deeper than the parser's stack: hostile, or broken
        raise ProbeFailure(
            ErrorType.ASSERTION, "body is JSON nested too deeply to read", details=details
        ) from None


def lookup(document: Any, path: str) -> tuple[bool, Any]:
    """Follow ``a.b.0.c`` through objects and arrays: (found, value)."""
    node = document
    for key in path.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False, None
    return True, node


def short(value: Any) -> str:
    """A JSON value as a message shows it: as JSON, cut at 60 characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


@functools.cache
def user_agent() -> str:
    """Who is asking, as a server's access log should show it (both clients send it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"hotline-probe/{version('hotline-probe')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "hotline-probe"
