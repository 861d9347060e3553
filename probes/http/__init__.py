"""``kind: http``: one request to one node, judged against the check's ``expect:``.

Two transports carry the request, behind one interface (transport.py). Plain
``http://`` straight to the node, the bulk of the probes, goes through plain.py: one
HTTP/1.1 exchange parsed by httptools, at a quarter of aiohttp's CPU per request. TLS, a
forward proxy, redirects and HEAD go through aiohttp (aiohttp_client.py), and so does
every request of a check that says ``client: aiohttp`` (a server the plain client reads
differently). Both send the same headers and hand back the same Answer, which is judged
here, so a check reads the same whichever carried it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from config.kinds.http import HttpCheckBase, HttpExpect, HttpNode
from core.errors import ErrorType, ProbeFailure
from probes.base import Observation, ProbeContext, attempt_marks
from probes.http.common import json_document, lookup, short, user_agent
from probes.http.plain import PlainTransport, suits
from probes.http.transport import Transport
from probes.signing import signature_headers


def prepare(checks: Iterable[HttpCheckBase]) -> None:
    """Import aiohttp's client now if any request will need it (probes.PROBES.prepare)."""
    if any(not _plain(check, node) for check in checks for node in check.nodes):
        from probes.http import aiohttp_client  # noqa: F401


async def probe(check: HttpCheckBase, node: HttpNode, ctx: ProbeContext) -> Observation:
    """One request; also kind proxy's, which is an http check whose proxy is the point."""
    marks = attempt_marks()
    marks["start"] = ctx.clock.monotonic()
    answer = await transport(check, node, ctx).exchange(
        check, node, lambda: _headers(check, node, ctx), marks
    )

    details = answer.details | {"status_code": answer.status, "body_bytes": len(answer.body)}
    if answer.version is not None:
        details["http_version"] = answer.version
    answered = ""
    proxy = check.proxy
    if proxy is not None:
        details["proxy"] = proxy.address
        if not node.url.startswith("https:"):
            # An http:// answer through a proxy may be the proxy's own error page (one
            # that cannot reach the target): the message shows both rather than guessing.
            reason = answer.reason
            answered = (f" ({reason})" if reason else "") + f" through proxy {proxy.address}"
    elapsed = marks["end"] - marks["start"]
    _judge(check.expect, answer.status, answer.body, elapsed, details, answered)
    return Observation(details=details, warnings=answer.warnings)


def transport(check: HttpCheckBase, node: HttpNode, ctx: ProbeContext) -> Transport:
    """The plain transport where it carries the request exactly as aiohttp would, unless
    the check says ``client: aiohttp``."""
    if _plain(check, node):
        return ctx.resource(PlainTransport)
    # aiohttp: imported with the first check needing it (a fifth of a second)
    from probes.http.aiohttp_client import AiohttpTransport

    return ctx.resource(AiohttpTransport)


def _plain(check: HttpCheckBase, node: HttpNode) -> bool:
    return check.client == "auto" and suits(check, node)


def _headers(check: HttpCheckBase, node: HttpNode, ctx: ProbeContext) -> dict[str, str]:
    headers = {name: value.get_secret_value() for name, value in check.headers.items()}
    if not any(name.lower() == "accept-encoding" for name in headers):
        # The body cap counts bytes after decompression (see read_body); asking for an
        # uncompressed answer keeps the two the same for well-behaved servers.
        headers["Accept-Encoding"] = "identity"
    # Both clients send exactly these headers (aiohttp adds its own Accept otherwise).
    given = {name.lower() for name in headers}
    if "user-agent" not in given:
        headers["User-Agent"] = user_agent()
    if "accept" not in given:
        headers["Accept"] = "*/*"
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
