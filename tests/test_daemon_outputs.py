"""probed with the outputs of its config: a file and RELP into a real rsyslog, metrics of
both, and a reload that keeps an unchanged output's connection and spool."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config.load import load_config
from core.clock import ManualClock
from daemon import Daemon
from engine.notify import Notifier
from events.log import Pipeline
from events.spool import DiskSpool
from simulator import Simulator
from tests.daemon_time import advance_and_finish
from tests.event_schema import validate
from tests.ports import free_port
from tests.rsyslog import Rsyslog
from tests.test_output_syslog import parse
from web.app import bound_port

CANARY = "canary-daemon-outputs-3e8a"


def config_text(url: str, events: Path, relp_port: int, spool: Path, extra: str = "") -> str:
    return f"""
listen: "127.0.0.1:0"
defaults: {{interval: 10s, timeout: 500ms, retries: {{attempts: 1}}}}
outputs:
  - {{type: file, path: "{events}", max_bytes: 1MB, backups: 2}}
  - {{type: syslog, name: siem, transport: relp, address: "127.0.0.1:{relp_port}",
      spool_dir: "{spool}", reconnect_max: 200ms}}
{extra}checks:
  - name: police-110
    kind: http
    headers: {{Authorization: "Bearer {CANARY}"}}
    nodes: [{{name: node-a, url: "{url}"}}]
"""


@pytest.fixture
async def running(
    tmp_path: Path, pipeline: Pipeline
) -> AsyncIterator[tuple[Daemon, Rsyslog, Path, ManualClock]]:
    collector = Rsyslog(tmp_path / "rsyslog")
    await asyncio.to_thread(collector.start)
    async with Simulator() as sim:
        node = await sim.add_http("police-110", "node-a")
        events = tmp_path / "log" / "events.jsonl"
        path = tmp_path / "config.yaml"
        path.write_text(config_text(node.url, events, collector.relp_port, tmp_path / "spool"))
        clock = ManualClock()
        daemon = Daemon(
            path,
            load_config(path),
            clock=clock,
            notifier=Notifier(None),
            environ={},
            stream=io.StringIO(),
            events=pipeline,
        )
        await daemon.start()
        try:
            yield daemon, collector, events, clock
        finally:
            await daemon.shutdown()
            await asyncio.to_thread(collector.stop)


async def run_once(daemon: Daemon, clock: ManualClock) -> None:
    await advance_and_finish(daemon, clock, 10.0)


async def test_events_reach_the_file_and_rsyslog_and_are_counted(
    running: tuple[Daemon, Rsyslog, Path, ManualClock],
) -> None:
    daemon, collector, events, clock = running
    await run_once(daemon, clock)
    await run_once(daemon, clock)
    lines = await asyncio.to_thread(collector.wait_for, "relp", 3)
    from_siem = [parse(line)[1] for line in lines]
    from_file = [json.loads(line) for line in events.read_text().splitlines()]
    for doc in from_siem + from_file:
        assert validate(doc) == []
    assert CANARY not in events.read_text()
    assert all(CANARY.encode() not in line for line in lines)
    actions = [d["event"]["action"] for d in from_file]
    assert actions[0] == "daemon-start" and actions.count("check") == 2
    # One numbering for every output: the same events, in the same order.
    assert [d["event"]["id"] for d in from_siem] == [d["event"]["id"] for d in from_file][
        : len(from_siem)
    ]
    assert daemon.web is not None
    port = bound_port(daemon.web)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        metrics = await response.text()
    assert 'hotline_probe_output_events_total{outcome="sent",output="siem"}' in metrics
    assert 'hotline_probe_output_events_total{outcome="dropped",output="file-0"} 0.0' in metrics
    assert 'hotline_probe_output_spool_bytes{output="siem"}' in metrics


async def test_reload_keeps_an_unchanged_output(
    running: tuple[Daemon, Rsyslog, Path, ManualClock],
) -> None:
    daemon, collector, _, clock = running
    siem = daemon.outputs[1]
    text = daemon.path.read_text().replace("backups: 2", "backups: 3")
    daemon.path.write_text(text)
    assert await daemon.reload()
    assert daemon.outputs[1] is siem  # same connection, same spool
    assert daemon.outputs[0] is not None and daemon.outputs[0].kind == "file"
    await run_once(daemon, clock)
    lines = await asyncio.to_thread(collector.wait_for, "relp", 3)
    actions = [parse(line)[1]["event"]["action"] for line in lines]
    assert actions == ["daemon-start", "daemon-reload", "check"]


async def test_reload_hands_a_changed_outputs_spool_over(
    running: tuple[Daemon, Rsyslog, Path, ManualClock],
) -> None:
    """A syslog output whose settings change keeps its spool directory: the old output
    lets go of it before the new one takes it over, and no event is lost between."""
    daemon, collector, _, clock = running
    old = daemon.outputs[1]
    seen: list[dict[str, object]] = []
    daemon.events.taps.append(seen.append)
    try:
        daemon.path.write_text(
            daemon.path.read_text().replace("reconnect_max: 200ms", "reconnect_max: 300ms")
        )
        assert await daemon.reload()
        await run_once(daemon, clock)
    finally:
        daemon.events.taps.remove(seen.append)
    assert daemon.outputs[1] is not old
    assert not [e for e in seen if str(e.get("message", "")).find("in use") >= 0]
    lines = await asyncio.to_thread(collector.wait_for, "relp", 3)
    actions = [parse(line)[1]["event"]["action"] for line in lines]
    assert actions == ["daemon-start", "daemon-reload", "check"]


async def test_an_unusable_spool_dir_is_reported_at_start_and_reload(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    """A spool_dir the output cannot use (here another process holds it, which the
    config check cannot know) and a collector that is down: the start and every reload
    write an output-failed event naming the directory, and the events that wait in
    memory count as dropped at the stop, never as spooled."""
    spool = tmp_path / "spool"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
listen: "off"
outputs:
  - {{type: syslog, name: siem, transport: tcp, address: "127.0.0.1:{free_port()}",
      spool_dir: "{spool}", reconnect_max: 200ms}}
checks:
  - {{name: a, kind: tcp, nodes: [{{name: n, address: "127.0.0.1:{free_port()}"}}]}}
"""
    )
    config = load_config(path)
    holder = DiskSpool(spool, max_bytes=1_000_000)
    seen: list[dict[str, Any]] = []
    pipeline.taps.append(seen.append)
    daemon = Daemon(
        path,
        config,
        clock=ManualClock(),
        notifier=Notifier(None),
        environ={},
        stream=io.StringIO(),
        events=pipeline,
    )

    def spool_failures() -> list[dict[str, Any]]:
        return [
            e
            for e in seen
            if e["event"]["action"] == "output-failed" and str(spool) in e["message"]
        ]

    await daemon.start()
    try:
        (failed,) = spool_failures()
        assert failed["hotline_probe"]["output"] == "siem"
        assert "in use by another process" in failed["message"]
        assert validate(failed) == []
        siem = daemon.outputs[0]
        assert await daemon.reload()
        assert daemon.outputs[0] is siem  # kept, and reported again
        assert len(spool_failures()) == 2
        assert siem.counts["spooled"] == 0
    finally:
        await daemon.shutdown()
        holder.close()
    assert siem.counts["spooled"] == 0
    assert siem.counts["dropped"] >= 3  # start, reload, stop: none could be kept
    (dropped,) = [e for e in seen if e["event"]["action"] == "output-dropped"]
    assert str(spool) in dropped["message"]
