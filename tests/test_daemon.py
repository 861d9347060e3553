"""The daemon in-process: virtual time for the schedule, real sockets for everything else.

Probes hit the loopback simulators, the HTTP endpoint is scraped over 127.0.0.1, and
systemd's notify messages arrive on a real unix datagram socket. Time only moves when
a test advances the ManualClock, so minutes of schedule take milliseconds.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config.load import load_config
from core.clock import ManualClock, settle
from daemon import Daemon
from engine.notify import Notifier
from events.log import Pipeline
from simulator import Mode, Simulator
from simulator.http_node import SimHttpNode
from simulator.tcp_node import SimTcpNode
from tests.daemon_time import advance_and_finish
from tests.event_schema import validate
from web.app import bound_port

INTERVAL = 10.0


def config_text(a: SimHttpNode, b: SimHttpNode, proxy: SimTcpNode, extra: str = "") -> str:
    return f"""
listen: "127.0.0.1:0"
defaults:
  interval: {INTERVAL}s
  timeout: 500ms
  retries: {{attempts: 1}}
  confirm_after: 2
  recover_after: 2
  failback_after: 2
  standby_interval: 30s
checks:
  - name: zzd-proxy
    title: 浙政钉正向代理
    kind: tcp
    nodes: [{{name: primary, address: "{proxy.address}"}}]
  - name: police-110
    title: 110 接处警平台对接
    kind: http
    depends_on: [zzd-proxy]
    headers: {{Authorization: "Bearer canary-daemon-7d1e"}}
    nodes:
      - {{name: node-a, url: "{a.url}"}}
      - {{name: node-b, url: "{b.url}"}}
    expect: {{json: {{status: ok}}}}
{extra}"""


@dataclass
class Env:
    sim: Simulator
    a: SimHttpNode
    b: SimHttpNode
    proxy: SimTcpNode
    path: Path
    clock: ManualClock
    notify: socket.socket
    notify_path: str
    events: io.StringIO
    daemon: Daemon

    def messages(self) -> list[str]:
        """Every notify datagram received so far."""
        out = []
        self.notify.setblocking(False)
        while True:
            try:
                out.append(self.notify.recv(4096).decode())
            except BlockingIOError:
                return out

    def emitted(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.events.getvalue().splitlines()]

    async def tick(self, seconds: float = INTERVAL) -> None:
        await advance_and_finish(self.daemon, self.clock, seconds)

    async def get(self, path: str) -> tuple[int, str]:
        assert self.daemon.web is not None
        port = bound_port(self.daemon.web)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}{path}") as response,
        ):
            return response.status, await response.text()

    async def status(self) -> dict[str, dict[str, Any]]:
        code, text = await self.get("/status")
        assert code == 200
        return {c["name"]: c for c in json.loads(text)["checks"]}


@pytest.fixture
async def env(tmp_path: Path, pipeline: Pipeline) -> AsyncIterator[Env]:
    async with Simulator() as sim:
        a = await sim.add_http("police-110", "node-a")
        b = await sim.add_http("police-110", "node-b")
        proxy = await sim.add_tcp("zzd-proxy", "primary")
        path = tmp_path / "config.yaml"
        path.write_text(config_text(a, b, proxy))
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_path = str(tmp_path / "notify")
        notify.bind(notify_path)
        clock = ManualClock()
        events = io.StringIO()
        daemon = Daemon(
            path,
            load_config(path),
            clock=clock,
            notifier=Notifier(notify_path),
            environ={"WATCHDOG_USEC": "4000000"},
            stream=events,
            events=pipeline,
        )
        await daemon.start()
        yield Env(sim, a, b, proxy, path, clock, notify, notify_path, events, daemon)
        await daemon.shutdown()
        notify.close()


async def test_ready_status_and_endpoints(env: Env) -> None:
    """READY once scheduling runs; /healthz, /metrics and /status answer on loopback."""
    assert env.messages()[0].startswith("READY=1\nSTATUS=2 checks:")
    await env.tick()
    code, body = await env.get("/healthz")
    assert code == 200
    assert json.loads(body)["status"] == "ok"
    code, metrics = await env.get("/metrics")
    assert code == 200
    assert 'probe_success{check="police-110",node="node-a"} 1.0' in metrics
    assert 'hotline_probe_check_state{check="police-110",state="up"} 1.0' in metrics
    assert "hotline_probe_schedule_lateness_seconds_bucket" in metrics
    assert 'hotline_probe_build_info{version="' in metrics
    police = (await env.status())["police-110"]
    assert police["status"] == "up"
    assert police["active_node"] == "node-a"
    assert police["state"]["hard"] == "up"


async def test_failover_on_outage_and_failback_after_recovery(env: Env) -> None:
    """Preferred node stops: traffic moves to node-b at once, the state follows after
    confirm_after runs; node-a back: failback only after failback_after good runs."""
    await env.tick()
    await env.a.set_mode(Mode.REFUSING)
    await env.tick()
    police = (await env.status())["police-110"]
    assert police["active_node"] == "node-b"
    assert police["status"] == "up"  # hard state: one degraded run is a blip so far
    assert police["state"]["soft"] == "degraded"
    await env.tick()
    assert (await env.status())["police-110"]["status"] == "degraded"
    _, metrics = await env.get("/metrics")
    assert 'hotline_probe_active_node{check="police-110",node="node-b"} 1.0' in metrics
    assert 'hotline_probe_failovers_total{check="police-110"} 1.0' in metrics

    await env.a.set_mode(Mode.HEALTHY)
    await env.tick()
    police = (await env.status())["police-110"]
    assert police["active_node"] == "node-b"  # sticky: one good run of node-a is not enough
    assert police["state"]["failback_streak"] == 1
    await env.tick()
    assert (await env.status())["police-110"]["active_node"] == "node-a"

    actions = [
        e["event"]["action"]
        for e in env.emitted()
        if e.get("monitor", {}).get("id") == "police-110" and e["event"]["action"] != "check"
    ]
    assert actions.count("failover") == 1
    assert actions.count("failback") == 1
    assert "state-change" in actions


async def test_every_event_is_ecs_and_the_secret_never_leaks(env: Env) -> None:
    """Daemon events validate against ECS; the Authorization value appears nowhere."""
    await env.tick()
    await env.a.set_mode(Mode.REFUSING)
    await env.tick()
    await env.tick()
    events = env.emitted()
    assert {e["event"]["action"] for e in events} >= {
        "daemon-start",
        "check",
        "failover",
        "state-change",
    }
    for event in events:
        assert validate(event) == [], event
    _, status = await env.get("/status")
    _, metrics = await env.get("/metrics")
    for text in (env.events.getvalue(), status, metrics):
        assert "canary-daemon-7d1e" not in text


async def test_dependency_makes_children_unreachable(env: Env) -> None:
    """With the proxy down, the 110 link is unreachable, not down, and does not alert."""
    await env.tick()
    await env.proxy.set_mode(Mode.REFUSING)
    await env.a.set_mode(Mode.REFUSING)
    await env.b.set_mode(Mode.REFUSING)
    for _ in range(3):
        await env.tick()
    status = await env.status()
    assert status["zzd-proxy"]["status"] == "down"
    assert status["police-110"]["status"] == "unreachable"
    assert status["police-110"]["state"]["unreachable_because"] == ["zzd-proxy"]
    alerts = [
        e
        for e in env.emitted()
        if e["event"]["action"] == "state-change" and e["log"]["level"] != "debug"
    ]
    assert [e["monitor"]["id"] for e in alerts] == ["zzd-proxy"]


async def test_reload_keeps_state_and_refuses_a_bad_file(env: Env) -> None:
    """SIGHUP path: a bad file is refused (old config runs on); a good one adds a check."""
    await env.tick()
    env.messages()
    good = env.path.read_text()
    env.path.write_text(good + "  - {name: bad, kind: smtp, nodes: []}\n")
    assert not await env.daemon.reload()
    notes = env.messages()
    assert notes[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert notes[1].startswith("READY=1")
    refused = [e for e in env.emitted() if e["event"]["action"] == "daemon-reload-failed"]
    assert "unknown kind 'smtp'" in str(refused[0]["message"])
    assert [c.name for c in env.daemon.config.checks] == ["zzd-proxy", "police-110"]

    env.path.write_text(
        good
        + f"""  - name: grassroots
    kind: http
    nodes: [{{name: node-a, url: "{env.b.url}"}}]
"""
    )
    assert await env.daemon.reload()
    await env.tick(30)
    status = await env.status()
    assert status["grassroots"]["status"] == "up"
    assert status["police-110"]["state"]["runs"] >= 3


async def test_watchdog_pings_only_while_the_scheduler_turns(env: Env) -> None:
    """WATCHDOG=1 every half WatchdogSec while healthy; none once the scheduler has died."""
    env.messages()
    await env.tick(2)
    assert "WATCHDOG=1" in env.messages()
    scheduler_task = next(t for t in env.daemon._tasks if t.get_name() == "scheduler")
    scheduler_task.cancel()
    await settle()
    await env.clock.advance(4)  # past the scheduler's liveness slack (3 ticks)
    env.messages()
    await env.clock.advance(10)
    assert "WATCHDOG=1" not in env.messages()
    code, body = await env.get("/healthz")
    assert code == 503
    assert "stalled" in body
    assert any(e["event"]["action"] == "watchdog-withheld" for e in env.emitted())


async def test_shutdown_sends_stopping(env: Env) -> None:
    """SIGTERM path: STOPPING=1, the endpoint closes, a stop event is written."""
    await env.tick()
    env.messages()
    await env.daemon.shutdown()
    assert env.messages() == ["STOPPING=1"]
    assert env.daemon.web is None
    assert env.emitted()[-1]["event"]["action"] == "daemon-stop"


@pytest.mark.parametrize(
    ("addition", "words"),
    [
        (
            "  - {name: zzd-proxy, kind: tcp, nodes: [{name: n, address: 'h.invalid:1'}]}\n",
            "check name 'zzd-proxy' is used by",
        ),
        (
            "  - {name: loop-a, kind: tcp, depends_on: [loop-b], nodes: [{name: n, "
            "address: 'a.invalid:1'}]}\n"
            "  - {name: loop-b, kind: tcp, depends_on: [loop-a], nodes: [{name: n, "
            "address: 'b.invalid:1'}]}\n",
            "depends_on forms a cycle",
        ),
        (
            "  - {name: sec, kind: http, headers: {X-Token: '${env:HOTLINE_UNSET_SECRET}'}, "
            "nodes: [{name: n, url: 'http://127.0.0.1:1/'}]}\n",
            "environment variable HOTLINE_UNSET_SECRET is not set",
        ),
    ],
    ids=["duplicate-name", "dependency-cycle", "missing-secret"],
)
async def test_reload_refuses_each_kind_of_bad_file(env: Env, addition: str, words: str) -> None:
    """A duplicate name, a dependency cycle or a missing secret: refused, old config runs."""
    env.path.write_text(env.path.read_text() + addition)
    assert not await env.daemon.reload()
    refused = [e for e in env.emitted() if e["event"]["action"] == "daemon-reload-failed"]
    assert words in str(refused[-1]["message"])
    assert [c.name for c in env.daemon.config.checks] == ["zzd-proxy", "police-110"]
    await env.tick()
    assert (await env.status())["police-110"]["status"] == "up"


async def test_reload_rereads_tls_files(env: Env) -> None:
    """After SIGHUP the TLS contexts are built again, so rotated certificate files count."""
    before = env.daemon.ctx.ssl_context(None)
    assert env.daemon.ctx.ssl_context(None) is before  # cached between runs
    assert await env.daemon.reload()
    assert env.daemon.ctx.ssl_context(None) is not before
