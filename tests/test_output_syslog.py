"""The syslog output against a real rsyslogd: framing, TLS, CEF, and no loss across a
collector restart."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.outputs import SyslogOutput
from events import log
from events.ecs import daemon_event
from events.outputs import build_one
from events.outputs.base import Output
from events.redact import Scrubber
from tests.event_schema import validate
from tests.rsyslog import Rsyslog

CANARY = "canary-s3cr3t-7f3a9c"
FRAME = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\d+) (?P<msgid>\S+) "
    rb"(?P<sd>\[.*?(?<!\\)\]|-) (?P<msg>.*)$"
)


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    collector = Rsyslog(tmp_path / "rsyslog")
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()


def syslog_config(address: str, **extra: Any) -> SyslogOutput:
    return SyslogOutput.model_validate({"type": "syslog", "address": address, **extra})


async def started(output: Output) -> Output:
    await output.start()
    log.configure(outputs=[output], scrubber=Scrubber([CANARY]))
    return output


def event(number: int, text: str = "") -> dict[str, Any]:
    return daemon_event("daemon-reload", f"event {number}{text}", checks=number)


def parse(line: bytes) -> tuple[re.Match[bytes], dict[str, Any]]:
    match = FRAME.match(line)
    assert match, line[:200]
    msg = match.group("msg")
    assert msg.startswith("\ufeff".encode()), "a UTF-8 MSG starts with the BOM"
    return match, json.loads(msg[3:])


@pytest.fixture
async def closing() -> AsyncIterator[list[Output]]:
    outputs: list[Output] = []
    yield outputs
    for output in outputs:
        await output.close(grace=0.5)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_frames_reach_rsyslog_valid_and_scrubbed(
    rsyslog: Rsyslog, transport: str, closing: list[Output]
) -> None:
    port = rsyslog.tcp_port if transport == "tcp" else rsyslog.udp_port
    config = syslog_config(f"127.0.0.1:{port}", transport=transport)
    output = await started(build_one("siem", config))
    closing.append(output)
    hostile = f' line\nbreak "quoted" ]bracket\\ {CANARY} \udcff'
    for n in range(20):
        log.emit(event(n, hostile if n % 2 else ""))
        await asyncio.sleep(0)  # UDP: let the loop send; TCP: let the writer drain
    lines = await asyncio.to_thread(rsyslog.wait_for, transport, 20)
    assert len(lines) == 20
    for n, line in enumerate(lines):
        assert CANARY.encode() not in line
        match, doc = parse(line)
        assert int(match.group("pri")) == 16 * 8 + 6  # local0.info
        assert match.group("msgid") == b"daemon-reload"
        assert match.group("app") == b"hotline-probe"
        sd = match.group("sd").decode()
        assert sd.startswith("[hotline_probe@32473 ")
        assert f'seq="{doc["event"]["sequence"]}"' in sd
        assert validate(doc) == []
        assert doc["hotline_probe"]["checks"] == n
        if n % 2:
            assert "\n" in doc["message"] and '"quoted" ]bracket' in doc["message"]
            assert "\ufffd" in doc["message"]  # the lone surrogate, made valid UTF-8
    sequences = [parse(line)[1]["event"]["sequence"] for line in lines]
    assert sequences == list(range(sequences[0], sequences[0] + 20))


async def produce(stop: asyncio.Event, every: float, emitted: list[int]) -> None:
    while not stop.is_set():
        log.emit(event(len(emitted)))
        emitted.append(len(emitted))
        await asyncio.sleep(every)


def numbers(lines: list[bytes]) -> list[int]:
    """The producer's numbers, leaving out the output's own output-* events."""
    docs = [parse(line)[1] for line in lines]
    return [d["hotline_probe"]["checks"] for d in docs if d["event"]["action"] == "daemon-reload"]


async def test_no_event_lost_or_repeated_across_a_collector_restart(
    rsyslog: Rsyslog, tmp_path: Path, closing: list[Output]
) -> None:
    """RELP: events keep flowing while rsyslog is stopped and started again; every one
    arrives, in order, exactly once (imrelp answers each message; unanswered ones are
    sent again, answered ones never)."""
    config = syslog_config(
        f"127.0.0.1:{rsyslog.relp_port}",
        transport="relp",
        spool_dir=str(tmp_path / "spool"),
        reconnect_max=0.2,
    )
    output = await started(build_one("siem", config))
    closing.append(output)
    stop, emitted = asyncio.Event(), list[int]()
    producer = asyncio.create_task(produce(stop, 0.005, emitted))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(rsyslog.stop)
    during = len(emitted)
    await asyncio.sleep(0.5)  # collector down: these go to the spool
    assert len(emitted) > during + 20
    assert output.counts["spooled"] > 0
    await asyncio.to_thread(rsyslog.start)
    await asyncio.sleep(0.5)
    stop.set()
    await producer
    lines = await asyncio.to_thread(rsyslog.wait_for, "relp", len(emitted))
    got = numbers(lines)
    missing = sorted(set(emitted) - set(got))
    assert got == emitted, f"missing {missing[:20]}, {len(got)} of {len(emitted)} received"
    assert output.counts["replayed"] > 0
