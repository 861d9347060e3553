"""A loopback HTTP server for the benchmarks: fixed answer, one request per connection.

It must never be the bottleneck, so it skips HTTP parsing beyond finding the end of the
request head, answers every request with the same bytes and closes. It binds 127.0.0.1
only, on a port the kernel picks, and prints that port as the first line of stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import cast

BODY = b"ok\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"Connection: close\r\n"
    b"\r\n" + BODY
)
_HEAD_END = b"\r\n\r\n"


class _OneShot(asyncio.Protocol):
    """Answers once the request head is complete; GETs carry no body worth waiting for."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        # Heads are almost always one segment on loopback; buffering covers the rest.
        self._buffer += data
        if _HEAD_END in self._buffer and self._transport is not None:
            self._transport.write(RESPONSE)
            self._transport.close()  # flushes the write, then closes
            self._transport = None


async def serve() -> None:
    loop = asyncio.get_running_loop()
    # A deep backlog: the clients open 200 connections at once.
    server = await loop.create_server(_OneShot, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    try:
        import uvloop
    except ImportError:  # stock asyncio still keeps up, only with less headroom
        asyncio.run(serve())
    else:
        uvloop.run(serve())
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
