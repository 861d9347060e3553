"""Name lookups that cannot starve each other or hold the process at exit.

``getaddrinfo`` blocks a thread until the resolver answers, which for a dead DNS server
is the resolver's full timeout. On the event loop's shared pool (four threads under
uvloop) a handful of such lookups would make every other check wait, and time out, for
a fault that is not theirs; and ``asyncio.run`` would wait for the stuck threads before
exiting. Each lookup here gets its own daemon thread, at most ``limit`` at once; a probe
that times out stops waiting, and the thread finishes or dies with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

AddrInfo = list[tuple[Any, ...]]


class Resolver:
    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._slots: asyncio.Semaphore | None = None  # made on first use, in the loop

    async def getaddrinfo(
        self,
        host: str,
        port: int,
        *,
        family: int = 0,
        type: int = socket.SOCK_STREAM,
        flags: int = 0,
    ) -> AddrInfo:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        async with self._slots:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[AddrInfo] = loop.create_future()

            def lookup() -> None:
                try:
                    infos = socket.getaddrinfo(host, port, family, type, 0, flags)
                except UnicodeError as exc:
                    _deliver(loop, future, None, invalid_name(exc))
                except BaseException as exc:  # handed to the waiting probe, not lost
                    _deliver(loop, future, None, exc)
                else:
                    _deliver(loop, future, infos, None)

            threading.Thread(target=lookup, name=f"dns {host}", daemon=True).start()
            return await future


def invalid_name(exc: UnicodeError) -> socket.gaierror:
    """getaddrinfo's UnicodeError for a name IDNA cannot encode (a label longer than 63
    characters, a character no host name may hold) as what it is to every caller: a
    name that does not resolve."""
    reason = str(exc).rpartition("UnicodeError: ")[2].removesuffix(")") or type(exc).__name__
    return socket.gaierror(socket.EAI_NONAME, f"not a valid host name ({reason})")


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[AddrInfo],
    infos: AddrInfo | None,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():  # the probe gave up waiting (timeout)
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(infos or [])

    with contextlib.suppress(RuntimeError):  # the loop closed while the lookup ran
        loop.call_soon_threadsafe(settle)
