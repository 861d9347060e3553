"""The one interface both HTTP clients implement: a request out, an Answer back.

``kind: http`` (and ``proxy``) judges the Answer and never knows which transport carried
it. Each transport is a resource of the probe context (ProbeContext.resource): it owns
what it keeps across attempts (aiohttp's session, the plain client's prepared requests),
lets go of what it built from the config on a reload and closes with the context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from config.kinds.http import HttpCheckBase, HttpNode
from probes.base import Resource
from probes.http.common import Answer


class Transport(Resource, Protocol):
    async def exchange(
        self,
        check: HttpCheckBase,
        node: HttpNode,
        headers: Callable[[], dict[str, str]],
        marks: dict[str, float],
    ) -> Answer:
        """One request to ``node`` and its answer, the phases marked in ``marks``; a
        failure without an answer is a ProbeFailure.

        ``headers`` makes the request's headers (a signature's timestamp and nonce are
        fresh each time it is called); a transport that sends again a request it made
        before need not call it."""
        ...
