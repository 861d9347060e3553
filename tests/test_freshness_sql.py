"""The sql source against the real PostgreSQL and MariaDB on 127.0.0.1 (one table per
test, dropped after): NULL, strings, future and naive times, writes, slow statements and
bad credentials each end in a precise error type, never a crash."""

# ruff: noqa: S608 - statements are built from table names each test generates itself

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiomysql
import asyncpg
import pytest

from core.clock import FakeClock
from core.errors import ErrorType
from core.result import CheckResult, Status
from engine.runner import run_check
from probes.base import ProbeContext
from tests.ports import free_port
from tests.test_freshness import details_of, error_of, freshness

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}
MY = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": "test"}
# FakeClock's "now" is 2026-01-01T00:00:00Z; rows are dated around it.
FRESH, STALE, FUTURE = "2025-12-31 23:58:00", "2025-12-31 23:00:00", "2026-01-01 01:00:00"


@dataclass
class Database:
    driver: str  # postgres | mysql
    table: str
    admin: Any

    async def execute(self, statement: str) -> None:
        if self.driver == "postgres":
            await self.admin.execute(statement)
        else:
            async with self.admin.cursor() as cursor:
                await cursor.execute(statement)

    async def count(self) -> int:
        if self.driver == "postgres":
            return int(await self.admin.fetchval(f"SELECT count(*) FROM {self.table}"))
        async with self.admin.cursor() as cursor:
            await cursor.execute(f"SELECT count(*) FROM {self.table}")
            row = await cursor.fetchone()
            return int(row[0])

    def source(self, query: str, **extra: Any) -> str:
        where = PG if self.driver == "postgres" else MY
        source = {"type": "sql", "driver": self.driver, **where, "query": query} | extra
        return json.dumps(source)

    async def run(self, clock: FakeClock, query: str, **extra: Any) -> CheckResult:
        timeout = extra.pop("check_timeout", "5s")
        check = freshness(self.source(query, **extra), extra=f"    timeout: {timeout}")
        async with ProbeContext(clock=clock) as ctx:
            return await run_check(check, ctx)


@pytest.fixture(params=["postgres", "mysql"])
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """A uniquely named table of callbacks: received_at (with zone where the database has
    one), naive_at (without), note (text)."""
    table = f"hp_fresh_{uuid.uuid4().hex[:12]}"
    if request.param == "postgres":
        admin = await asyncpg.connect(**PG)
        await admin.execute(
            f"CREATE TABLE {table} (received_at timestamptz, naive_at timestamp, note text)"
        )
    else:
        admin = await aiomysql.connect(
            host="127.0.0.1", port=3306, user="root", password="", db="test", autocommit=True
        )
        async with admin.cursor() as cursor:
            # TIMESTAMP values are written and read in the session's zone: make it UTC.
            await cursor.execute("SET SESSION time_zone = '+00:00'")
            await cursor.execute(
                f"CREATE TABLE {table} (received_at TIMESTAMP(6) NULL, "
                "naive_at DATETIME(6) NULL, note VARCHAR(100))"
            )
    database = Database(request.param, table, admin)
    try:
        yield database
    finally:
        await database.execute(f"DROP TABLE IF EXISTS {table}")
        if request.param == "postgres":
            await admin.close()
        else:
            admin.close()


def newest(db: Database) -> str:
    return f"SELECT max(received_at) FROM {db.table}"


async def insert(db: Database, received_at: str) -> None:
    zone = "+00" if db.driver == "postgres" else ""
    await db.execute(f"INSERT INTO {db.table} (received_at) VALUES ('{received_at}{zone}')")


async def test_fresh_row_is_up(db: Database, fake_clock: FakeClock) -> None:
    """A callback two minutes old: up, with its time and age."""
    await insert(db, STALE)
    await insert(db, FRESH)
    result = await db.run(fake_clock, newest(db))
    assert result.status is Status.UP, error_of(result)
    assert details_of(result)["newest"] == "2025-12-31T23:58:00.000Z"
    assert details_of(result)["age_seconds"] == 120.0


async def test_stale_row_is_down(db: Database, fake_clock: FakeClock) -> None:
    """The newest callback an hour old, max_age 15m: stale."""
    await insert(db, STALE)
    result = await db.run(fake_clock, newest(db))
    assert error_of(result) == (
        ErrorType.STALE,
        "newest sign of life 2025-12-31T23:00:00.000Z is 1h old, max_age 15m",
    )


async def test_null_and_no_rows_are_unknown(db: Database, fake_clock: FakeClock) -> None:
    """An empty table (max() is NULL) and a query without rows: no_data, unknown."""
    null = await db.run(fake_clock, newest(db))
    assert null.status is Status.UNKNOWN
    assert error_of(null) == (
        ErrorType.NO_DATA,
        "the query returned NULL: no sign of life recorded (an empty table?)",
    )
    none = await db.run(fake_clock, f"SELECT received_at FROM {db.table} WHERE 1 = 0")
    assert none.status is Status.UNKNOWN
    assert error_of(none) == (
        ErrorType.NO_DATA,
        "the query returned no rows: no sign of life recorded",
    )


async def test_a_string_is_an_assertion(db: Database, fake_clock: FakeClock) -> None:
    """A column that is not a time: down with assertion, quoting what came back."""
    await db.execute(f"INSERT INTO {db.table} (note) VALUES ('processed')")
    result = await db.run(fake_clock, f"SELECT note FROM {db.table}")
    assert error_of(result) == (
        ErrorType.ASSERTION,
        "the query returned 'processed' is not an RFC 3339 timestamp or a unix time",
    )


async def test_a_future_timestamp_is_suspect(db: Database, fake_clock: FakeClock) -> None:
    """An hour ahead of our clock: future_timestamp, not a healthy link."""
    await insert(db, FUTURE)
    result = await db.run(fake_clock, newest(db))
    kind, message = error_of(result)
    assert kind is ErrorType.FUTURE_TIMESTAMP
    assert "is 1h ahead of this host's clock" in message


async def test_naive_times_are_read_in_the_source_zone(db: Database, fake_clock: FakeClock) -> None:
    """A column without a zone holding Shanghai time: right with timezone: Asia/Shanghai,
    eight hours in the future when read as the default UTC."""
    await db.execute(f"INSERT INTO {db.table} (naive_at) VALUES ('2026-01-01 07:58:00')")
    query = f"SELECT max(naive_at) FROM {db.table}"
    local = await db.run(fake_clock, query, timezone="Asia/Shanghai")
    assert local.status is Status.UP, error_of(local)
    assert details_of(local)["newest"] == "2025-12-31T23:58:00.000Z"
    as_utc = await db.run(fake_clock, query)
    assert error_of(as_utc)[0] is ErrorType.FUTURE_TIMESTAMP


async def test_a_query_that_writes_is_refused(db: Database, fake_clock: FakeClock) -> None:
    """The transaction is read-only: the database refuses the write, nothing is written."""
    if db.driver == "postgres":
        query = f"INSERT INTO {db.table} (note) VALUES ('x') RETURNING received_at"
        words = "cannot execute INSERT in a read-only transaction"
    else:
        query = f"INSERT INTO {db.table} (note) VALUES ('x')"
        words = "READ ONLY transaction"
    result = await db.run(fake_clock, query)
    kind, message = error_of(result)
    assert kind is ErrorType.DATABASE
    assert words in message
    assert await db.count() == 0


async def test_a_slow_statement_is_cut_by_the_database(db: Database, fake_clock: FakeClock) -> None:
    """A statement past its time limit is a timeout, and the server stops it at once."""
    query = "SELECT pg_sleep(5)" if db.driver == "postgres" else "SELECT SLEEP(5)"
    started = time.monotonic()
    result = await db.run(fake_clock, query, check_timeout="1s")
    elapsed = time.monotonic() - started
    kind, message = error_of(result)
    assert kind is ErrorType.TIMEOUT
    assert "time limit" in message
    assert elapsed < 1.5


async def test_bad_credentials_never_show_the_password(db: Database, fake_clock: FakeClock) -> None:
    """A refused login is a database error whose message leaves the password out."""
    canary = "canary-db-pw-31c4"
    # PostgreSQL trusts loopback here, so a role that does not exist is what it refuses.
    user = "canary_nobody" if db.driver == "postgres" else "root"
    result = await db.run(fake_clock, newest(db), user=user, password=canary)
    kind, message = error_of(result)
    assert kind is ErrorType.DATABASE
    assert ("canary_nobody" in message) if db.driver == "postgres" else ("Access denied" in message)
    assert canary not in message
    assert canary not in json.dumps(details_of(result))


async def test_dsn_and_refused_port(db: Database, fake_clock: FakeClock) -> None:
    """A DSN works as well as the separate keys; a closed port is connection_refused."""
    await insert(db, FRESH)
    scheme, user = ("postgresql", "postgres") if db.driver == "postgres" else ("mysql", "root")
    source = {"type": "sql", "driver": db.driver, "query": newest(db)}
    dsn = f"{scheme}://{user}@127.0.0.1:{PG['port'] if db.driver == 'postgres' else 3306}/test"
    check = freshness(json.dumps(source | {"dsn": dsn}))
    async with ProbeContext(clock=fake_clock) as ctx:
        assert (await run_check(check, ctx)).status is Status.UP
        closed = free_port()
        refused = freshness(
            json.dumps(
                source
                | {"dsn": dsn.replace(":5432/", f":{closed}/").replace(":3306/", f":{closed}/")}
            )
        )
        result = await run_check(refused, ctx)
    assert error_of(result)[0] is ErrorType.CONNECTION_REFUSED
    assert f"127.0.0.1:{closed}" in error_of(result)[1]
