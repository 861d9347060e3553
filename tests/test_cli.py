"""`probe` as a user runs it: a real process against the loopback simulators.

The simulators serve from this test's event loop while `probe` runs as a child
process, so everything between them crosses real sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulator import Mode, Simulator
from tests.cli_run import probe
from tests.event_schema import validate

pytestmark = pytest.mark.e2e  # every test here runs `probe` as a process

CANARY_TOKEN = "canary-tok-5f2e9a"
CANARY_PASSWORD = "canary-pw-71c3"
CANARY_QUERY = "canary-q-0b4d"


@pytest.fixture
async def topology(tmp_path: Path) -> AsyncIterator[tuple[Simulator, Path]]:
    """Three links: one healthy, one whose preferred node refuses, one with no node left."""
    async with Simulator() as sim:
        ok = await sim.add_http("grassroots", "node-a")
        a = await sim.add_http("police-110", "node-a", mode=Mode.REFUSING)
        b = await sim.add_http("police-110", "node-b")
        p = await sim.add_http("province", "primary", mode=Mode.ERRORING)
        s = await sim.add_http("province", "standby", mode=Mode.HANGING)
        db = await sim.add_tcp("db-1", "primary", banner=b"5.5.5-10.11.6-MariaDB\n")
        port_ok = ok.port
        config = tmp_path / "config.yaml"
        config.write_text(f"""
defaults: {{timeout: 500ms, retries: {{attempts: 2, backoff: 20ms}}}}
checks:
  - name: grassroots
    title: 基层智治平台对接
    kind: http
    nodes: [{{name: node-a, url: "http://ops:{CANARY_PASSWORD}@127.0.0.1:{port_ok}/health"}}]
    expect: {{json: {{status: ok}}}}
  - name: police-110
    title: 110 接处警平台对接
    kind: http
    headers: {{Authorization: "Bearer ${{env:POLICE_TOKEN}}"}}
    nodes:
      - {{name: node-a, url: "{a.url}?token={CANARY_QUERY}"}}
      - {{name: node-b, url: "{b.url}?token={CANARY_QUERY}"}}
  - name: province
    kind: http
    nodes: [{{name: primary, url: "{p.url}"}}, {{name: standby, url: "{s.url}"}}]
  - name: db-1
    kind: tcp
    expect: {{reply_regex: MariaDB}}
    nodes: [{{name: primary, address: "{db.address}"}}]
""")
        yield sim, config


ENV = {"POLICE_TOKEN": CANARY_TOKEN}


async def test_all_json_shows_up_degraded_and_down(topology: tuple[Simulator, Path]) -> None:
    """--json: one document with up, degraded (served by node-b) and down, with error types."""
    _, config = topology
    run = await probe("--all", "--json", "-c", str(config), "--events", "off", env=ENV)
    assert run.code == 2, run.stderr
    doc = json.loads(run.stdout)
    assert doc["status"] == "down"
    checks = {c["name"]: c for c in doc["checks"]}
    assert {n: c["status"] for n, c in checks.items()} == {
        "grassroots": "up",
        "police-110": "degraded",
        "province": "down",
        "db-1": "up",
    }
    police = checks["police-110"]
    assert police["active_node"] == "node-b"
    node_a, node_b = police["nodes"]
    assert node_a["error"]["type"] == "connection_refused"
    assert [a["number"] for a in node_a["attempts"]] == [1, 2]
    assert node_b["status"] == "up"
    assert node_b["error"] is None
    province = checks["province"]
    assert [n["error"]["type"] for n in province["nodes"]] == ["http_status", "timeout"]
    for check in doc["checks"]:
        assert set(check) >= {"name", "kind", "status", "active_node", "duration_ms", "nodes"}
        for node in check["nodes"]:
            assert set(node) >= {"name", "status", "attempts", "duration_ms", "error"}


async def test_run_time_is_the_slowest_check_not_the_sum(
    topology: tuple[Simulator, Path],
) -> None:
    """Checks run concurrently: the whole run takes about the slowest check, not the sum."""
    _, config = topology
    import time

    started = time.monotonic()
    run = await probe("--all", "--json", "-c", str(config), "--events", "off", env=ENV)
    wall = time.monotonic() - started
    doc = json.loads(run.stdout)
    durations = [c["duration_ms"] / 1000 for c in doc["checks"]]
    assert max(durations) >= 1.0  # province: two hanging attempts of 500 ms
    assert sum(durations) > max(durations)
    # Process start-up is the rest; run one after another it would be the sum.
    assert wall < max(durations) + 1.5
    assert wall < sum(durations) + 1.5


async def test_events_are_ecs_and_secrets_never_leak(topology: tuple[Simulator, Path]) -> None:
    """stderr carries one ECS event per check plus the failover; no canary appears anywhere."""
    _, config = topology
    run = await probe("--all", "--json", "-c", str(config), "--events", "on", env=ENV)
    events = [json.loads(line) for line in run.stderr.splitlines()]
    actions = sorted(e["event"]["action"] for e in events if e["event"]["action"] != "attempt")
    assert actions == ["check", "check", "check", "check", "failover"]
    # Each failed attempt is an event of its own, in the run's check_group.
    attempts = [e for e in events if e["event"]["action"] == "attempt"]
    assert attempts
    assert all(e["event"]["outcome"] == "failure" and e["error"]["type"] for e in attempts)
    # Numbered one by one in the order written, each with its own id.
    sequence = [e["event"]["sequence"] for e in events]
    assert sequence == list(range(sequence[0], sequence[0] + len(events)))
    assert len({e["event"]["id"] for e in events}) == len(events)
    for event in events:
        assert validate(event) == [], event
        assert event["ecs"]["version"].startswith("8.")
        assert event["@timestamp"].endswith("Z")
    failover = next(e for e in events if e["event"]["action"] == "failover")
    assert failover["hotline_probe"] == {"from": "node-a", "to": "node-b", "suppressed": False}
    police = next(
        e
        for e in events
        if e.get("monitor", {}).get("id") == "police-110" and e["event"]["action"] == "check"
    )
    assert police["url"]["full"].startswith("http://127.0.0.1:")
    assert police["event"]["duration"] > 0
    for canary in (CANARY_TOKEN, CANARY_PASSWORD, CANARY_QUERY):
        assert canary not in run.stdout
        assert canary not in run.stderr


async def test_nagios_line(topology: tuple[Simulator, Path]) -> None:
    """--format nagios: CRITICAL; the first line names each check that is not up, worst
    first, with its cause and active node (or that none answered); then one line per
    check; perfdata per check; with --events auto nothing on stderr, which a monitoring
    core would show as the status."""
    sim, config = topology
    run = await probe("--all", "--format", "nagios", "-c", str(config), env=ENV)
    assert run.code == 2
    assert run.stderr == ""
    first, *long_output = run.stdout.splitlines()
    status, perfdata = first.split(" | ")
    assert status == (
        "HOTLINE-PROBE CRITICAL - province DOWN (http_status, timeout, no node answered); "
        "police-110 DEGRADED (connection_refused, active node node-b); 2 of 4 up"
    )
    values = dict(item.split("=", 1) for item in perfdata.split())
    names = ("grassroots", "police-110", "province", "db-1")
    assert list(values) == [f"'{n}_{what}'" for n in names for what in ("state", "duration")]
    states = {n: values[f"'{n}_state'"] for n in names}
    assert states == {
        "grassroots": "0;0;1;0;2",
        "police-110": "1;0;1;0;2",
        "province": "2;0;1;0;2",
        "db-1": "0;0;1;0;2",
    }
    for name in names:
        assert re.fullmatch(r"\d+\.\d{3}s;;;0", values[f"'{name}_duration'"]), name
    refused_port = sim.node("police-110", "node-a").port
    province, *others = long_output
    # The timeout's budget is what the check's deadline left the last attempt.
    assert re.fullmatch(
        r"DOWN province - no node answered - primary: http_status \(status 503, expected 2xx\); "
        r"standby: timeout \(no answer within \d+ms, waiting for [a-z ]+\)",
        province,
    ), province
    assert others == [
        "DEGRADED police-110 (110 接处警平台对接) - active node node-b - "
        f"node-a: connection_refused (connection refused by 127.0.0.1:{refused_port})",
        "UP grassroots (基层智治平台对接) - active node node-a",
        "UP db-1 - active node primary",
    ]
    for canary in (CANARY_TOKEN, CANARY_PASSWORD, CANARY_QUERY):
        assert canary not in run.stdout
    # Asked for, events still come (on stderr, where a terminal user wants them).
    asked = await probe("--all", "--format", "nagios", "-c", str(config), "--events", "on", env=ENV)
    assert asked.stdout.split(" | ")[0] == status
    events = [json.loads(line) for line in asked.stderr.splitlines()]
    assert sorted(e["monitor"]["id"] for e in events if e["event"]["action"] == "check") == [
        "db-1",
        "grassroots",
        "police-110",
        "province",
    ]


async def test_named_checks_and_exit_codes(topology: tuple[Simulator, Path]) -> None:
    """Exit 0 when the named checks are up, 1 when one is degraded."""
    _, config = topology
    up = await probe("grassroots", "db-1", "-c", str(config), "--events", "off", env=ENV)
    assert up.code == 0, up.stderr
    assert "grassroots" in up.stdout
    assert "police-110" not in up.stdout
    degraded = await probe("police-110", "-c", str(config), "--events", "off", env=ENV)
    assert degraded.code == 1
    assert "DEGRADED" in degraded.stdout
    assert "node-b" in degraded.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "say what to run"),
        (("--all", "grassroots"), "not both"),
        (("--bogus",), "unrecognized arguments"),
        (("nonexistent",), "unknown check nonexistent"),
        (("--all", "--concurrency", "0"), "--concurrency must be at least 1"),
    ],
)
async def test_usage_errors_exit_3(
    topology: tuple[Simulator, Path], args: tuple[str, ...], words: str
) -> None:
    """Bad arguments are UNKNOWN (3) for Nagios, with a message and no traceback."""
    _, config = topology
    run = await probe(*args, "-c", str(config), env=ENV)
    assert run.code == 3
    assert words in run.stderr
    assert "Traceback" not in run.stderr


async def test_missing_secret_is_a_config_error(topology: tuple[Simulator, Path]) -> None:
    """Without POLICE_TOKEN in the environment the run does not start: exit 3, named."""
    _, config = topology
    run = await probe("--all", "-c", str(config), env={"POLICE_TOKEN": ""})
    assert run.code == 3
    assert "checks[1].headers.Authorization" in run.stderr


async def test_list_and_check_config(topology: tuple[Simulator, Path]) -> None:
    """--list shows checks with nodes and titles; --check-config confirms and exits 0."""
    _, config = topology
    listed = await probe("--list", "-c", str(config), env=ENV)
    assert listed.code == 0
    assert "police-110  http  node-a, node-b" in listed.stdout
    assert "110 接处警平台对接" in listed.stdout
    checked = await probe("--check-config", "-c", str(config), env=ENV)
    assert checked.code == 0
    assert "OK, 4 checks (http, tcp)" in checked.stdout


async def test_demo_shows_failover_and_exits() -> None:
    """`probe demo` reports the 110 link degraded on node-b, then mends it, and exits 0."""
    run = await probe("demo", "--rounds", "3", "--interval", "0")
    assert run.code == 0, run.stderr
    first, _, third = run.stdout.split("== round ")[1:4]
    assert "police-110" in first
    assert "failed over from node-a to node-b (connection_refused)" in first
    assert "province-minhu: failed over from primary to standby (timeout)" in run.stdout
    assert "tls_expired" in third
    assert "DOWN" in third


@pytest.mark.parametrize(
    ("check", "needs_aiohttp"),
    [
        ('{name: a, kind: http, nodes: [{name: n, url: "http://127.0.0.1:9/"}]}', False),
        (
            '{name: a, kind: http, method: HEAD, nodes: [{name: n, url: "http://127.0.0.1:9/"}]}',
            True,
        ),
        ('{name: a, kind: http, nodes: [{name: n, url: "https://127.0.0.1:9/"}]}', True),
        ('{name: a, kind: tcp, nodes: [{name: n, address: "127.0.0.1:9"}]}', False),
    ],
    ids=["plain-get", "head", "https", "tcp"],
)
def test_what_the_checks_need_is_imported_before_they_run(check: str, needs_aiohttp: bool) -> None:
    """PROBES.prepare imports each kind, and aiohttp when a request needs it, before any
    attempt's clock starts (an import inside one was timed as its latency); a run of
    plain checks does not import aiohttp at all. In a fresh interpreter, as `probe` is."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from config.load import parse_config\n"
        "from probes import PROBES\n"
        f"config = parse_config('checks:\\n  - {check}\\n')\n"
        "assert 'aiohttp' not in sys.modules\n"
        "PROBES.prepare(config.checks)\n"
        "print('aiohttp' in sys.modules, f'probes.{config.checks[0].kind}' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == [str(needs_aiohttp), "True"]
