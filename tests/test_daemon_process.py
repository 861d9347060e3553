"""`probed` as systemd runs it: a real process, a real notify socket, real signals, and
its /metrics read by promtool and scraped by a real Prometheus server.

Time is real here (short intervals), because the point is the whole process; the
state rules themselves are tested on virtual time in test_state.py and test_daemon.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulator import Mode, Simulator
from simulator.http_node import SimHttpNode
from tests.cli_run import CWD, command
from tests.event_schema import validate
from tests.ports import free_port

pytestmark = pytest.mark.e2e  # `probed` as a process

INSTALL_HINT = "run `scripts/install-test-deps.sh .venv` as root (or `make deps`)"


async def start_probed(
    config: Path, tmp_path: Path, **environ: str
) -> tuple[asyncio.subprocess.Process, socket.socket]:
    """`probed --config CONFIG` with a notify socket of ours; its events go to a file
    (a pipe nobody reads would fill up and stall the daemon)."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    with (tmp_path / "events.jsonl").open("wb") as events:
        process = await asyncio.create_subprocess_exec(
            *command("probed"),
            "--config",
            str(config),
            cwd=CWD,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=events,
            env={
                **os.environ,
                "NOTIFY_SOCKET": str(tmp_path / "notify"),
                "PYTHONUNBUFFERED": "1",
                **environ,
            },
        )
    return process, notify


@dataclass
class Probed:
    process: asyncio.subprocess.Process
    notify: socket.socket
    port: int
    a: SimHttpNode
    b: SimHttpNode
    seen: list[str]
    tmp_path: Path

    async def message(self, wanted: Callable[[str], bool], within: float = 15) -> str:
        """Wait for a notify datagram that satisfies ``wanted``."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            while True:
                text = (await loop.sock_recv(self.notify, 4096)).decode()
                self.seen.append(text)
                if wanted(text):
                    return text

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}{path}") as response,
        ):
            return response.status, await response.text()

    async def wait_status(
        self, check: str, predicate: Callable[[dict[str, Any]], bool], within: float = 15
    ) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                code, text = await self.get("/status")
                if code == 200:
                    entry: dict[str, Any] = next(
                        c for c in json.loads(text)["checks"] if c["name"] == check
                    )
                    if predicate(entry):
                        return entry
                await asyncio.sleep(0.1)


@pytest.fixture
async def probed(tmp_path: Path) -> AsyncIterator[Probed]:
    async with Simulator() as sim:
        a = await sim.add_http("police-110", "node-a")
        b = await sim.add_http("police-110", "node-b")
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(f"""
listen: "127.0.0.1:{port}"
defaults:
  interval: 300ms
  timeout: 200ms
  retries: {{attempts: 1}}
  confirm_after: 2
  recover_after: 2
  failback_after: 2
  standby_interval: 1s
checks:
  - name: police-110
    title: 110 接处警平台对接
    kind: http
    nodes: [{{name: node-a, url: "{a.url}"}}, {{name: node-b, url: "{b.url}"}}]
""")
        process, notify = await start_probed(config, tmp_path, WATCHDOG_USEC="400000")
        handle = Probed(process, notify, port, a, b, [], tmp_path)
        try:
            yield handle
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            notify.close()


async def test_lifecycle_failover_reload_and_stop(probed: Probed) -> None:
    """READY, watchdog pings, failover to node-b and back, SIGHUP reload, SIGTERM stop."""
    ready = await probed.message(lambda m: "READY=1" in m)
    assert "STATUS=1 checks:" in ready
    await probed.message(lambda m: m == "WATCHDOG=1")
    code, body = await probed.get("/healthz")
    assert code == 200, body

    await probed.a.set_mode(Mode.REFUSING)
    entry = await probed.wait_status("police-110", lambda c: c["status"] == "degraded")
    assert entry["active_node"] == "node-b"
    await probed.a.set_mode(Mode.HEALTHY)
    await probed.wait_status(
        "police-110", lambda c: c["status"] == "up" and c["active_node"] == "node-a"
    )
    _, metrics = await probed.get("/metrics")
    assert 'hotline_probe_failovers_total{check="police-110"} 1.0' in metrics
    assert 'hotline_probe_failbacks_total{check="police-110"} 1.0' in metrics

    probed.process.send_signal(signal.SIGHUP)
    reloading = await probed.message(lambda m: m.startswith("RELOADING=1"))
    assert "MONOTONIC_USEC=" in reloading
    await probed.message(lambda m: m.startswith("READY=1"))

    probed.process.send_signal(signal.SIGTERM)
    await probed.message(lambda m: m == "STOPPING=1")
    assert await asyncio.wait_for(probed.process.wait(), 15) == 0
    lines = (probed.tmp_path / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    # The real process's events, too, are what docs/events.md says, numbered one by one.
    assert [(e["event"]["action"], p) for e in events for p in validate(e)] == []
    sequence = [e["event"]["sequence"] for e in events]
    assert sequence == list(range(1, len(events) + 1))
    actions = [e["event"]["action"] for e in events]
    assert actions[0] == "daemon-start"
    assert actions[-1] == "daemon-stop"
    assert {"failover", "failback", "daemon-reload"} <= set(actions)


async def test_metrics_pass_promtool_and_a_real_prometheus_scrapes_them(
    probed: Probed, tmp_path: Path
) -> None:
    """promtool check metrics finds nothing to say; Prometheus scrapes the target as up
    and can query probe_success for each node."""
    promtool = shutil.which("promtool")
    prometheus = shutil.which("prometheus")
    assert promtool and prometheus, f"promtool and prometheus are needed: {INSTALL_HINT}"
    await probed.message(lambda m: "READY=1" in m)
    await asyncio.sleep(0.5)  # a run or two, so every metric family has samples
    _, metrics = await probed.get("/metrics")
    lint = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    said, _ = await asyncio.wait_for(lint.communicate(metrics.encode()), 30)
    assert lint.returncode == 0, said.decode()
    assert said.decode().strip() == ""

    web_port = free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, scrape_timeout: 900ms}}
scrape_configs:
  - job_name: hotline-probe
    static_configs: [{{targets: ["127.0.0.1:{probed.port}"]}}]
""")
    server = await asyncio.create_subprocess_exec(
        prometheus,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{web_port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        api = f"http://127.0.0.1:{web_port}/api/v1"
        deadline = time.monotonic() + 30
        result: list[Any] = []
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline and not result:
                await asyncio.sleep(0.5)
                try:
                    async with session.get(
                        f"{api}/query", params={"query": "probe_success"}
                    ) as response:
                        result = (await response.json())["data"]["result"]
                except aiohttp.ClientError:
                    continue  # still starting
            async with session.get(f"{api}/targets") as response:
                targets = (await response.json())["data"]["activeTargets"]
        assert result, "Prometheus never stored probe_success"
        assert {r["metric"]["node"] for r in result} >= {"node-a"}
        assert targets[0]["health"] == "up", targets
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)


async def test_example_topology_against_the_simulators(tmp_path: Path) -> None:
    """The shipped example config, pointed at the simulators as `probe demo` does: probed
    starts, reports every link, and moves the 110 link to node-b when node-a stops."""
    import yaml

    from simulator.demo import EXAMPLE, build

    async with Simulator() as sim:
        document = await build(sim, EXAMPLE.read_text(encoding="utf-8"))
        port = free_port()
        document["listen"] = f"127.0.0.1:{port}"
        document["defaults"] |= {"interval": "300ms", "standby_interval": "1s"}
        for check in document["checks"]:
            check.pop("interval", None)
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        process, notify = await start_probed(config, tmp_path)
        node_a = sim.node("police-110", "node-a")
        assert isinstance(node_a, SimHttpNode)
        handle = Probed(process, notify, port, node_a, node_a, [], tmp_path)
        try:
            await handle.message(lambda m: "READY=1" in m)
            everything = await handle.wait_status(
                "portal-cert", lambda c: c["status"] == "up", within=20
            )
            assert everything["kind"] == "tls"
            _, text = await handle.get("/status")
            assert {c["status"] for c in json.loads(text)["checks"]} <= {"up", "unknown"}
            await node_a.set_mode(Mode.REFUSING)
            police = await handle.wait_status("police-110", lambda c: c["status"] == "degraded")
            assert police["active_node"] == "node-b"
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            notify.close()
