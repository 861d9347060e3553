"""Responses written out as they are made, in pieces, with the loop turning between.

/metrics and /status for 10,000 checks are megabytes of text: built whole, each held
its lines, its text and its bytes at once (tens of MB of peak memory per request), and
formatting it in one go made every run due meanwhile late.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable

from aiohttp import web

CHUNK = 16 * 1024  # about a millisecond of formatting between two turns of the loop


async def pieces(texts: Iterable[str], tail: bytes = b"") -> AsyncGenerator[bytes, None]:
    """``texts`` joined into pieces of about CHUNK bytes; ``tail`` ends the last one."""
    pending: list[str] = []
    size = 0
    for text in texts:
        pending.append(text)
        size += len(text)
        if size >= CHUNK:
            yield "".join(pending).encode()
            pending.clear()
            size = 0
            await asyncio.sleep(0)
    yield "".join(pending).encode() + tail


async def stream(
    request: web.Request, content_type: str, chunks: AsyncGenerator[bytes, None]
) -> web.StreamResponse:
    """Write ``chunks`` as the response (chunked transfer)."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        # The client hung up (a scraper's scrape_timeout, say): nothing to answer, and
        # no traceback from aiohttp's handler onto stderr, where the events go.
        pass
    return response
