"""``kind: tls``: a handshake with hostname check, judged on certificate expiry."""

from __future__ import annotations

from config.checks import AddressNode
from config.kinds.tls import TlsCheck
from probes.base import Observation, ProbeContext
from probes.net import close, open_stream
from probes.tls_common import inspect_certificate


async def probe(check: TlsCheck, node: AddressNode, ctx: ProbeContext) -> Observation:
    server_name = (check.tls.server_name if check.tls else None) or node.host
    _, writer = await open_stream(
        node.host,
        node.port,
        ctx,
        tls=ctx.ssl_context(check.tls),
        server_name=server_name,
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        details, warnings = inspect_certificate(
            ssl_object.getpeercert(), check.tls, ctx.clock.now()
        )
        details |= {"tls_version": ssl_object.version(), "tls_cipher": ssl_object.cipher()[0]}
    finally:
        close(writer)
    return Observation(details=details, warnings=warnings)
