"""Outputs without a collector program: the JSON-lines file, the spool, and hostile or
dead collectors played by small loopback servers."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from config.outputs import FileOutput, SyslogOutput
from core.redact import Scrubber
from events.ecs import daemon_event, heartbeat_event
from events.formats import Rfc5424
from events.log import Pipeline
from events.outputs import Output, build_one
from events.outputs.syslog import is_diagnostic
from events.spool import DiskSpool, SpoolError, frame_records
from tests.event_schema import validate
from tests.ports import free_port

CANARY = "canary-outputs-5b2e91"


def event(number: int, text: str = "") -> dict[str, Any]:
    return daemon_event("daemon-reload", f"event {number}{text}", checks=number)


def record(text: str) -> bytes:
    data = text.encode()
    return b"%d %b" % (len(data), data)


def drain(spool: DiskSpool) -> list[bytes]:
    """Read and commit everything a spool holds, in order."""
    records: list[bytes] = []
    while not spool.empty:
        batch, token = spool.read_batch()
        records += batch
        spool.commit(token)
    return records


@pytest.fixture
def captured(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every event written, as the pipeline rendered it."""
    seen: list[dict[str, Any]] = []
    pipeline.taps.append(seen.append)
    return seen


def route(pipeline: Pipeline, *outputs: Output) -> None:
    pipeline.route(outputs, Scrubber([CANARY]))


# --- the JSON-lines file -----------------------------------------------------------


def test_file_rotates_by_rename_and_keeps_whole_lines(pipeline: Pipeline, tmp_path: Path) -> None:
    path = tmp_path / "log" / "events.jsonl"  # the directory is created on first write
    config = FileOutput(type="file", path=path, max_bytes=4096, backups=2)
    output = build_one("file", config)
    route(pipeline, output)
    for n in range(100):
        pipeline.emit(event(n, f" {CANARY}"))
    files = [path.with_name(f"events.jsonl.{i}") for i in (2, 1)] + [path]
    assert all(f.exists() for f in files)
    assert not path.with_name("events.jsonl.3").exists()  # only `backups` are kept
    numbers = []
    for f in files:
        text = f.read_text()
        assert CANARY not in text
        assert text.endswith("\n") and f.stat().st_size <= 4096
        for line in text.splitlines():
            doc = json.loads(line)  # every line whole
            assert validate(doc) == []
            numbers.append(doc["hotline_probe"]["checks"])
    # Oldest first across .2, .1 and the live file, none repeated; the oldest rotated away.
    assert numbers == list(range(numbers[0], 100))
    assert output.counts["sent"] == 100


def test_a_full_disk_drops_the_event_and_says_so(
    pipeline: Pipeline, captured: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    config = FileOutput(type="file", path=Path("/dev/full"))
    output = build_one("file", config)
    route(pipeline, output)
    for n in range(5):
        pipeline.emit(event(n))
    # The five, and the output-dropped event itself: it cannot be written there either.
    assert output.counts["dropped"] == 6
    problems = [e for e in captured if e["event"]["action"] == "output-dropped"]
    assert len(problems) == 1  # once per episode, not once per event
    assert "No space left on device" in problems[0]["message"]
    assert problems[0]["hotline_probe"]["output"] == "file"
    # stderr is not an output here: the problem is written there too, for journald.
    assert "output file: events dropped" in capsys.readouterr().err


# --- the spool -----------------------------------------------------------------------


def test_spool_keeps_order_across_a_restart(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1_000_000)
    for n in range(10):
        spool.append(record(f"event {n}"))
    records, token = spool.read_batch(max_bytes=60)
    assert records[0] == record("event 0")
    spool.commit(token)  # these reached the collector
    spool.close()
    again = DiskSpool(tmp_path, max_bytes=1_000_000)  # the daemon started again
    rest = drain(again)
    assert rest == [record(f"event {n}") for n in range(len(records), 10)]


def test_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=64 * 1024)  # segments of 16 KiB
    for n in range(2000):
        spool.append(record(f"event {n:05d} " + "x" * 80))
    assert spool.size <= 64 * 1024 + spool.segment_bytes
    kept = drain(spool)
    assert spool.dropped + len(kept) == 2000
    assert spool.dropped > 0
    assert b"event 01999 " in kept[-1]  # the newest survive
    numbers = [int(r.split(b" ")[2]) for r in kept]
    assert numbers == list(range(numbers[0], 2000))


def test_full_spool_drops_diagnostics_before_check_events(tmp_path: Path) -> None:
    """A flood of diagnostics (refused heartbeats) while the collector is down: the full
    spool drops them first, so every check event stays, in order; all losses counted."""
    spool = DiskSpool(tmp_path, max_bytes=64 * 1024, low=lambda r: b" diag " in r)
    checks = []
    for n in range(2000):
        if n % 20 == 0:
            checks.append(record(f"x check {n:05d} " + "c" * 180))
            spool.append(checks[-1])
        else:
            spool.append(record(f"x diag {n:05d} " + "d" * 180))
    assert spool.size <= 64 * 1024
    kept = drain(spool)
    assert [r for r in kept if b" check " in r] == checks
    assert spool.dropped == 2000 - len(kept) > 1000
    assert kept == sorted(kept, key=lambda r: r.split()[3])  # the order of arrival


def test_syslog_spool_tells_diagnostics_from_check_results_and_state_changes() -> None:
    """What the syslog output's spool drops first, read from the frame's MSGID (so also
    after a restart): diagnostics, never check results, state changes or the daemon's life."""
    config = syslog(free_port())
    frame = Rfc5424(config, "host").frame

    def spooled(doc: dict[str, Any]) -> bytes:
        data = frame(doc, json.dumps(doc), str)
        return b"%d %b" % (len(data), data)

    for action in ("check", "state-change", "failover", "daemon-start"):
        doc = {**event(1), "@timestamp": "2026-01-01T00:00:00Z"}
        doc["event"] = {**doc["event"], "action": action}
        assert not is_diagnostic(spooled(doc)), action
    for action in ("heartbeat-rejected", "output-failed", "notify-failed"):
        doc = {**event(1), "@timestamp": "2026-01-01T00:00:00Z"}
        doc["event"] = {**doc["event"], "action": action}
        assert is_diagnostic(spooled(doc)), action


def test_a_record_cut_by_a_crash_is_dropped_not_replayed(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1_000_000)
    spool.append(record("whole"))
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    with segment.open("ab") as f:
        f.write(b"25 half a rec")  # the process died mid-write
    again = DiskSpool(tmp_path, max_bytes=1_000_000)
    batch, _ = again.read_batch()
    assert batch == [record("whole")]
    assert again.damaged == len(b"25 half a rec")
    assert frame_records(b"5 hello3 abc")[0] == [b"5 hello", b"3 abc"]


def test_an_unusable_spool_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match=r"spool directory .*file/spool"):
        DiskSpool(blocker / "spool", max_bytes=1_000_000)


# --- hostile and dead collectors -------------------------------------------------------


class Collector:
    """A loopback TCP server with a behaviour: read, refuse, reset, or accept and stall."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.received = b""
        self.server: asyncio.Server | None = None
        self.port = 0
        self.released = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        if self.behaviour == "stall":
            for s in self.server.sockets:  # a small window fills fast
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        if self.behaviour == "reset":
            sock = writer.get_extra_info("socket")
            linger_zero = struct.pack("ii", 1, 0)  # close() sends RST, not FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
            writer.close()
            return
        if self.behaviour == "stall":
            await self.released.wait()
            writer.close()
            return
        while data := await reader.read(65536):
            self.received += data

    async def stop(self) -> None:
        self.released.set()
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in self.writers), return_exceptions=True)


@pytest.fixture
async def outputs() -> AsyncIterator[list[Output]]:
    made: list[Output] = []
    yield made
    for output in made:
        await output.close(grace=0.2)


def syslog(port: int, tmp_path: Path | None = None, **extra: Any) -> SyslogOutput:
    return SyslogOutput.model_validate(
        {
            "type": "syslog",
            "address": f"127.0.0.1:{port}",
            "reconnect_max": 0.2,
            **({"spool_dir": str(tmp_path / "spool")} if tmp_path else {}),
            **extra,
        }
    )


async def until(condition: Any, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_refused_collector_spools_and_reports_once(
    pipeline: Pipeline, tmp_path: Path, outputs: list[Output], captured: list[dict[str, Any]]
) -> None:
    output = build_one("siem", syslog(free_port(), tmp_path))
    outputs.append(output)
    await output.start()
    route(pipeline, output)
    for n in range(50):
        pipeline.emit(event(n))
    await asyncio.sleep(0.3)  # several reconnection attempts
    failed = [e for e in captured if e["event"]["action"] == "output-failed"]
    assert len(failed) == 1
    assert "Connection refused" in failed[0]["message"]
    assert output.counts["spooled"] >= 50 and output.counts["dropped"] == 0


@pytest.mark.parametrize("behaviour", ["reset", "stall"])
async def test_a_bad_collector_never_blocks_the_caller(
    pipeline: Pipeline,
    tmp_path: Path,
    outputs: list[Output],
    captured: list[dict[str, Any]],
    behaviour: str,
) -> None:
    """A collector that resets or accepts and never reads: emitting stays a function call,
    the connection is given up and events wait in the spool; when the collector mends,
    they arrive in order, up to the last one. (What went into a stalled connection's
    buffers is lost with it: plain TCP, docs/events.md.)"""
    collector = Collector(behaviour)
    await collector.start()
    config = syslog(collector.port, tmp_path, send_timeout=0.3, queue_events=100)
    output = build_one("siem", config)
    outputs.append(output)
    await output.start()
    route(pipeline, output)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(2500):  # 5 MB: more than loopback's socket buffers hold
        pipeline.emit(event(n, " " + "y" * 2000))
    assert loop.time() - started < 3.0  # no waiting on the collector inside emit
    await until(lambda: any(e["event"]["action"] == "output-failed" for e in captured))
    assert output.counts["dropped"] == 0
    collector.behaviour = "read"  # mended: the next connection is read
    await until(lambda: b'"checks":2499' in collector.received, within=20)
    records, used = frame_records(collector.received)
    assert used == len(collector.received)
    numbers = [
        json.loads(r.split(b"\xef\xbb\xbf", 1)[1])["hotline_probe"]["checks"]
        for r in records
        if b"daemon-reload" in r
    ]
    assert numbers == sorted(set(numbers))  # in order, none twice
    assert numbers[-1] == 2499
    await collector.stop()


async def test_memory_queue_keeps_check_events_through_a_flood_of_diagnostics(
    pipeline: Pipeline, outputs: list[Output]
) -> None:
    """No spool_dir, the collector down, a flood of diagnostics (refused heartbeats):
    the events that matter all reach the collector once it mends, in order."""
    collector = Collector("reset")
    await collector.start()
    output = build_one("siem", syslog(collector.port, queue_events=50))
    outputs.append(output)
    await output.start()
    route(pipeline, output)
    for n in range(1000):
        if n % 50 == 0:
            pipeline.emit(event(n))
        else:
            pipeline.emit(heartbeat_event("callback", f"refused {n}", peer="127.0.0.1"))
    await until(lambda: output.counts["dropped"] > 0)
    collector.behaviour = "read"
    await until(lambda: b'"checks":950' in collector.received, within=10)
    records, _ = frame_records(collector.received)
    numbers = [
        json.loads(r.split(b"\xef\xbb\xbf", 1)[1])["hotline_probe"]["checks"]
        for r in records
        if b"daemon-reload" in r
    ]
    assert numbers == list(range(0, 1000, 50))
    assert output.counts["dropped"] >= 1000 - 50 - 20
    await collector.stop()


async def test_hundred_kilobytes_of_text_are_cut_and_framing_stays_valid(
    pipeline: Pipeline, outputs: list[Output], captured: list[dict[str, Any]]
) -> None:
    collector = Collector("read")
    await collector.start()
    output = build_one("siem", syslog(collector.port))
    outputs.append(output)
    await output.start()
    route(pipeline, output)
    pipeline.emit(event(1, "z" * 100_000))
    pipeline.emit(event(2))
    await until(lambda: b'"checks":2}' in collector.received)
    records, used = frame_records(collector.received)
    assert used == len(collector.received) and len(records) == 2  # octet counts all right
    first = json.loads(records[0].split(b"\xef\xbb\xbf", 1)[1])
    assert first["hotline_probe"]["truncated"] is True
    assert len(records[0]) < 70_000
    assert validate(first) == []
    await collector.stop()


def test_spool_commit_after_the_bound_dropped_the_segment_being_read(tmp_path: Path) -> None:
    """A long outage fills the spool; replay starts; more events arrive and the bound
    drops the segment under the cursor while its batch is on its way: nothing after it
    is skipped or read from the middle of a record."""
    spool = DiskSpool(tmp_path, max_bytes=64 * 1024)
    for n in range(700):
        spool.append(record(f"event {n:05d} " + "x" * 80))
    _, token = spool.read_batch(max_bytes=2000)
    for n in range(700, 1400):  # the producer goes on while the batch is sent
        spool.append(record(f"event {n:05d} " + "x" * 80))
    spool.commit(token)  # names a segment that is gone: changes nothing
    rest = drain(spool)
    numbers = [int(r.split(b" ")[2]) for r in rest]
    assert numbers == list(range(numbers[0], 1400))  # contiguous up to the newest
    assert spool.damaged == 0


def test_spool_numbering_survives_repeated_restarts(tmp_path: Path) -> None:
    """Replay all, restart, spool more, restart again: the new events are replayed,
    not mistaken for finished ones by an old cursor."""
    first = DiskSpool(tmp_path, max_bytes=1_000_000)
    for n in range(10):
        first.append(record(f"a{n}"))
    drain(first)
    first.close()
    second = DiskSpool(tmp_path, max_bytes=1_000_000)
    for n in range(5):
        second.append(record(f"b{n}"))
    second.close()  # collector still down: nothing read
    third = DiskSpool(tmp_path, max_bytes=1_000_000)
    got = drain(third)
    assert got == [record(f"b{n}") for n in range(5)]


def test_one_spool_directory_one_user(tmp_path: Path) -> None:
    held = DiskSpool(tmp_path, max_bytes=1_000_000)
    with pytest.raises(SpoolError, match="in use"):
        DiskSpool(tmp_path, max_bytes=1_000_000)
    held.close()
    DiskSpool(tmp_path, max_bytes=1_000_000).close()  # free again


def test_prepend_puts_a_returned_batch_first(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1_000_000)
    for n in range(3, 6):
        spool.append(record(f"e{n}"))
    spool.prepend([record("e1"), record("e2")])
    spool.close()
    again = DiskSpool(tmp_path, max_bytes=1_000_000)
    got = drain(again)
    assert got == [record(f"e{n}") for n in range(1, 6)]


def test_memory_spool_commit_after_its_bound_dropped_records() -> None:
    from events.spool import MemorySpool

    spool = MemorySpool(max_records=5)
    for n in range(5):
        spool.append(record(f"m{n}"))
    batch, token = spool.read_batch()
    assert len(batch) == 5
    for n in range(5, 8):  # three more push the three oldest out meanwhile
        spool.append(record(f"m{n}"))
    spool.commit(token)  # removes what is left of the batch, not the new ones
    rest, _ = spool.read_batch()
    assert rest == [record(f"m{n}") for n in range(5, 8)]
    assert spool.dropped == 3


def test_full_memory_spool_drops_diagnostics_before_check_events() -> None:
    """Without spool_dir a flood of diagnostics (refused heartbeats) while the collector
    is down pushes out diagnostics, not check events: those all stay, in order, and
    every loss is counted; with no diagnostic left, the oldest go."""
    from events.spool import MemorySpool

    spool = MemorySpool(max_records=100, low=lambda r: b" diag " in r)
    checks = []
    for n in range(2000):
        if n % 40 == 0:
            checks.append(record(f"x check {n:05d}"))
            spool.append(checks[-1])
        else:
            spool.append(record(f"x diag {n:05d}"))
    kept, token = spool.read_batch(max_bytes=1_000_000)
    assert len(kept) == 100
    assert [r for r in kept if b" check " in r] == checks
    assert kept == sorted(kept, key=lambda r: r.split()[3])  # the order of arrival
    assert spool.dropped == 1900
    spool.commit(token)
    for n in range(120):  # only check events now: the oldest of them go
        spool.append(record(f"x check {n:05d}b"))
    rest, _ = spool.read_batch(max_bytes=1_000_000)
    assert rest[0] == record("x check 00020b") and len(rest) == 100


def test_memory_spool_partial_commit_keeps_what_was_not_sent() -> None:
    """A batch half taken by the collector, while the bound dropped a diagnostic of
    that batch meanwhile: the commit removes what was sent and no unsent record."""
    from events.spool import MemorySpool

    spool = MemorySpool(max_records=4, low=lambda r: b" diag " in r)
    for text in ("a check", "b diag ", "c check", "d check"):
        spool.append(record(text))
    batch, token = spool.read_batch()
    assert len(batch) == 4
    spool.append(record("e check"))  # full: the diagnostic of the batch goes
    assert spool.dropped == 1
    spool.commit(spool.token_after(batch[:2], token))  # a and b reached the collector
    rest, _ = spool.read_batch()
    assert rest == [record("c check"), record("d check"), record("e check")]


def test_secrets_are_masked_before_cef_and_sd_escaping() -> None:
    from config.outputs import SyslogOutput as Config
    from events.formats import Rfc5424

    secrets = ["Zx9=Qw7!Lm-long", "user|Pa55w0rd-long", "s3cr3t]value-long"]
    scrub = Scrubber(secrets)
    doc = daemon_event("internal-error", f"boom {secrets[1]}", level="error", outcome="failure")
    doc |= {
        "@timestamp": "2026-11-28T00:00:00.000Z",
        "monitor": {"id": secrets[2]},
        "error": {"type": "internal", "message": f"saw {secrets[0]}"},
    }
    for fmt in ("json", "cef"):
        config = Config.model_validate({"type": "syslog", "address": "127.0.0.1:1", "format": fmt})
        frame = Rfc5424(config, "host").frame(doc, scrub(json.dumps(doc)), scrub).decode()
        for secret in secrets:
            for piece in (secret, secret.replace("=", "\\="), secret.replace("|", "\\|")):
                assert piece not in frame, (fmt, piece)
            assert secret.replace("]", "\\]") not in frame
        assert "REDACTED" in frame


async def test_queue_full_with_a_healthy_collector_keeps_sending(
    pipeline: Pipeline, tmp_path: Path, outputs: list[Output]
) -> None:
    """A burst larger than the memory queue sends the rest through the spool; the
    output goes on sending without waiting for a reconnect or a stop."""
    collector = Collector("read")
    await collector.start()
    output = build_one("siem", syslog(collector.port, tmp_path, queue_events=10))
    outputs.append(output)
    await output.start()
    route(pipeline, output)
    for n in range(35):
        pipeline.emit(event(n))
    for n in range(35, 85):
        pipeline.emit(event(n))
        await asyncio.sleep(0.002)
    await until(lambda: b'"checks":84}' in collector.received)
    records, _ = frame_records(collector.received)
    numbers = [
        json.loads(r.split(b"\xef\xbb\xbf", 1)[1])["hotline_probe"]["checks"]
        for r in records
        if b"daemon-reload" in r
    ]
    assert numbers == list(range(85))
    await collector.stop()


async def test_a_large_non_ascii_event_fits_a_datagram(
    pipeline: Pipeline, outputs: list[Output]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        port = server.getsockname()[1]
        output = build_one("siem", syslog(port, transport="udp"))
        outputs.append(output)
        await output.start()
        route(pipeline, output)
        pipeline.emit(event(1, "中" * 30_000))  # 90 KB of UTF-8 in 30,000 characters
        await asyncio.sleep(0)
        datagram = server.recv(70_000)
    assert output.counts["dropped"] == 0
    doc = json.loads(datagram.split(b"\xef\xbb\xbf", 1)[1])
    assert doc["hotline_probe"]["truncated"] is True
