"""``kind: freshness``: a dead man's switch, healthy while the newest sign of life is young.

The sign of life comes from the check's ``source``: a pushed heartbeat, a JSON field of
a URL, a database query (probes/freshness_sql.py) or a file. Each reader returns the
newest time it found or raises a classified failure; ``judge`` then weighs its age
against ``max_age`` on the injected clock.

Nothing to read at all (no heartbeat yet, an empty table, a null field, a missing file)
is ``no_data``: the check cannot tell whether the link works, so it is unknown rather
than up or down. Once the daemon has waited longer than ``max_age`` for a first
heartbeat, the silence itself is the answer: ``stale``.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from config.kinds.freshness import (
    DEFAULT_LINE_PATTERN,
    FileSource,
    FreshnessCheck,
    HttpSource,
    SourceNode,
)
from core.clock import rfc3339
from core.errors import ErrorType, ProbeFailure
from probes import freshness_sql
from probes.base import Observation, ProbeContext, attempt_marks
from probes.http.aiohttp_client import client_failure, read_body, session
from probes.http.common import json_document, lookup, short
from probes.timestamps import NotATimestamp, to_utc

Reading = tuple[datetime, dict[str, Any]]
"""The newest sign of life, and facts seen on the way (an HTTP status)."""
Reader = Callable[[FreshnessCheck, ProbeContext], Awaitable[Reading]]


async def probe(check: FreshnessCheck, node: SourceNode, ctx: ProbeContext) -> Observation:
    newest, seen = await _READERS[check.source.type](check, ctx)
    return judge(check, newest, ctx.clock.now(), seen)


def judge(
    check: FreshnessCheck, newest: datetime, now: datetime, seen: dict[str, Any] | None = None
) -> Observation:
    age = (now - newest).total_seconds()
    details = (seen or {}) | {
        "newest": rfc3339(newest),
        "age_seconds": round(age, 3),
        "max_age_seconds": check.max_age,
    }
    if -age > check.max_future:
        raise ProbeFailure(
            ErrorType.FUTURE_TIMESTAMP,
            f"newest sign of life {rfc3339(newest)} is {span(-age)} ahead of this host's "
            f"clock (max_future {span(check.max_future)}): a clock or time-zone error "
            "at the source",
            details=details,
        )
    if age > check.max_age:
        raise ProbeFailure(
            ErrorType.STALE,
            f"newest sign of life {rfc3339(newest)} is {span(age)} old, "
            f"max_age {span(check.max_age)}",
            details=details,
        )
    return Observation(details=details)


def span(seconds: float) -> str:
    """A person's reading of a duration: ``45s``, ``20m 5s``, ``3h 2m``, ``2d 4h``."""
    whole = max(round(seconds), 0)
    if seconds < 10 and whole < 10:
        return f"{max(seconds, 0):.1f}s"
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            rest = (whole % size) // sub_size
            return f"{whole // size}{unit}" + (f" {rest}{sub}" if rest else "")
    minutes, rest = divmod(whole, 60)
    if minutes:
        return f"{minutes}m" + (f" {rest}s" if rest else "")
    return f"{rest}s"


# --- push ----------------------------------------------------------------------------


async def _read_push(check: FreshnessCheck, ctx: ProbeContext) -> Reading:
    heartbeat = await ctx.heartbeats.get(check.name)
    if heartbeat.last is not None:
        return heartbeat.last, {}
    since = heartbeat.watching_since
    if since is not None and (ctx.clock.now() - since).total_seconds() > check.max_age:
        waited = (ctx.clock.now() - since).total_seconds()
        raise ProbeFailure(
            ErrorType.STALE,
            f"no heartbeat since the watch began at {rfc3339(since)}, {span(waited)} ago "
            f"(max_age {span(check.max_age)})",
            details={"watching_since": rfc3339(since), "max_age_seconds": check.max_age},
        )
    problem = ctx.heartbeats.problem
    raise ProbeFailure(
        ErrorType.NO_DATA,
        f"no heartbeat received yet (POST /heartbeat/{check.name})"
        + (f"; {problem}" if problem else ""),
    )


# --- http ----------------------------------------------------------------------------


async def _read_http(check: FreshnessCheck, ctx: ProbeContext) -> Reading:
    source = check.source
    assert isinstance(source, HttpSource)
    marks = attempt_marks()
    https = source.url.startswith("https:")
    try:
        async with session(ctx).get(
            source.url,
            headers={"Accept-Encoding": "identity"}
            | {name: value.get_secret_value() for name, value in source.headers.items()},
            ssl=ctx.ssl_context(check.tls) if https else False,
            server_hostname=check.tls.server_name if https and check.tls else None,
            allow_redirects=False,
            trace_request_ctx={"clock": ctx.clock, "marks": marks},
        ) as response:
            marks["first_byte"] = ctx.clock.monotonic()
            body = await read_body(response, source.max_body_bytes)
            marks["end"] = ctx.clock.monotonic()
            status = response.status
    except ProbeFailure:
        raise
    except (aiohttp.ClientError, ssl.SSLError) as exc:
        raise client_failure(exc) from None
    details: dict[str, Any] = {"status_code": status}
    if not 200 <= status < 300:
        raise ProbeFailure(ErrorType.HTTP_STATUS, f"status {status}, expected 2xx", details=details)
    document = json_document(body.decode("utf-8", errors="replace"), details)
    found, value = lookup(document, source.field)
    if not found:
        raise ProbeFailure(
            ErrorType.ASSERTION, f"JSON field {source.field} is missing", details=details
        )
    if value is None:
        raise ProbeFailure(
            ErrorType.NO_DATA,
            f"JSON field {source.field} is null: no sign of life recorded",
            details=details,
        )
    try:
        return to_utc(value, ZoneInfo(source.timezone)), details
    except NotATimestamp as exc:
        raise ProbeFailure(
            ErrorType.ASSERTION,
            f"JSON field {source.field} is {short(value)}: {exc}",
            details=details,
        ) from None


# --- file ----------------------------------------------------------------------------

_TAIL = 64 * 1024  # the most read from the end of the file: a line longer is refused


async def _read_file(check: FreshnessCheck, ctx: ProbeContext) -> Reading:
    source = check.source
    assert isinstance(source, FileSource)
    # A stat or a read can block on a network file system: off the event loop.
    try:
        if source.read == "mtime":
            mtime = await asyncio.to_thread(os.stat, source.path)
            return datetime.fromtimestamp(mtime.st_mtime, UTC), {}
        line = await asyncio.to_thread(_last_line, str(source.path))
    except FileNotFoundError:
        raise ProbeFailure(
            ErrorType.NO_DATA, f"{source.path} does not exist: no sign of life written yet"
        ) from None
    except OSError as exc:
        raise ProbeFailure(
            ErrorType.NO_DATA, f"cannot read {source.path}: {exc.strerror or exc}"
        ) from None
    if line is None:
        raise ProbeFailure(
            ErrorType.NO_DATA, f"{source.path} is empty: no sign of life written yet"
        )
    pattern = source.pattern or _DEFAULT_LINE
    shown = line if len(line) <= 80 else line[:77] + "..."
    match = pattern.search(line)
    if match is None:
        raise ProbeFailure(
            ErrorType.ASSERTION, f"last line of {source.path} has no timestamp: '{shown}'"
        )
    text = match.group(1) if pattern.groups else match.group(0)
    try:
        return to_utc(text, ZoneInfo(source.timezone)), {}
    except NotATimestamp as exc:
        raise ProbeFailure(
            ErrorType.ASSERTION, f"last line of {source.path}: {exc}: '{shown}'"
        ) from None


_DEFAULT_LINE = re.compile(DEFAULT_LINE_PATTERN)


def _last_line(path: str) -> str | None:
    """The last non-empty line, reading at most the file's last 64 KiB; None if empty."""
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        start = max(0, size - _TAIL)
        file.seek(start)
        tail = file.read(_TAIL).rstrip(b"\r\n \t")
    if not tail:
        return None
    cut = tail.rfind(b"\n")
    if cut < 0 and start > 0:
        raise ProbeFailure(ErrorType.ASSERTION, f"the last line of {path} is longer than 64 KiB")
    return tail[cut + 1 :].decode("utf-8", errors="replace").strip()


_READERS: dict[str, Reader] = {
    "push": _read_push,
    "http": _read_http,
    "sql": freshness_sql.read,
    "file": _read_file,
}
