"""The ``sql`` source of a freshness check: one read-only statement, bounded in time.

PostgreSQL through asyncpg, MySQL and MariaDB through aiomysql. The statement runs in a
read-only transaction (a query that writes is refused by the server, not trusted to the
config) under a server-side statement timeout a little shorter than the attempt's, so a
slow query is cancelled by the database rather than left running when we give up.
The drivers are imported on first use: ``probe --all`` without sql sources never pays.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from config.kinds.freshness import SqlSource
from core.errors import ErrorType, ProbeFailure, one_line
from probes.base import ProbeContext, attempt_marks
from probes.net import os_failure
from probes.resolve import invalid_name
from probes.timestamps import NotATimestamp, to_utc

if TYPE_CHECKING:
    import ssl

    from config.kinds.freshness import FreshnessCheck

# The statement gets this share of what is left of the attempt; the rest is for the
# round trip and closing, so that the database, not the runner, reports a slow query.
_STATEMENT_SHARE = 0.8
_MIN_STATEMENT = 0.05
_NO_ROWS = object()


async def read(check: FreshnessCheck, ctx: ProbeContext) -> tuple[datetime, dict[str, Any]]:
    source = check.source
    assert isinstance(source, SqlSource)
    marks = attempt_marks()
    started = ctx.clock.monotonic()

    def statement_budget() -> float:
        left = check.timeout - (ctx.clock.monotonic() - started)
        return max(left * _STATEMENT_SHARE, _MIN_STATEMENT)

    tls = ctx.ssl_context(check.tls) if check.tls is not None else None
    where = source.target(check.name)
    marks["connect_start"] = started
    try:
        if source.driver == "postgres":
            value = await _postgres(check, source, tls, statement_budget, ctx)
        else:
            value = await _mysql(check, source, tls, statement_budget, ctx)
    except ProbeFailure:
        raise
    except Exception as exc:
        raise _failure(exc, where) from None
    if value is _NO_ROWS:
        raise ProbeFailure(
            ErrorType.NO_DATA, "the query returned no rows: no sign of life recorded"
        )
    if value is None:
        raise ProbeFailure(
            ErrorType.NO_DATA, "the query returned NULL: no sign of life recorded (an empty table?)"
        )
    try:
        return to_utc(value, ZoneInfo(source.timezone)), {}
    except NotATimestamp as exc:
        raise ProbeFailure(ErrorType.ASSERTION, f"the query returned {exc}") from None


def _first_value(row: Any) -> Any:
    if row is None:
        return _NO_ROWS
    if len(row) == 0:
        raise ProbeFailure(ErrorType.ASSERTION, "the query returned a row without columns")
    return row[0]


# --- PostgreSQL ----------------------------------------------------------------------


async def _postgres(
    check: FreshnessCheck,
    source: SqlSource,
    tls: ssl.SSLContext | None,
    statement_budget: Callable[[], float],
    ctx: ProbeContext,
) -> Any:
    import asyncpg

    marks = attempt_marks()
    options: dict[str, Any]
    if source.dsn is not None:
        options = {"dsn": source.dsn.get_secret_value()}
    else:
        options = {
            "host": source.host,
            "port": source.port or 5432,
            "user": source.user,
            "password": source.password.get_secret_value() if source.password else None,
            "database": source.database,
        }
    connection = await asyncpg.connect(
        **options,
        ssl=tls,
        timeout=check.timeout,
        statement_cache_size=0,  # one statement per connection: nothing to reuse
        server_settings={"application_name": "hotline-probe"},
    )
    marks["connect_end"] = ctx.clock.monotonic()
    try:
        async with connection.transaction(readonly=True):
            milliseconds = max(int(statement_budget() * 1000), 1)
            await connection.execute(f"SET LOCAL statement_timeout = {milliseconds}")
            marks["sent"] = ctx.clock.monotonic()
            row = await connection.fetchrow(source.query)
            marks["end"] = ctx.clock.monotonic()
    except BaseException:
        connection.terminate()  # cut short (a failure, a timeout): no goodbye to wait for
        raise
    await connection.close(timeout=1.0)
    return _first_value(row)


# --- MySQL / MariaDB -----------------------------------------------------------------


async def _mysql(
    check: FreshnessCheck,
    source: SqlSource,
    tls: ssl.SSLContext | None,
    statement_budget: Callable[[], float],
    ctx: ProbeContext,
) -> Any:
    import aiomysql

    marks = attempt_marks()
    if source.dsn is not None:
        parts = urlsplit(source.dsn.get_secret_value())
        host, port = parts.hostname, parts.port
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else ""
        database = parts.path.lstrip("/") or None
    else:
        host, port, user, database = source.host, source.port, source.user, source.database
        password = source.password.get_secret_value() if source.password else ""
    connection = await aiomysql.connect(
        host=host,
        port=port or 3306,
        user=user,
        password=password,
        db=database,
        connect_timeout=check.timeout,
        ssl=tls,
        autocommit=False,
        program_name="hotline-probe",
    )
    marks["connect_end"] = ctx.clock.monotonic()
    try:
        async with connection.cursor() as cursor:
            # Naive TIMESTAMP values come back in the session's zone: make it the zone
            # the source's naive values are read in, so DATETIME and TIMESTAMP agree.
            await cursor.execute("SET SESSION time_zone = %s", (_offset(source.timezone),))
            seconds = statement_budget()
            if "mariadb" in connection.get_server_info().lower():
                await cursor.execute(f"SET SESSION max_statement_time = {seconds:.3f}")
            else:  # MySQL's own knob, in milliseconds (it bounds SELECTs only)
                await cursor.execute(f"SET SESSION max_execution_time = {int(seconds * 1000)}")
            await cursor.execute("SET SESSION TRANSACTION READ ONLY")
            await cursor.execute("START TRANSACTION READ ONLY")
            marks["sent"] = ctx.clock.monotonic()
            await cursor.execute(source.query)
            row = await cursor.fetchone()
            marks["end"] = ctx.clock.monotonic()
            await connection.rollback()
    finally:
        connection.close()
    return _first_value(row)


def _offset(zone: str) -> str:
    """The zone's UTC offset now, as MySQL's ``+08:00`` (named zones need tz tables)."""
    offset = datetime.now(UTC).astimezone(ZoneInfo(zone)).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# --- failures ------------------------------------------------------------------------

# MySQL / MariaDB error codes
_MYSQL_TIMEOUTS = {1969, 3024}  # max_statement_time (MariaDB), max_execution_time (MySQL)
_MYSQL_CANNOT_CONNECT = {2003}
_MYSQL_LOST = {2006, 2013}


def _failure(exc: Exception, where: str) -> ProbeFailure:
    if isinstance(exc, UnicodeError) and "idna" in str(exc):  # the driver's own lookup
        exc = invalid_name(exc)
    if isinstance(exc, socket.gaierror):
        host = urlsplit(where).hostname
        return ProbeFailure(ErrorType.DNS, f"cannot resolve {host}: {exc.strerror}")
    if isinstance(exc, TimeoutError):  # the driver's own connect timeout
        return ProbeFailure(ErrorType.TIMEOUT, f"no connection to {where} within the timeout")
    if isinstance(exc, OSError):
        return os_failure(exc, where.split("://", 1)[-1].split("/", 1)[0])
    postgres = _postgres_failure(exc, where)
    if postgres is not None:
        return postgres
    mysql = _mysql_failure(exc, where)
    if mysql is not None:
        return mysql
    return ProbeFailure(ErrorType.DATABASE, f"{type(exc).__name__}: {exc}")


def _postgres_failure(exc: Exception, where: str) -> ProbeFailure | None:
    if type(exc).__module__.split(".")[0] != "asyncpg":
        return None
    import asyncpg

    if isinstance(exc, asyncpg.QueryCanceledError):
        return ProbeFailure(ErrorType.TIMEOUT, f"the statement exceeded its time limit: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        return ProbeFailure(
            ErrorType.DATABASE, f"{where} refused: {one_line(str(exc))} (SQLSTATE {exc.sqlstate})"
        )
    if isinstance(exc, asyncpg.ConnectionDoesNotExistError):
        return ProbeFailure(ErrorType.CONNECTION_RESET, f"{where} closed the connection")
    return ProbeFailure(ErrorType.PROTOCOL, f"{where}: {type(exc).__name__}: {exc}")


def _mysql_failure(exc: Exception, where: str) -> ProbeFailure | None:
    if type(exc).__module__.split(".")[0] != "pymysql":
        return None
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = one_line(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
    if code in _MYSQL_TIMEOUTS:
        return ProbeFailure(ErrorType.TIMEOUT, f"the statement exceeded its time limit: {text}")
    if code in _MYSQL_CANNOT_CONNECT:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError):
            return _failure(cause, where)
        return ProbeFailure(ErrorType.CONNECTION, f"cannot connect to {where}: {text}")
    if code in _MYSQL_LOST:
        return ProbeFailure(ErrorType.CONNECTION_RESET, f"{where} closed the connection: {text}")
    return ProbeFailure(ErrorType.DATABASE, f"{where} refused: {text} (error {code})")
