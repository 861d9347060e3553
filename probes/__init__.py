"""The probe registry: ``kind`` in the config -> the function that runs one attempt."""

from __future__ import annotations

from typing import Any

from probes import freshness, http, proxy, tcp, tls
from probes.base import Observation, Probe, ProbeContext


# dnspython and icmplib are imported with the first check of their kind: a config
# without such a check does not pay for them at start-up (dnspython alone costs 30 ms).
async def _dns(check: Any, node: Any, ctx: ProbeContext) -> Observation:
    from probes import dns

    return await dns.probe(check, node, ctx)


async def _icmp(check: Any, node: Any, ctx: ProbeContext) -> Observation:
    from probes import icmp

    return await icmp.probe(check, node, ctx)


PROBES: dict[str, Probe] = {
    "http": http.probe,
    "proxy": proxy.probe,
    "tcp": tcp.probe,
    "tls": tls.probe,
    "freshness": freshness.probe,
    "dns": _dns,
    "icmp": _icmp,
}
