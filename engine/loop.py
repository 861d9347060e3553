"""Running the top-level coroutine of `probe` and `probed`."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """On uvloop where installed (about a third faster on many concurrent probes).

    The program runs outside the ``except``: inside it, Python would chain the
    ImportError as ``__context__`` into every exception the program raises.
    """
    try:
        import uvloop
    except ImportError:
        installed = False
    else:
        installed = True
    if not installed:
        return asyncio.run(coro)
    return uvloop.run(coro)


def settle_heap() -> None:
    """Move what start-up or a reload built (modules, config, state, metrics) out of the
    cyclic collector's sight; for the daemon process alone.

    Those objects live until the next reload, and most are in the oldest generation:
    every full collection walked all of them again (with 10,000 checks, most of the
    daemon's CPU beyond the probes themselves). Frozen objects are still freed by
    reference counting when a reload lets them go; a reload unfreezes first, so that the
    cycles the old generation left (an old web app, runs that were in flight) are
    collected before the new heap is frozen. That full collection takes a moment at
    10,000 checks, once per start or reload.
    """
    gc.unfreeze()  # the previous generation's cycles (an old web app) may go now
    gc.collect()
    gc.freeze()
