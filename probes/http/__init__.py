"""``kind: http``: one request to one node, judged against the check's ``expect:``.

Two transports carry the request, behind one interface (transport.py). Plain
``http://`` straight to the node, the bulk of the probes, goes through plain.py: one
HTTP/1.1 exchange parsed by httptools, at a quarter of aiohttp's CPU per request. TLS, a
forward proxy, redirects and HEAD go through aiohttp (aiohttp_client.py), and so does
every request of a check that says ``client: aiohttp`` (a server the plain client reads
differently). Both send the same headers and hand back the same Answer, which is judged
in expect.py, so a check reads the same whichever carried it.
"""

from __future__ import annotations

from collections.abc import Iterable

from config.kinds.http import HttpCheckBase, HttpNode
from probes.base import Observation, ProbeContext, attempt_marks
from probes.http.common import user_agent
from probes.http.expect import judge
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
    judge(check.expect, answer, elapsed, details, answered)
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
