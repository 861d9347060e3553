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
from core.redact import Scrubber
from events.ecs import daemon_event
from events.log import Pipeline
from events.outputs import build_one
from events.outputs.base import Output
from tests.event_schema import validate
from tests.rsyslog import Rsyslog, TlsFiles

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


async def started(pipeline: Pipeline, output: Output) -> Output:
    await output.start()
    pipeline.route([output], Scrubber([CANARY]))
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
    pipeline: Pipeline, rsyslog: Rsyslog, transport: str, closing: list[Output]
) -> None:
    port = rsyslog.tcp_port if transport == "tcp" else rsyslog.udp_port
    config = syslog_config(f"127.0.0.1:{port}", transport=transport)
    output = await started(pipeline, build_one("siem", config))
    closing.append(output)
    hostile = f' line\nbreak "quoted" ]bracket\\ {CANARY} \udcff'
    for n in range(20):
        pipeline.emit(event(n, hostile if n % 2 else ""))
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


class Producer:
    """Emits numbered events every few milliseconds until stopped; ``pause`` holds it
    for a moment (the instant a collector is stopped, see below)."""

    def __init__(self, pipeline: Pipeline, every: float = 0.005) -> None:
        self.pipeline = pipeline
        self.every = every
        self.emitted: list[int] = []
        self.running = asyncio.Event()
        self.running.set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.running.wait()
            self.pipeline.emit(event(len(self.emitted)))
            self.emitted.append(len(self.emitted))
            await asyncio.sleep(self.every)

    async def stop(self) -> None:
        self._stop.set()
        self.running.set()
        if self._task is not None:
            await self._task


async def stop_collector_between_events(
    collector: Rsyslog, output: Output, producer: Producer, name: str
) -> None:
    """Stop rsyslog (SIGTERM, as systemctl does) at a moment when no event is on its way.

    Neither protocol can make the instant of a collector's stop safe: plain TCP cannot
    know what the collector read, and rsyslog itself can drop a message it has just
    acknowledged over RELP while it shuts down (seen here: one in three stops).
    docs/events.md says so. What the output must guarantee, and what this checks, is
    everything after: events made while the collector is away are kept, in order."""
    producer.running.clear()
    await received_numbers(collector, name, len(producer.emitted))
    await asyncio.to_thread(collector.stop)
    await asyncio.sleep(0.05)  # the output notices the close before more events come
    producer.running.set()


async def received_numbers(collector: Rsyslog, name: str, count: int) -> list[int]:
    """The producer's numbers in the collector's file, once ``count`` are there (or 20 s)."""
    for _ in range(1000):
        got = numbers(collector.lines(name))
        if len(got) >= count:
            break
        await asyncio.sleep(0.02)
    return got


def numbers(lines: list[bytes]) -> list[int]:
    """The producer's numbers, leaving out the output's own output-* events."""
    docs = [parse(line)[1] for line in lines]
    return [d["hotline_probe"]["checks"] for d in docs if d["event"]["action"] == "daemon-reload"]


@pytest.mark.parametrize("transport", ["relp", "tcp"])
async def test_no_event_lost_or_repeated_across_a_collector_restart(
    pipeline: Pipeline, rsyslog: Rsyslog, tmp_path: Path, closing: list[Output], transport: str
) -> None:
    """Events keep flowing while rsyslog is stopped and started again: every one
    arrives, in order, once; those made during the outage come from the spool."""
    port = rsyslog.relp_port if transport == "relp" else rsyslog.tcp_port
    config = syslog_config(
        f"127.0.0.1:{port}",
        transport=transport,
        spool_dir=str(tmp_path / "spool"),
        reconnect_max=0.2,
    )
    output = await started(pipeline, build_one("siem", config))
    closing.append(output)
    producer = Producer(pipeline)
    producer.start()
    await asyncio.sleep(0.3)
    await stop_collector_between_events(rsyslog, output, producer, transport)
    during = len(producer.emitted)
    await asyncio.sleep(0.5)  # collector down: these go to the spool
    assert len(producer.emitted) > during + 20
    assert output.counts["spooled"] > 0
    await asyncio.to_thread(rsyslog.start)
    await asyncio.sleep(0.5)
    await producer.stop()
    emitted = producer.emitted
    got = await received_numbers(rsyslog, transport, len(emitted))
    missing = sorted(set(emitted) - set(got))
    assert got == emitted, f"missing {missing[:20]}, {len(got)} of {len(emitted)} received"
    assert output.counts["replayed"] > 20


async def test_the_spool_survives_a_daemon_restart(
    pipeline: Pipeline, rsyslog: Rsyslog, tmp_path: Path, closing: list[Output]
) -> None:
    """Collector down, daemon stops: the events wait on disk; the next daemon sends them."""
    spool = tmp_path / "spool"
    address = f"127.0.0.1:{rsyslog.relp_port}"
    await asyncio.to_thread(rsyslog.stop)
    first = await started(
        pipeline, build_one("siem", syslog_config(address, transport="relp", spool_dir=str(spool)))
    )
    for n in range(30):
        pipeline.emit(event(n))
    await first.close(grace=0.2)  # the daemon stops while the collector is away
    assert any(spool.glob("*.seg"))
    await asyncio.to_thread(rsyslog.start)
    second = await started(
        pipeline, build_one("siem", syslog_config(address, transport="relp", spool_dir=str(spool)))
    )
    closing.append(second)
    pipeline.emit(event(30))
    lines = await asyncio.to_thread(rsyslog.wait_for, "relp", 31)
    assert numbers(lines)[:31] == list(range(31))


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, the collector's certificate for 127.0.0.1, and a client certificate."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("hotline-probe.example.invalid")
    stranger = trustme.CA()  # a CA nobody configured
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "client": tmp_path / "client.pem",
        "stranger_ca": tmp_path / "stranger.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    stranger.cert_pem.write_to_path(str(files["stranger_ca"]))
    return files


@pytest.fixture
def tls_rsyslog(tmp_path: Path, pki: dict[str, Path]) -> Iterator[Rsyslog]:
    collector = Rsyslog(
        tmp_path / "rsyslog-tls",
        tls=TlsFiles(ca=pki["ca"], cert=pki["cert"], key=pki["key"], client_cert=pki["client"]),
    )
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()


async def test_tls_with_our_ca_and_a_client_certificate(
    pipeline: Pipeline, tls_rsyslog: Rsyslog, pki: dict[str, Path], closing: list[Output]
) -> None:
    config = syslog_config(
        f"127.0.0.1:{tls_rsyslog.tls_port}",
        transport="tls",
        tls={"ca_file": str(pki["ca"]), "cert_file": str(pki["client"])},
    )
    output = await started(pipeline, build_one("siem", config))
    closing.append(output)
    for n in range(5):
        pipeline.emit(event(n, f" {CANARY}"))
    lines = await asyncio.to_thread(tls_rsyslog.wait_for, "tls", 5)
    assert numbers(lines) == list(range(5))
    assert all(CANARY.encode() not in line for line in lines)
    assert all(validate(parse(line)[1]) == [] for line in lines)


async def test_a_collector_with_an_untrusted_certificate_is_refused_and_reported(
    pipeline: Pipeline,
    tls_rsyslog: Rsyslog,
    pki: dict[str, Path],
    tmp_path: Path,
    closing: list[Output],
) -> None:
    seen: list[dict[str, Any]] = []
    pipeline.taps.append(seen.append)
    try:
        config = syslog_config(
            f"127.0.0.1:{tls_rsyslog.tls_port}",
            transport="tls",
            tls={"ca_file": str(pki["stranger_ca"])},
            spool_dir=str(tmp_path / "spool"),
            reconnect_max=0.2,
        )
        output = await started(pipeline, build_one("siem", config))
        closing.append(output)
        pipeline.emit(event(1))
        for _ in range(100):
            if any(e["event"]["action"] == "output-failed" for e in seen):
                break
            await asyncio.sleep(0.02)
    finally:
        pipeline.taps.remove(seen.append)
    (failed,) = [e for e in seen if e["event"]["action"] == "output-failed"]
    assert "certificate not accepted" in failed["message"]
    assert output.counts["spooled"] >= 1 and output.counts["sent"] == 0
    assert tls_rsyslog.lines("tls") == []


async def test_cef_lines_are_escaped_and_scrubbed(
    pipeline: Pipeline, rsyslog: Rsyslog, closing: list[Output]
) -> None:
    config = syslog_config(f"127.0.0.1:{rsyslog.tcp_port}", format="cef")
    output = await started(pipeline, build_one("siem", config))
    closing.append(output)
    pipeline.emit(event(7, f" a|b=c\\d\nnext {CANARY}"))
    (line,) = await asyncio.to_thread(rsyslog.wait_for, "tcp", 1)
    match = FRAME.match(line)
    assert match
    assert match.group("sd") == b"-"  # the CEF extension carries the fields instead
    cef = match.group("msg").decode()
    assert CANARY not in cef and "REDACTED" in cef
    header = re.split(r"(?<!\\)\|", cef, maxsplit=7)  # a | in the extension is plain text
    assert header[:5] == [
        "CEF:0",
        "Haining 12345 operations",
        "hotline-probe",
        header[3],
        "daemon-reload",
    ]
    assert header[5] == "event 7 a\\|b=c\\\\d next REDACTED"  # | and \ escaped, newline flattened
    assert header[6] == "3"  # info
    extension = header[7]
    assert "msg=event 7 a|b\\=c\\\\d\\nnext REDACTED" in extension  # = and \ escaped, \n kept
    assert re.search(r"externalId=\S+-\d+ cn1=\d+ act=daemon-reload", extension)
