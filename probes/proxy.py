"""``kind: proxy``: watch a forward proxy by reaching a target through it.

The request, its judgement and the proxy handling are http's (probes/http/, with
probes/via_proxy.py): a proxy check is an http check whose ``proxy:`` is required and is
the point of the check. Its failures tell the proxy's (error.type ``proxy``) from the
target's, so a target chosen for being always up makes the check a test of the proxy.
"""

from __future__ import annotations

from config.kinds.http import HttpNode
from config.kinds.proxy import ProxyCheck
from probes import http
from probes.base import Observation, ProbeContext


def prepare(checks: list[ProxyCheck]) -> None:
    http.prepare(checks)


async def probe(check: ProxyCheck, node: HttpNode, ctx: ProbeContext) -> Observation:
    return await http.probe(check, node, ctx)
