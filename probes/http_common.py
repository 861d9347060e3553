"""HTTP pieces shared by the kinds that read an HTTP answer (http, proxy, freshness's
http source): the capped body, a JSON document and its fields, and what a failed
request means."""

from __future__ import annotations

import json
import ssl
import zlib
from typing import Any

import aiohttp

from probes.base import ErrorType, ProbeFailure
from probes.net import RESET, os_failure
from probes.tls_common import ssl_failure

_CHUNK = 64 * 1024
_COMPRESSED = frozenset({"gzip", "x-gzip", "deflate"})


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
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
