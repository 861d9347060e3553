"""Idle clients of the endpoint cannot starve the probes (issue 12, item 1).

Idle connections used to be held forever: about 1,100 of them took all 1,024 file
descriptors, /healthz stopped answering and every check went down with "Too many open
files". Now the endpoint bounds the wait for a request head and the connections it
holds, the daemon keeps descriptors for probing, and a probe that still runs out says
so as ``local_resources``: the probe host's fault, a check ``unknown``, never an outage.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import resource
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

import web.app
from core.errors import ErrorType, ProbeError
from events.log import Pipeline
from probes.net import os_failure
from tests.cli_run import CWD, command
from tests.ports import free_port
from web.app import bound_port, build_app, serve
from web.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "hotline-probe.service"

HEAD_TIMEOUT = 0.4  # short for the test; the endpoint's default is REQUEST_HEAD_TIMEOUT
CAP = 20


@asynccontextmanager
async def endpoint(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    """The endpoint with a short head timeout and a small cap, set through the module's
    defaults (as the daemon gets them); yields its port."""
    monkeypatch.setattr(web.app, "REQUEST_HEAD_TIMEOUT", HEAD_TIMEOUT, raising=False)
    monkeypatch.setattr(web.app, "MAX_CONNECTIONS", CAP, raising=False)
    app = build_app(
        metrics=Metrics(version="0"),
        status=lambda: {"status": "up", "checks": []},
        healthy=lambda: (True, "ok"),
        scrub=lambda text: text,
        emit=Pipeline().emit,
    )
    runner = await serve(app, "127.0.0.1:0")
    try:
        yield bound_port(runner)
    finally:
        await runner.cleanup()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect_idle(port: int, count: int, head: bytes = b"") -> list[Connection]:
    """``count`` connections that send ``head`` (by default nothing) and then wait."""
    connections = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if head:
            writer.write(head)
        connections.append((reader, writer))
    return connections


async def closed(connection: Connection) -> bool:
    """Whether the endpoint closed it (EOF or a reset) within a moment; what it sent
    before (an answer) is read and dropped."""
    reader, _ = connection
    try:
        async with asyncio.timeout(0.05):
            while await reader.read(65536):
                pass
            return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.transport.abort()


async def healthz(port: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(5)) as r,
    ):
        return r.status


async def test_idle_connections_are_capped_and_closed_after_the_head_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with endpoint(monkeypatch) as port:
        silent = await connect_idle(port, 3 * CAP)
        slow = await connect_idle(port, 5, head=b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        idle = silent + slow
        try:
            # Beyond the cap the oldest connections still without a request are closed
            # at once, so a real client gets in while the others wait.
            assert await healthz(port) == 200
            still_open = [c for c in idle if not await closed(c)]
            assert len(still_open) < CAP, f"{len(still_open)} idle connections held, cap {CAP}"
            # The rest go when the head timeout ends, a half-sent head included.
            await asyncio.sleep(HEAD_TIMEOUT + 0.2)
            lingering = [c for c in still_open if not await closed(c)]
            assert lingering == [], f"{len(lingering)} idle connections outlived the timeout"
        finally:
            close_all(idle)


async def test_a_keep_alive_client_is_not_cut_by_the_head_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The head timeout is for the first request; a client that sent one keeps its
    connection for further requests (KEEPALIVE_TIMEOUT bounds that)."""
    async with endpoint(monkeypatch) as port:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"http://127.0.0.1:{port}/healthz"
            async with session.get(url) as first:
                assert first.status == 200
                await first.read()
                peer = first.connection and first.connection.transport
            await asyncio.sleep(HEAD_TIMEOUT + 0.2)
            async with session.get(url) as second:
                assert second.status == 200
                # The same connection served both: it was not closed in between.
                assert (
                    peer is None
                    or second.connection is None
                    or (second.connection.transport is peer)
                )


async def test_at_the_cap_the_oldest_idle_keep_alive_connection_makes_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connections that already sent a request are past the head timeout; at the cap
    the oldest of them that is idle is closed, not the new client."""
    async with endpoint(monkeypatch) as port:
        served = await connect_idle(port, CAP, head=b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            for reader, _ in served:
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            assert await healthz(port) == 200
            assert await closed(served[0])
            assert not any([await closed(c) for c in served[2:]])
        finally:
            close_all(served)


async def test_a_heartbeat_whose_body_never_comes_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(web.app, "REQUEST_BODY_TIMEOUT", HEAD_TIMEOUT, raising=False)
    recorded: list[str] = []

    async def record(name: str) -> None:
        recorded.append(name)

    app = build_app(
        metrics=Metrics(version="0"),
        status=lambda: {"checks": []},
        healthy=lambda: (True, "ok"),
        scrub=lambda text: text,
        emit=Pipeline().emit,
        push_token=lambda name: SecretStr("s3cret") if name == "job" else None,
        record_heartbeat=record,
    )
    runner = await serve(app, "127.0.0.1:0")
    try:
        (slow,) = await connect_idle(
            bound_port(runner),
            1,
            head=b"POST /heartbeat/job HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
            b"Content-Length: 10\r\n\r\nabc",
        )
        async with asyncio.timeout(HEAD_TIMEOUT + 5):
            answer = await slow[0].readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert recorded == []
        close_all([slow])
    finally:
        await runner.cleanup()


@pytest.mark.e2e
async def test_probed_raises_its_soft_descriptor_limit_to_the_hard_one(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
listen: "127.0.0.1:{free_port()}"
state_dir: "{tmp_path / "state"}"
checks:
  - name: local
    kind: tcp
    nodes: [{{name: primary, address: "127.0.0.1:{free_port()}"}}]
""")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 2048))

    process = await asyncio.create_subprocess_exec(
        *command("probed"),
        *("--config", str(config)),
        cwd=CWD,
        preexec_fn=lower,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(20):
            while True:
                if _open_files_limits(process.pid) == ["2048", "2048"]:
                    break
                await asyncio.sleep(0.05)
    finally:
        process.kill()
        await process.wait()


def _open_files_limits(pid: int) -> list[str]:
    """[soft, hard] of the process's RLIMIT_NOFILE, as /proc tells them."""
    lines = Path(f"/proc/{pid}/limits").read_text().splitlines()
    return next(line for line in lines if "open files" in line).split()[3:5]


def test_out_of_descriptors_is_the_probe_hosts_fault_not_the_links() -> None:
    failure = os_failure(OSError(errno.EMFILE, os.strerror(errno.EMFILE)), "db-1:3306")
    assert failure.error.type is ErrorType.LOCAL_RESOURCES
    assert "Too many open files" in failure.error.message
    # Not the proxy's fault either, whatever the caller says failed.
    proxied = os_failure(OSError(errno.ENFILE, "x"), "the proxy p:3128", kind=ErrorType.PROXY)
    assert proxied.error.type is ErrorType.LOCAL_RESOURCES
    error = ProbeError(ErrorType.LOCAL_RESOURCES, "x")
    assert not error.judged and not error.retryable


def test_unit_sets_a_descriptor_limit_well_above_the_endpoints_cap() -> None:
    found = re.search(r"^LimitNOFILE=(\d+)$", UNIT.read_text(), re.MULTILINE)
    assert found, "the unit sets no LimitNOFILE="
    assert int(found[1]) >= 4 * web.app.MAX_CONNECTIONS


async def _probe_with_nofile(limit: int, config: Path) -> tuple[int, str, str]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    process = await asyncio.create_subprocess_exec(
        *command("probe"),
        *("--config", str(config), "--all", "--json", "--events", "off"),
        cwd=CWD,
        preexec_fn=lower,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.e2e
async def test_a_probe_out_of_descriptors_is_unknown_not_down(tmp_path: Path) -> None:
    """`probe` with hardly a descriptor to spare: its connects fail with EMFILE.

    Twenty checks run at once, each holding its connection until the server's banner
    (sent after a pause), so at the lowest limit at which `probe` starts at all some get
    a socket and some do not. Those that do are up; the others must say
    local_resources and be unknown (exit 3), not an outage."""
    held: list[asyncio.StreamWriter] = []

    async def banner(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await asyncio.sleep(0.3)
        writer.write(b"HELLO hotline\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    check = """
  - name: c{n}
    kind: tcp
    timeout: 5s
    expect: {{reply_regex: '^HELLO'}}
    nodes: [{{name: primary, address: "127.0.0.1:{port}"}}]"""
    config = tmp_path / "config.yaml"
    config.write_text("checks:" + "".join(check.format(n=n, port=port) for n in range(20)))
    try:
        for limit in range(6, 64):
            code, stdout, stderr = await _probe_with_nofile(limit, config)
            if stdout.startswith("{"):
                break
        else:
            pytest.fail(f"probe never started under a descriptor limit below 64: {stderr}")
    finally:
        server.close()
        for writer in held:
            writer.transport.abort()
    checks = json.loads(stdout)["checks"]
    short = [c for c in checks if c["nodes"][0]["error"]]
    assert short, f"every check got a socket at limit {limit}: the test proves nothing"
    for entry in short:
        (node,) = entry["nodes"]
        assert node["error"]["type"] == "local_resources", (limit, node["error"])
        assert "Too many open files" in node["error"]["message"]
        assert len(node["attempts"]) == 1  # not retried: waiting frees no descriptor
        assert entry["status"] == "unknown"
    assert {c["status"] for c in checks} <= {"up", "unknown"}
    assert code == 3  # UNKNOWN, not CRITICAL


async def _local_check(port: int) -> dict[str, Any]:
    """The daemon's /status entry of its one check (an empty one while it cannot answer)."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/status") as response,
        ):
            document = await response.json()
    except aiohttp.ClientError:
        return {"status": None}
    (check,) = document["checks"]
    return dict(check)


@pytest.mark.e2e
async def test_probed_answers_healthz_past_its_descriptor_limit(tmp_path: Path) -> None:
    """`probed` with 128 descriptors and 300 idle local clients: /healthz still answers
    and its check is still up. It used to stop accepting (EMFILE) and probe nothing."""
    limit = 128
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    target = await asyncio.start_server(hold, "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"""
listen: "127.0.0.1:{port}"
state_dir: "{tmp_path / "state"}"
defaults: {{interval: 200ms, timeout: 1s}}
checks:
  - name: local
    kind: tcp
    nodes: [{{name: primary, address: "127.0.0.1:{target_port}"}}]
""")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    process = await asyncio.create_subprocess_exec(
        *command("probed"),
        "--config",
        str(config),
        cwd=CWD,
        preexec_fn=lower,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    idle: list[Connection] = []
    try:
        async with asyncio.timeout(20):
            while True:
                if (await _local_check(port))["status"] == "up":
                    break
                await asyncio.sleep(0.1)
        flooded = datetime.now(UTC)
        for _ in range(300):
            try:
                idle += await connect_idle(port, 1)
            except OSError:
                break  # the test's own descriptors: enough pressure already
        assert len(idle) > limit
        assert await healthz(port) == 200
        # Runs that started after the flood still reach the target and find it up.
        async with asyncio.timeout(10):
            while True:
                check = await _local_check(port)
                started = datetime.fromisoformat(check["started_at"].replace("Z", "+00:00"))
                if started > flooded:
                    break
                await asyncio.sleep(0.1)
        assert check["status"] == "up", check
    finally:
        close_all(idle)
        process.kill()
        await process.wait()
        target.close()
        for writer in accepted:
            writer.transport.abort()
