"""kind: freshness: the keys as written, each source against a real peer or file, and the
age judged on a fake clock (no sleeps): fresh is up, old is stale, never is unknown."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from config import secret_values
from config.kinds.freshness import FreshnessCheck
from config.load import parse_config
from config.probe_config import ProbeConfig
from core.clock import FakeClock
from core.errors import ErrorType
from core.heartbeats import FILE_NAME, HeartbeatStore
from core.result import CheckResult, Status
from engine import report
from engine.runner import run_check
from probes.base import ProbeContext
from probes.timestamps import NotATimestamp, to_utc
from tests.ports import free_port
from web.app import bound_port, serve

TOKEN = "canary-push-token-5e1b"
NOW = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's start


def freshness(source: str, *, max_age: str = "15m", extra: str = "") -> FreshnessCheck:
    config = parse_config(f"""
checks:
  - name: province-callback
    title: 省民呼数据回传
    kind: freshness
    max_age: {max_age}
    retries: {{attempts: 1}}
    source: {source}
{extra}""")
    check = config.checks[0]
    assert isinstance(check, FreshnessCheck)
    return check


def error_of(result: CheckResult) -> tuple[ErrorType, str]:
    error = result.nodes[0].error
    assert error is not None, "expected the source node to fail"
    return error.type, error.message


def details_of(result: CheckResult) -> dict[str, Any]:
    attempt = result.nodes[0].last
    assert attempt is not None
    return dict(attempt.details)


# --- config --------------------------------------------------------------------------


def test_issue_keys_work_as_written() -> None:
    """`kind: freshness`, `max_age: 15m`, `source: {type: push, token: ...}` load; the
    check has one synthetic node named after its source, and the token is a secret."""
    config = parse_config(f"""
checks:
  - name: province-callback
    kind: freshness
    max_age: 15m
    source: {{type: push, token: {TOKEN}}}
""")
    check = config.checks[0]
    assert isinstance(check, FreshnessCheck)
    assert check.max_age == 900.0 and check.max_future == 60.0
    assert [(n.name, n.target) for n in check.nodes] == [
        ("push", "POST /heartbeat/province-callback")
    ]
    assert TOKEN in set(secret_values(config))
    for shown in (repr(config), config.model_dump_json()):
        assert TOKEN not in shown
    # A dump leaves the synthetic node out, so it validates again.
    assert ProbeConfig.model_validate(config.model_dump()).checks[0].nodes == check.nodes


@pytest.mark.parametrize(
    ("source", "node", "target"),
    [
        ('{type: http, url: "https://u:pw@r.invalid/status?token=x", field: a.b}', "http",
         "https://r.invalid/status?token=REDACTED"),
        ("{type: sql, driver: postgres, host: db.invalid, database: hotline, query: SELECT 1}",
         "sql", "postgres://db.invalid:5432/hotline"),
        ('{type: sql, driver: mysql, dsn: "mysql://u:canary-dsn-pw@db.invalid:3307/h", '
         "query: SELECT 1}", "sql", "mysql://db.invalid:3307/h"),
        ("{type: file, path: /var/spool/receiver/last, read: last_line}", "file",
         "/var/spool/receiver/last"),
    ],
)  # fmt: skip
def test_each_source_type_names_its_node_and_target(source: str, node: str, target: str) -> None:
    """The synthetic node is the source type; its target is printable, without secrets."""
    check = freshness(source)
    assert (check.nodes[0].name, check.nodes[0].target) == (node, target)


# --- timestamps ----------------------------------------------------------------------

SHANGHAI = __import__("zoneinfo").ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T08:00:00+08:00", NOW),
        ("2026-01-01T00:00:00Z", NOW),
        ("2026-01-01t00:00:00z", NOW),
        ("2026-01-01 08:00:00", NOW),  # naive: in the source's zone (Shanghai here)
        ("2026-01-01 08:00:00,250", NOW + timedelta(milliseconds=250)),
        (1767225600, NOW),
        (1767225600000, NOW),  # milliseconds
        ("1767225600.5", NOW + timedelta(milliseconds=500)),
        (datetime(2026, 1, 1, 8), NOW),  # a naive column value, also in the zone
    ],
)
def test_timestamps_are_read_as_utc(value: object, expected: datetime) -> None:
    """RFC 3339 text, naive times in the source's zone and unix s/ms all become UTC."""
    assert to_utc(value, SHANGHAI) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("yesterday", "not an RFC 3339 timestamp"),
        ("2026-01-01", "not an RFC 3339 timestamp"),
        (True, "a boolean"),
        ({"at": 1}, "a JSON object"),
        (float("nan"), "not a unix time"),
        (10**30, "out of range"),
        (10**400, "out of range for a unix time"),  # too large even for a float
        ("9" * 400, "out of range for a unix time"),
        ("0001-01-01T00:00:00+08:00", "out of range in UTC"),  # before year 1 in UTC
        (datetime.min, "out of range in UTC"),  # naive: in the zone, east of UTC
        (datetime.max.replace(tzinfo=__import__("zoneinfo").ZoneInfo("America/New_York")),
         "out of range in UTC"),
    ],
)  # fmt: skip
def test_values_that_are_not_timestamps(value: object, words: str) -> None:
    """Anything else is refused with a message that says what it is; so are times that
    exist in their zone but have no UTC datetime."""
    with pytest.raises(NotATimestamp, match=words):
        to_utc(value, SHANGHAI)


# --- push ----------------------------------------------------------------------------


async def push_run(clock: FakeClock, store: HeartbeatStore, *, max_age: str = "15m") -> CheckResult:
    check = freshness(f"{{type: push, token: {TOKEN}}}", max_age=max_age)
    async with ProbeContext(clock=clock, heartbeats=store) as ctx:
        return await run_check(check, ctx)


async def test_push_never_seen_is_unknown_then_up_then_stale(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    """No heartbeat yet: unknown (exit 3); one now: up with its age; 16 min of silence:
    down with stale (exit 2)."""
    store = HeartbeatStore(tmp_path, clock=fake_clock)
    never = await push_run(fake_clock, store)
    assert never.status is Status.UNKNOWN
    assert error_of(never) == (
        ErrorType.NO_DATA,
        "no heartbeat received yet (POST /heartbeat/province-callback)",
    )
    assert report.exit_code([never]) == report.UNKNOWN
    assert report.document([never])["counts"]["unknown"] == 1

    await store.record("province-callback")
    fake_clock.advance(60)
    fresh = await push_run(fake_clock, store)
    assert fresh.status is Status.UP
    assert details_of(fresh) == {
        "newest": "2026-01-01T00:00:00.000Z",
        "age_seconds": 60.0,
        "max_age_seconds": 900.0,
    }
    assert report.exit_code([fresh]) == report.OK

    fake_clock.advance(15 * 60)
    stale = await push_run(fake_clock, store)
    assert stale.status is Status.DOWN
    assert error_of(stale) == (
        ErrorType.STALE,
        "newest sign of life 2026-01-01T00:00:00.000Z is 16m old, max_age 15m",
    )
    assert len(stale.nodes[0].attempts) == 1  # stale is final: no retry can change it
    assert report.exit_code([stale]) == report.CRITICAL


async def test_push_silence_since_the_watch_began_is_stale(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    """A daemon that has waited longer than max_age for a first heartbeat calls it stale."""
    store = HeartbeatStore(tmp_path, clock=fake_clock)
    await store.watch(["province-callback"])
    fake_clock.advance(10 * 60)
    assert (await push_run(fake_clock, store)).status is Status.UNKNOWN
    fake_clock.advance(6 * 60)
    late = await push_run(fake_clock, store)
    assert error_of(late) == (
        ErrorType.STALE,
        "no heartbeat since the watch began at 2026-01-01T00:00:00.000Z, 16m ago (max_age 15m)",
    )


async def test_push_heartbeat_from_the_future_is_suspect(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    """A heartbeat dated beyond max_future ahead of our clock is down, not up."""
    store = HeartbeatStore(tmp_path, clock=fake_clock)
    await store.record("province-callback", at=NOW + timedelta(seconds=30))
    assert (await push_run(fake_clock, store)).status is Status.UP  # within the skew
    await store.record("province-callback", at=NOW + timedelta(hours=8))
    result = await push_run(fake_clock, store)
    kind, message = error_of(result)
    assert kind is ErrorType.FUTURE_TIMESTAMP
    assert "is 8h ahead of this host's clock (max_future 1m)" in message


async def test_heartbeats_survive_a_new_store_and_are_written_atomically(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    """What one process records, another reads from the state directory (a restart, or
    `probe --all` beside the daemon); no temporary file is left behind."""
    writer = HeartbeatStore(tmp_path, clock=fake_clock)
    await writer.watch(["province-callback", "other"])
    fake_clock.advance(5)
    await writer.record("province-callback")
    await writer.watch(["province-callback"])  # "other" was removed by a reload
    assert sorted(os.listdir(tmp_path)) == [FILE_NAME]
    reader = HeartbeatStore(tmp_path, clock=fake_clock)
    entry = await reader.get("province-callback")
    assert entry.last == NOW + timedelta(seconds=5)
    assert entry.watching_since == NOW
    assert (await reader.get("other")).last is None
    document = json.loads((tmp_path / FILE_NAME).read_text())
    assert set(document["checks"]) == {"province-callback"}


async def test_the_heartbeat_file_is_read_once_off_the_event_loop(
    fake_clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state directory may be on a slow disk: its file is read in a worker thread,
    once, not on the event loop that runs every other check."""
    import threading

    await HeartbeatStore(tmp_path, clock=fake_clock).record("province-callback")
    threads: list[threading.Thread] = []
    read = HeartbeatStore._read

    def spy(store: HeartbeatStore) -> Any:
        threads.append(threading.current_thread())
        return read(store)

    monkeypatch.setattr(HeartbeatStore, "_read", spy)
    result = await push_run(fake_clock, HeartbeatStore(tmp_path, clock=fake_clock))
    assert result.status is Status.UP
    (thread,) = threads
    assert thread is not threading.main_thread()


async def test_a_corrupt_heartbeat_file_is_no_data_with_the_reason(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    """A file that is not ours is ignored, and the probe says why it saw nothing."""
    (tmp_path / FILE_NAME).write_text("{not json")
    result = await push_run(fake_clock, HeartbeatStore(tmp_path, clock=fake_clock))
    assert result.status is Status.UNKNOWN
    assert error_of(result)[1].endswith(
        f"{tmp_path / FILE_NAME} is not a heartbeat file (it is ignored)"
    )


# --- file ----------------------------------------------------------------------------


async def file_run(clock: FakeClock, source: str, **opts: str) -> CheckResult:
    check = freshness(source, **opts)
    async with ProbeContext(clock=clock) as ctx:
        return await run_check(check, ctx)


async def test_file_mtime(fake_clock: FakeClock, tmp_path: Path) -> None:
    """The file's modification time is the sign of life."""
    marker = tmp_path / "last-callback"
    marker.touch()
    os.utime(marker, (NOW.timestamp() - 120, NOW.timestamp() - 120))
    result = await file_run(fake_clock, f"{{type: file, path: {marker}}}")
    assert result.status is Status.UP
    assert details_of(result)["age_seconds"] == 120.0
    os.utime(marker, (NOW.timestamp() - 3600, NOW.timestamp() - 3600))
    stale = await file_run(fake_clock, f"{{type: file, path: {marker}}}")
    assert error_of(stale)[0] is ErrorType.STALE


@pytest.mark.parametrize(
    ("content", "status", "kind", "words"),
    [
        (b"2025-12-31T23:50:00Z callback 1\n2025-12-31T23:59:00Z callback 2\n\n", Status.UP,
         None, ""),
        (b"old\n1767225540000 processed\n", Status.UP, None, ""),  # unix ms
        (b"2025-12-31 10:00:00 callback\n", Status.DOWN, ErrorType.STALE, "is 14h old"),
        (b"callback processed, no time\n", Status.DOWN, ErrorType.ASSERTION,
         "has no timestamp: 'callback processed, no time'"),
        (b"2025-13-45T99:00:00Z nonsense\n", Status.DOWN, ErrorType.ASSERTION,
         "is not an RFC 3339 timestamp"),
        (b"", Status.UNKNOWN, ErrorType.NO_DATA, "is empty: no sign of life written yet"),
        (b"x" * 70_000 + b"\n" + b"y" * 70_000, Status.DOWN, ErrorType.ASSERTION,
         "longer than 64 KiB"),
    ],
)  # fmt: skip
async def test_file_last_line(
    fake_clock: FakeClock,
    tmp_path: Path,
    content: bytes,
    status: Status,
    kind: ErrorType | None,
    words: str,
) -> None:
    """The last non-empty line's leading timestamp, read from the file's tail only."""
    log = tmp_path / "receiver.log"
    log.write_bytes(content)
    result = await file_run(fake_clock, f"{{type: file, path: {log}, read: last_line}}")
    assert result.status is status
    if kind is not None:
        assert error_of(result)[0] is kind
        assert words in error_of(result)[1]


async def test_file_last_line_with_pattern_and_zone(fake_clock: FakeClock, tmp_path: Path) -> None:
    """A pattern's first group is the timestamp; a naive one is read in the source's zone."""
    log = tmp_path / "receiver.log"
    log.write_text("INFO callback id=7 at=2026-01-01 07:58:00 ok\n")
    source = (
        f"{{type: file, path: {log}, read: last_line, "
        "pattern: 'at=(\\S+ \\S+)', timezone: Asia/Shanghai}"
    )
    result = await file_run(fake_clock, source)
    assert result.status is Status.UP
    assert details_of(result)["newest"] == "2025-12-31T23:58:00.000Z"


async def test_missing_file_is_no_data(fake_clock: FakeClock, tmp_path: Path) -> None:
    """Nothing written yet is unknown, not an outage."""
    result = await file_run(fake_clock, f"{{type: file, path: {tmp_path / 'absent'}}}")
    assert result.status is Status.UNKNOWN
    assert error_of(result) == (
        ErrorType.NO_DATA,
        f"{tmp_path / 'absent'} does not exist: no sign of life written yet",
    )


# --- http ----------------------------------------------------------------------------

Page = Callable[[], web.StreamResponse]


@pytest.fixture
async def status_page() -> AsyncIterator[tuple[str, dict[str, Page]]]:
    """A receiver's status page on 127.0.0.1:0 whose answer each test sets."""
    answer: dict[str, Page] = {"page": lambda: web.json_response({})}

    async def handle(request: web.Request) -> web.StreamResponse:
        return answer["page"]()

    app = web.Application()
    app.router.add_get("/status", handle)
    runner = await serve(app, "127.0.0.1:0")
    yield f"http://127.0.0.1:{bound_port(runner)}/status", answer
    await runner.cleanup()


@pytest.mark.parametrize(
    ("page", "status", "kind", "words"),
    [
        (lambda: web.json_response({"data": {"last_callback_at": "2025-12-31T23:55:00Z"}}),
         Status.UP, None, ""),
        (lambda: web.json_response({"data": {"last_callback_at": 1767225300}}), Status.UP,
         None, ""),
        (lambda: web.json_response({"data": {"last_callback_at": None}}), Status.UNKNOWN,
         ErrorType.NO_DATA, "JSON field data.last_callback_at is null"),
        (lambda: web.json_response({"data": {}}), Status.DOWN, ErrorType.ASSERTION,
         "JSON field data.last_callback_at is missing"),
        (lambda: web.json_response({"data": {"last_callback_at": "soon"}}), Status.DOWN,
         ErrorType.ASSERTION, "is \"soon\": 'soon' is not an RFC 3339 timestamp"),
        (lambda: web.json_response({"data": {"last_callback_at": "2025-12-31T20:00:00Z"}}),
         Status.DOWN, ErrorType.STALE, "is 4h old"),
        (lambda: web.Response(text="<html>maintenance</html>"), Status.DOWN,
         ErrorType.ASSERTION, "body is not JSON"),
        (lambda: web.Response(text="[" * 100_000), Status.DOWN, ErrorType.ASSERTION,
         "body is JSON nested too deeply to read"),
        (lambda: web.json_response({"data": {"last_callback_at": 10**400}}), Status.DOWN,
         ErrorType.ASSERTION, "is out of range for a unix time"),
        (lambda: web.json_response({"data": {"last_callback_at": "0001-01-01T00:00:00+08:00"}}),
         Status.DOWN, ErrorType.ASSERTION, "out of range in UTC"),
        (lambda: web.Response(status=503), Status.DOWN, ErrorType.HTTP_STATUS, "status 503"),
    ],
)  # fmt: skip
async def test_http_source(
    status_page: tuple[str, dict[str, Page]],
    fake_clock: FakeClock,
    page: Page,
    status: Status,
    kind: ErrorType | None,
    words: str,
) -> None:
    """A timestamp read from a JSON field of a URL: each bad answer gets its own type."""
    url, answer = status_page
    answer["page"] = page
    source = f'{{type: http, url: "{url}", field: data.last_callback_at}}'
    result = await file_run(fake_clock, source)
    assert result.status is status
    if kind is None:
        assert details_of(result)["status_code"] == 200
        assert details_of(result)["age_seconds"] == 300.0
    else:
        assert error_of(result)[0] is kind
        assert words in error_of(result)[1]


async def test_http_source_refused(fake_clock: FakeClock) -> None:
    """Nothing listening is a connection failure, as for an http check."""
    source = f'{{type: http, url: "http://127.0.0.1:{free_port()}/s", field: at}}'
    result = await file_run(fake_clock, source)
    assert error_of(result)[0] is ErrorType.CONNECTION_REFUSED


async def test_never_seen_reads_as_unknown_in_every_output(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    """Table, Nagios line and ECS event all say unknown, not down, for a check that has
    seen no sign of life; a real outage beside it still makes the run CRITICAL."""
    from events.ecs import check_event
    from tests.ecs_schema import problems

    never = await push_run(fake_clock, HeartbeatStore(tmp_path, clock=fake_clock))
    first, long_output = report.nagios([never]).split("\n")
    assert first == (
        "HOTLINE-PROBE UNKNOWN - province-callback UNKNOWN (no_data, no node answered); "
        "0 of 1 up | 'province-callback_duration'=0.000s;;;0"
    )
    # No '_state' value rather than 'U', which Icinga 2's perfdata writers reject.
    assert long_output == (
        "UNKNOWN province-callback (省民呼数据回传) - no node answered - push: no_data "
        "(no heartbeat received yet (POST /heartbeat/province-callback))"
    )
    table = report.table([never])
    assert "UNKNOWN" in table and "push: no_data (no heartbeat received yet" in table
    assert table.endswith("1 checks: 0 up, 0 degraded, 0 down, 1 unknown (slowest check 0.00 s)")
    event = check_event(never)
    assert event["event"]["outcome"] == "unknown"
    assert event["monitor"]["status"] == "unknown"
    assert event["summary"] == {"up": 0, "down": 0}
    assert event["error"]["type"] == "no_data"
    assert event["message"].startswith("province-callback unknown: no_data: no heartbeat")
    assert problems(event) == []
    stale_store = HeartbeatStore(tmp_path / "other", clock=fake_clock)
    await stale_store.record("province-callback", at=NOW - timedelta(hours=1))
    stale = await push_run(fake_clock, stale_store)
    assert report.exit_code([never, stale]) == report.CRITICAL
    assert report.overall([never, stale]) is Status.DOWN


async def test_events_place_push_and_file_sources_off_the_destination(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    """A push source is our own endpoint and a file a path on this host: url.path and
    file.path, never destination.address; an http source keeps url.full and destination."""
    from events.ecs import attempt_events, check_event
    from tests.ecs_schema import problems
    from tests.event_schema import schema

    push = await push_run(fake_clock, HeartbeatStore(tmp_path, clock=fake_clock))
    file = await file_run(fake_clock, f"{{type: file, path: {tmp_path / 'absent'}}}")
    where = {"url": "/heartbeat/province-callback", "file": str(tmp_path / "absent")}
    for result, field in ((push, "url"), (file, "file")):
        for event in (check_event(result), *attempt_events(result)):
            assert "destination" not in event
            assert event[field] == {"path": where[field]}
            assert problems(event) == []
            assert f"{field}.path" in schema()[event["event"]["action"]]
    check = freshness('{type: http, url: "http://127.0.0.1:9/status", field: at}')
    async with ProbeContext(clock=fake_clock) as ctx:
        http = await run_check(check, ctx)
    event = check_event(http)
    assert event["url"] == {"full": "http://127.0.0.1:9/status"}
    assert event["destination"] == {"address": "127.0.0.1", "port": 9}
