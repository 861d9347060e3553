"""/status written in pieces: the same bytes as the whole document, scrubbed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from events.log import Pipeline
from tests.endpoint import serving
from web.app import build_app
from web.metrics import Metrics
from web.stream import CHUNK

CANARY = "canary-status-5150"


def entries(count: int) -> Iterator[dict[str, Any]]:
    for i in range(count):
        yield {
            "name": f"check-{i}",
            "title": "110 接处警平台对接",
            "status": "up",
            "nodes": [{"name": "n", "error": {"message": f"401 for token {CANARY}"}}],
        }


@asynccontextmanager
async def status_url(status: Callable[[], dict[str, Any]]) -> AsyncIterator[str]:
    """The endpoint on a port of its own; yields the /status URL."""
    app = build_app(
        metrics=Metrics(version="0"),
        status=status,
        healthy=lambda: (True, "ok"),
        scrub=lambda text: text.replace(CANARY, "REDACTED"),
        emit=Pipeline().emit,
    )
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}/status"


async def test_status_streams_the_same_document_scrubbed() -> None:
    count = 3000  # several hundred KB: many pieces
    head = {"status": "up", "counts": {"up": count, "down": 0}}
    pieces: list[bytes] = []
    async with (
        status_url(lambda: head | {"checks": entries(count)}) as url,
        aiohttp.ClientSession() as session,
        session.get(url) as response,
    ):
        assert response.headers["Content-Type"].startswith("application/json")
        async for piece in response.content.iter_any():
            pieces.append(piece)
    body = b"".join(pieces)
    whole = head | {"checks": list(entries(count))}
    expected = json.dumps(whole, ensure_ascii=False).replace(CANARY, "REDACTED")
    assert body.decode() == expected
    assert CANARY.encode() not in body
    assert len(body) > 10 * CHUNK
    assert json.loads(body)["checks"][-1]["name"] == f"check-{count - 1}"


async def test_status_with_no_checks_is_still_json() -> None:
    async with (
        status_url(lambda: {"status": "up", "counts": {}, "checks": iter(())}) as url,
        aiohttp.ClientSession() as session,
        session.get(url) as response,
    ):
        document = await response.json()
    assert document == {"status": "up", "counts": {}, "checks": []}
