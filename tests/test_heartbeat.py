"""POST /heartbeat/<check> on the daemon's endpoint, and push checks under the daemon:
the token is checked in constant time and never logged, bodies are capped, unknown and
non-push checks are 404, and heartbeats outlive a restart."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config.load import load_config
from core.clock import ManualClock
from core.heartbeats import FILE_NAME, HeartbeatStore
from daemon import Daemon
from engine.notify import Notifier
from events.log import Pipeline
from tests.daemon_time import advance_and_finish
from tests.event_schema import validate
from web.app import HEARTBEAT_MAX_BODY, bound_port
from web.push import REJECTION_INTERVAL

TOKEN = "canary-heartbeat-token-9f0a"
CHECK = "province-callback"


def config_text(state_dir: Path) -> str:
    return f"""
listen: "127.0.0.1:0"
state_dir: {state_dir}
defaults: {{interval: 60s, confirm_after: 2, recover_after: 1}}
checks:
  - name: {CHECK}
    title: 省民呼数据回传
    kind: freshness
    max_age: 15m
    source: {{type: push, token: {TOKEN}}}
  - name: receiver-log
    kind: freshness
    max_age: 15m
    source: {{type: file, path: {state_dir}/absent.log}}
"""


@dataclass
class Env:
    daemon: Daemon
    clock: ManualClock
    events: io.StringIO
    url: str

    async def post(
        self, check: str = CHECK, *, token: str | None = TOKEN, data: Any = None, **kw: Any
    ) -> tuple[int, str]:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                kw.pop("method", "POST"),
                f"{self.url}/heartbeat/{check}",
                headers=headers,
                data=data,
                **kw,
            ) as response,
        ):
            return response.status, await response.text()

    async def tick(self, seconds: float) -> None:
        await advance_and_finish(self.daemon, self.clock, seconds)

    def state(self, check: str = CHECK) -> str:
        return str(self.daemon.state.check_state(check).hard)

    def emitted(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.events.getvalue().splitlines()]


async def start_daemon(
    state_dir: Path, tmp_path: Path, clock: ManualClock, pipeline: Pipeline
) -> Env:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(state_dir))
    events = io.StringIO()
    daemon = Daemon(
        path,
        load_config(path),
        clock=clock,
        notifier=Notifier(None),
        environ={},
        stream=events,
        events=pipeline,
    )
    await daemon.start()
    assert daemon.web is not None
    return Env(daemon, clock, events, f"http://127.0.0.1:{bound_port(daemon.web)}")


@pytest.fixture
async def env(tmp_path: Path, pipeline: Pipeline) -> AsyncIterator[Env]:
    environment = await start_daemon(tmp_path / "state", tmp_path, ManualClock(), pipeline)
    yield environment
    await environment.daemon.shutdown()


async def test_heartbeat_is_recorded_and_persisted(env: Env, tmp_path: Path) -> None:
    """204 with the right token (any case of "Bearer"); the time lands in state_dir."""
    assert await env.post() == (204, "")
    stored = await HeartbeatStore(tmp_path / "state").get(CHECK)
    assert stored.last == env.clock.now()
    await env.clock.advance(5)
    assert (await env.post(token=None, headers={"Authorization": f"bearer  {TOKEN} "}))[0] == 204
    document = json.loads((tmp_path / "state" / FILE_NAME).read_text())
    assert document["checks"][CHECK]["last"] == env.clock.now().isoformat()


@pytest.mark.parametrize(
    ("token", "why"), [(None, "no bearer token"), ("canary-guess-1234567890", "wrong token")]
)
async def test_missing_or_wrong_token_is_401_and_logged_without_it(
    env: Env, token: str | None, why: str
) -> None:
    """Refused with 401; the event names the check and the peer, never a token."""
    code, body = await env.post(token=token)
    assert code == 401
    assert json.loads(body) == {"error": why}
    assert (await env.daemon.heartbeats.get(CHECK)).last is None
    (event,) = [e for e in env.emitted() if e["event"]["action"] == "heartbeat-rejected"]
    assert event["message"] == f"heartbeat for {CHECK} refused: {why}"
    assert event["source"]["address"] == "127.0.0.1"
    assert validate(event) == []
    text = env.events.getvalue()
    assert TOKEN not in text and "canary-guess" not in text


async def test_a_flood_of_wrong_tokens_is_summarised_per_source_and_interval(
    env: Env,
) -> None:
    """Each refusal was an event, so a flood could push check events out of a full
    spool: the first refusal is written at once, the rest of the interval is one event
    with their count, and after a quiet interval the next refusal is written at once."""

    def rejected() -> list[dict[str, Any]]:
        return [e for e in env.emitted() if e["event"]["action"] == "heartbeat-rejected"]

    for _ in range(30):
        assert (await env.post(token="canary-guess-flood"))[0] == 401
    (first,) = rejected()
    assert first["message"] == f"heartbeat for {CHECK} refused: wrong token"
    assert first["hotline_probe"]["count"] == 1
    await env.clock.advance(REJECTION_INTERVAL)
    _, summary = rejected()
    assert summary["hotline_probe"]["count"] == 29
    assert summary["service"]["name"] == CHECK
    assert summary["source"]["address"] == "127.0.0.1"
    assert "29 more times" in summary["message"]
    assert validate(summary) == []
    await env.clock.advance(REJECTION_INTERVAL)  # quiet: the episode ends, no event
    assert len(rejected()) == 2
    assert (await env.post(token=None))[0] == 401
    assert rejected()[-1]["message"] == f"heartbeat for {CHECK} refused: no bearer token"
    assert "canary-guess" not in env.events.getvalue()


async def test_refusals_counted_when_the_daemon_stops_are_written(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    """A stop within the interval writes the count it holds: no refusal goes unsaid."""
    env = await start_daemon(tmp_path / "state", tmp_path, ManualClock(), pipeline)
    try:
        for _ in range(4):
            assert (await env.post(token=None))[0] == 401
    finally:
        await env.daemon.shutdown()
    counts = [
        e["hotline_probe"]["count"]
        for e in env.emitted()
        if e["event"]["action"] == "heartbeat-rejected"
    ]
    assert counts == [1, 3]


async def test_token_that_is_not_utf8_is_401_and_logged_without_it(env: Env) -> None:
    """Bytes that are not UTF-8 in the Authorization header are a wrong token (401 and a
    heartbeat-rejected event), never a 500 with a traceback; the bytes are not logged."""
    host, port = env.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /heartbeat/{CHECK} HTTP/1.1\r\nHost: {host}\r\n".encode()
        + b"Authorization: Bearer canary-\xff\xfe\xe4-guess\r\n"
        + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), head
    assert json.loads(body) == {"error": "wrong token"}
    assert (await env.daemon.heartbeats.get(CHECK)).last is None
    (event,) = [e for e in env.emitted() if e["event"]["action"] == "heartbeat-rejected"]
    assert event["message"] == f"heartbeat for {CHECK} refused: wrong token"
    assert validate(event) == []
    text = env.events.getvalue()
    assert "canary-" not in text and TOKEN not in text and "Traceback" not in text


@pytest.mark.parametrize("check", ["receiver-log", "no-such-check", "UPPER", "a" * 70])
async def test_unknown_or_not_push_is_404(env: Env, check: str) -> None:
    """Only push checks take heartbeats; others are 404 whatever the token."""
    assert (await env.post(check))[0] == 404


async def test_other_methods_are_405(env: Env) -> None:
    """GET or PUT on a heartbeat path is 405, not a heartbeat."""
    assert (await env.post(method="GET"))[0] == 405
    assert (await env.post(method="PUT"))[0] == 405


async def test_oversized_body_is_413(env: Env) -> None:
    """A body over 64 KiB is refused, announced or streamed, and records nothing."""
    big = b"x" * (HEARTBEAT_MAX_BODY + 1)
    assert (await env.post(data=big))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * (HEARTBEAT_MAX_BODY // 2)

    assert (await env.post(data=chunks()))[0] == 413
    assert (await env.daemon.heartbeats.get(CHECK)).last is None
    assert (await env.post(data=b'{"callback": 7}'))[0] == 204


async def test_push_check_under_the_daemon(env: Env, tmp_path: Path) -> None:
    """Unknown until the first heartbeat, up with it, down after 15 minutes of silence,
    and the heartbeat survives a restart of the daemon."""
    await env.tick(60)
    assert env.state() == "unknown"
    assert env.state("receiver-log") == "unknown"  # the file was never written
    assert await env.post() == (204, "")
    await env.tick(60)
    assert env.state() == "up"
    await env.tick(15 * 60)
    await env.tick(60)
    assert env.state() == "down"
    (change,) = [
        e
        for e in env.emitted()
        if e["event"]["action"] == "state-change" and e["hotline_probe"]["to"] == "down"
    ]
    assert change["event"]["reason"].startswith("stale: newest sign of life")

    await env.daemon.shutdown()
    restarted = await start_daemon(tmp_path / "state", tmp_path, env.clock, env.daemon.events)
    env.daemon = restarted.daemon  # the fixture shuts this one down
    assert (await restarted.daemon.heartbeats.get(CHECK)).last is not None
    await restarted.tick(60)
    assert restarted.state() == "down"  # remembered: still stale, not "never seen"
