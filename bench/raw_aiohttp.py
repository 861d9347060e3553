"""The baseline: N GETs with plain aiohttp on stock asyncio, a new connection each.

Run as its own process so that interpreter start-up and imports count, as they do for
``probe``. Usage: ``python bench/raw_aiohttp.py PORT [--requests 500] [--concurrency 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp


async def fetch_all(port: int, requests: int, concurrency: int) -> int:
    """Return how many requests did not answer 200."""
    slots = asyncio.Semaphore(concurrency)
    # force_close: one TCP connection per request, like the probe; limit=0 leaves the
    # bound to the semaphore, as the probe's runner does.
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> bool:
            async with slots, session.get(f"http://127.0.0.1:{port}/c{i}") as response:
                await response.read()
                return response.status == 200

        results = await asyncio.gather(*(one(i) for i in range(requests)))
    return sum(not ok for ok in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    failed = asyncio.run(fetch_all(args.port, args.requests, args.concurrency))
    if failed:
        print(f"raw_aiohttp: {failed} of {args.requests} requests failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
