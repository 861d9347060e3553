"""Icinga 2 and Nagios read `probe`'s output right.

First the rendering on its own: the first line, the long output, the perfdata and the
byte limits of Nagios, for a run and for the daemon's /status. Then `probe --from-daemon`
as a process against a served /status. Last a real Icinga 2 (Debian's 2.13) in the
foreground, running the CheckCommand of docs/icinga.md every second against the loopback
simulators and a real `probed`: what Icinga recorded is read back from its perfdata
files, from the lines its Graphite writer sends to a listener of the test's own, and
from its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import pwd
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from engine import report
from simulator import Mode, SimNode, Simulator
from tests import test_cli
from tests.cli_run import INSTALLED, ROOT, command, probe
from tests.endpoint import serving
from tests.event_schema import validate
from tests.ports import free_port
from tests.test_cli import CANARY_PASSWORD, CANARY_QUERY, CANARY_TOKEN, ENV
from tests.test_daemon_process import start_probed

topology = test_cli.topology  # the fixture, shared: pytest finds it under this name

ICINGA2 = "/usr/sbin/icinga2"
INSTALL_HINT = "run `scripts/install-test-deps.sh .venv` as root (or `make deps`)"
CALLBACK_TOKEN = "canary-callback-8d1e"
PERFDATA = re.compile(r"^'(?:[^']|'')+'=-?\d+(\.\d+)?[a-zA-Z%]*(;[-\d.]*){0,4}$")


# --- rendering ----------------------------------------------------------------------


def node(name: str, status: str, error: tuple[str, str] | None = None) -> dict[str, Any]:
    attempts: list[dict[str, Any]] = [
        {"number": 1, "duration_ms": 12.0, "error": None, "phases_ms": {}}
    ]
    return {
        "name": name,
        "target": f"http://127.0.0.1/{name}",
        "status": status,
        "duration_ms": 12.0,
        "error": {"type": error[0], "message": error[1]} if error else None,
        "attempts": [] if status == "skipped" else attempts,
        "details": {},
        "warnings": [],
    }


def entry(name: str, status: str, nodes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    answered = [n["name"] for n in nodes if n["status"] == "up"]
    return {
        "name": name,
        "title": "",
        "kind": "http",
        "status": status,
        "active_node": answered[0] if answered else None,
        "started_at": "2026-12-04T08:00:00Z",
        "duration_ms": 25.0,
        "warnings": [],
        "nodes": nodes,
        **extra,
    }


def document(*checks: dict[str, Any]) -> dict[str, Any]:
    return {"status": "up", "counts": {}, "checks": list(checks)}


def perfdata_items(first_line: str) -> list[str]:
    return first_line.split(" | ", 1)[1].split(" ")


def test_unknown_has_no_state_value_and_text_cannot_fake_perfdata() -> None:
    """An unknown check keeps its duration but gets no '_state' value (no 'U', which
    Icinga 2's writers reject); a "|" or a line break in a message or title cannot start
    perfdata or a line of its own."""
    unknown = entry("cb", "unknown", [node("push", "down", ("no_data", "no heartbeat yet"))])
    sly = entry(
        "portal",
        "down",
        [node("a", "down", ("http_status", "status 500 | 'x'=1\nsecond line"))],
        title="门户 | 'y'=2",
    )
    text = report.nagios_from(document(unknown, sly))
    first, *long_output = text.split("\n")
    assert perfdata_items(first) == [
        "'cb_duration'=0.025s;;;0",
        "'portal_state'=2;0;1;0;2",
        "'portal_duration'=0.025s;;;0",
    ]
    assert long_output == [
        "DOWN portal (门户 ¦ 'y'=2) - no node answered - a: http_status "
        "(status 500 ¦ 'x'=1 second line)",
        "UNKNOWN cb - no node answered - push: no_data (no heartbeat yet)",
    ]
    assert all("|" not in line for line in long_output)
    assert report.exit_code_from(document(unknown, sly)) == report.CRITICAL
    assert report.exit_code_from(document(unknown)) == report.UNKNOWN


@pytest.mark.parametrize(("down", "perfdata_cut"), [(30, False), (150, True)])
def test_output_is_bounded_and_counts_what_it_leaves_out(down: int, perfdata_cut: bool) -> None:
    """Many checks down: the first line names as many as fit in FIRST_LINE_MAX bytes,
    worst first, and says how many more there are; the whole output stays within
    Nagios' 8192 bytes, every perfdata value whole, and says what it left out."""
    title = "省民呼数据回传对接平台" * 3  # 3 bytes a character in UTF-8
    message = "connection refused by 127.0.0.1:40000 " * 7  # up to 300 characters
    checks = [
        entry(
            f"link-{i:03d}-{'x' * 40}",
            "down",
            [node(f"node-{n}", "down", ("connection_refused", message)) for n in "abc"],
            title=title,
        )
        for i in range(down)
    ]
    checks.insert(5, entry("healthy", "up", [node("a", "up")]))
    checks.insert(
        0, entry("slow", "degraded", [node("a", "down", ("timeout", "t")), node("b", "up")])
    )
    total = down + 2
    text = report.nagios_from(document(*checks))
    assert len(text.encode()) + len("\n") <= 8192 - 1  # print()'s newline; C's NUL
    first, *long_output = text.split("\n")
    status, _ = first.split(" | ", 1)
    assert len(status.encode()) <= report.FIRST_LINE_MAX
    items = status.removeprefix("HOTLINE-PROBE CRITICAL - ").split("; ")
    assert items[-1] == f"1 of {total} up"
    more = re.fullmatch(r"\+(\d+) more", items[-2])
    assert more, items
    named = items[:-2]
    # Down first, in config order; the degraded one comes after every down one.
    assert named[0] == f"link-000-{'x' * 40} DOWN (connection_refused, no node answered)"
    assert len(named) >= 2 and len(named) + int(more[1]) == total - 1
    # Every perfdata value is whole, none cut by the limit; those left out are counted.
    values = perfdata_items(first)
    assert all(PERFDATA.match(v) for v in values), values
    said = re.fullmatch(
        rf"\(perfdata of (\d+) of {total} checks left out: the output limit\)", long_output[-1]
    )
    assert bool(said) is perfdata_cut
    if said:
        long_output = long_output[:-1]
        assert len(values) // 2 + int(said[1]) == total
    else:
        assert len(values) == 2 * total
    # One line per check, worst first, until the last line counts the rest; the lines
    # of checks that failed had room kept from the perfdata.
    rest = re.fullmatch(r"\+(\d+) more checks", long_output[-1])
    assert rest, long_output[-1]
    assert len(long_output) - 1 + int(rest[1]) == total
    assert len(long_output) - 1 >= 3
    assert long_output[0].startswith(f"DOWN link-000-{'x' * 40} ({title}) - no node answered - ")
    assert all(len(line.encode()) <= 512 for line in long_output)


def test_daemon_status_states() -> None:
    """From the daemon's /status: the hard state rules (unreachable is CRITICAL, value 2,
    and names the check it waits behind), flapping and an unconfirmed latest run are
    said, and a check not run yet is UNKNOWN with no perfdata at all."""

    def state(hard: str, soft: str, **extra: Any) -> dict[str, Any]:
        return {"hard": hard, "soft": soft, "soft_streak": 1, "flapping": False} | extra

    behind = entry(
        "police-110",
        "unreachable",
        [node("node-a", "down", ("timeout", "no answer within 2s"))],
        state=state("unreachable", "unreachable", unreachable_because=["gateway"]),
    )
    wobbly = entry(
        "grassroots",
        "up",
        [node("node-a", "down", ("connection_reset", "reset")), node("node-b", "up")],
        state=state("up", "degraded", flapping=True),
    )
    new: dict[str, Any] = {
        "name": "callback",
        "title": "",
        "kind": "freshness",
        "status": "unknown",
        "active_node": None,
        "nodes": [],
        "state": state("unknown", "unknown"),
    }
    text = report.nagios_from(document(wobbly, behind, new))
    first, *long_output = text.split("\n")
    assert first == (
        "HOTLINE-PROBE CRITICAL - police-110 UNREACHABLE (timeout, behind gateway, "
        "no node answered); callback UNKNOWN (not run yet); 1 of 3 up | "
        "'grassroots_state'=0;0;1;0;2 'grassroots_duration'=0.025s;;;0 "
        "'police-110_state'=2;0;1;0;2 'police-110_duration'=0.025s;;;0"
    )
    assert long_output == [
        "UNREACHABLE police-110 - no node answered - behind gateway - "
        "node-a: timeout (no answer within 2s)",
        "UNKNOWN callback - not run yet",
        "UP grassroots - active node node-b - flapping - latest runs degraded (1 in a row) - "
        "node-a: connection_reset (reset)",
    ]
    assert report.exit_code_from(document(new)) == report.UNKNOWN
    assert report.exit_code_from(document(wobbly)) == report.OK
    table = report.table_from(document(wobbly, behind, new))
    assert table.endswith(
        "3 checks: 1 up, 0 degraded, 0 down, 1 unknown, 1 unreachable (slowest check 0.03 s)"
    )


def test_default_daemon_url_is_the_daemon_default_listen() -> None:
    """`probe --from-daemon` without a URL asks where `probed` listens by default."""
    import cli
    from config.probe_config import ProbeConfig

    default = ProbeConfig.model_fields["listen"].default
    assert f"http://{default}" == cli.DAEMON_URL


# --- probe --from-daemon ------------------------------------------------------------


STATUS = document(
    entry(
        "police-110",
        "down",
        [
            node("node-a", "down", ("connection_refused", "refused")),
            node("node-b", "down", ("timeout", "no answer")),
        ],
        title="110 接处警平台对接",
        state={"hard": "down", "soft": "down"},
    ),
    entry("grassroots", "up", [node("node-a", "up")], state={"hard": "up", "soft": "up"}),
    entry("callback", "degraded", [node("a", "down", ("stale", "old")), node("b", "up")]),
)


@contextlib.asynccontextmanager
async def status_server(reply: Callable[[], web.Response]) -> AsyncIterator[str]:
    """A stand-in for the daemon's endpoint; yields its base URL."""

    async def status(_: web.Request) -> web.Response:
        return reply()

    app = web.Application()
    app.router.add_get("/status", status)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.e2e
async def test_from_daemon_renders_the_status_in_every_format() -> None:
    """The daemon's document as a table, as JSON (as it came, or only the checks named)
    and as Nagios output, each exiting as a run of those checks would."""
    async with status_server(lambda: web.json_response(STATUS)) as url:
        nagios = await probe("--from-daemon", url, "--format", "nagios")
        table = await probe("--from-daemon", url)
        whole = await probe("--from-daemon", url, "--json")
        named = await probe("grassroots", "callback", "--from-daemon", url, "--json")
    assert nagios.code == 2 and nagios.stderr == ""
    assert nagios.stdout.split("\n")[0].split(" | ")[0] == (
        "HOTLINE-PROBE CRITICAL - police-110 DOWN (connection_refused, timeout, no node "
        "answered); callback DEGRADED (stale, active node b); 1 of 3 up"
    )
    assert table.code == 2
    assert "police-110  110 接处警平台对接  http  DOWN" in table.stdout
    assert table.stdout.endswith("3 checks: 1 up, 1 degraded, 1 down (slowest check 0.03 s)\n")
    assert json.loads(whole.stdout) == STATUS
    assert named.code == 1, named.stderr
    picked = json.loads(named.stdout)
    assert [c["name"] for c in picked["checks"]] == ["grassroots", "callback"]
    assert picked["status"] == "degraded"
    assert picked["counts"] == {"up": 1, "degraded": 1}


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (None, "connection refused (is probed running, and listening there?)"),
        (lambda: web.Response(status=503, text="starting"), "answered HTTP 503"),
        (lambda: web.Response(text="<html>"), "did not send a JSON document"),
        (lambda: web.json_response({"checks": "none"}), "did not send a status document"),
    ],
)
async def test_from_daemon_that_cannot_answer_is_unknown(
    reply: Callable[[], web.Response] | None, words: str
) -> None:
    """No daemon, or a wrong answer: UNKNOWN (3), one line that says why, no traceback;
    as the plugin's output for Nagios, on stderr otherwise."""
    async with contextlib.AsyncExitStack() as stack:
        if reply is None:
            url = f"http://127.0.0.1:{free_port()}"
        else:
            url = await stack.enter_async_context(status_server(reply))
        nagios = await probe("--from-daemon", url, "--format", "nagios")
        table = await probe("--from-daemon", url)
    assert nagios.code == 3 and table.code == 3
    (line,) = nagios.stdout.splitlines()
    assert line.startswith("HOTLINE-PROBE UNKNOWN - cannot read the daemon's status: ")
    assert f"{url}/status" in line and words in line
    assert nagios.stderr == ""
    assert table.stdout == ""
    assert table.stderr.splitlines() == [f"probe: {line.removeprefix('HOTLINE-PROBE UNKNOWN - ')}"]


@pytest.mark.e2e
async def test_from_daemon_usage_errors() -> None:
    """Options that run checks here make no sense with --from-daemon: usage error (3)."""
    for args, words in [
        (("--from-daemon", "--config", "x.yaml"), "do not apply"),
        (("--from-daemon", "127.0.0.1:9640"), "takes an http:// or https:// URL"),
        (("--from-daemon", "ftp://127.0.0.1/"), "takes an http:// or https:// URL"),
        (("--from-daemon", "--all", "grassroots"), "not both"),
    ]:
        run = await probe(*args)
        assert run.code == 3, args
        assert words in run.stderr and "Traceback" not in run.stderr, args
    async with status_server(lambda: web.json_response(STATUS)) as url:
        missing = await probe("--from-daemon", url, "nope", "--format", "nagios")
    assert missing.code == 3
    assert missing.stdout.startswith(
        "HOTLINE-PROBE UNKNOWN - the daemon runs no check nope; it runs: police-110, "
    )


# --- a real Icinga 2 ----------------------------------------------------------------
#
# Icinga runs the CheckCommand of docs/icinga.md every second for three services:
# `probe --all` on the simulators' topology, `probe --all` on a push check whose
# heartbeats go to the daemon only, and `probe --from-daemon` asking a real probed about
# police-110 and that push check. It is started as root and runs as nagios (RunAsUser),
# as Debian runs it; as root where nagios cannot start this Python at all.

NAGIOS = "nagios"  # Debian's Icinga 2 runs as nagios, and so do its checks
ICINGA_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
RECORD = re.compile(
    r"RECORD\tservice::(?P<service>[^\t]*)\tstate::(?P<state>[A-Z]+)\t"
    r"state_id::(?P<state_id>\d)\tperfdata::(?P<perfdata>[^\t]*)\t"
    r"output::(?P<output>.*?)\tEND\n",
    re.DOTALL,
)
# $service.output$ holds the first line and the long output, without the perfdata.
TEMPLATE = (
    "RECORD\tservice::$service.name$\tstate::$service.state$\tstate_id::$service.state_id$"
    "\tperfdata::$service.perfdata$\toutput::$service.output$\tEND"
)


@dataclass(frozen=True)
class Record:
    """One check result of a service, as Icinga's PerfdataWriter wrote it down."""

    service: str
    state: str
    state_id: int
    perfdata: str
    output: str


class Graphite:
    """Graphite's plaintext protocol on a loopback port of the test's own: Icinga's
    GraphiteWriter sends one ``path value timestamp`` line per perfdata value."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._arrived = asyncio.Condition()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Graphite:
        self._server = await asyncio.start_server(self._receive, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                async with self._arrived:
                    self.lines.append(line.decode().rstrip("\n"))
                    self._arrived.notify_all()

    def values(self, path: str) -> list[str]:
        """The values received for ``path``, in order."""
        return [line.split(" ")[1] for line in self.lines if line.split(" ")[0] == path]

    async def value(self, path: str, value: str, within: float = 20) -> None:
        try:
            async with asyncio.timeout(within), self._arrived:
                await self._arrived.wait_for(lambda: value in self.values(path))
        except TimeoutError:
            near = [line for line in self.lines if path.rsplit(".", 2)[0] in line][-10:]
            raise AssertionError(f"no {path} {value} within {within} s; saw {near}") from None


class Icinga:
    """``icinga2 daemon`` in the foreground with every path under ``work``, none in
    /etc/icinga2 or /var; stopped as systemd would stop it."""

    def __init__(self, work: Path, user: str) -> None:
        self.work = work
        self.user = user
        self.perfdata = work / "perfdata"
        self.log = work / "log" / "icinga2.log"
        self.console = work / "console.log"
        self.process: asyncio.subprocess.Process | None = None

    def defines(self) -> list[str]:
        paths = {
            "ConfigDir": self.work,
            "ZonesDir": self.work / "zones.d",
            "DataDir": self.work / "data",
            "LogDir": self.work / "log",
            "CacheDir": self.work / "cache",
            "SpoolDir": self.work / "spool",
            "InitRunDir": self.work / "run",
            "PidPath": self.work / "run" / "icinga2.pid",
        }
        group = grp.getgrgid(pwd.getpwnam(self.user).pw_gid).gr_name
        users = {"RunAsUser": self.user, "RunAsGroup": group}
        return [f"-D{name}={value}" for name, value in {**paths, **users}.items()]

    def prepare(self, config: str) -> list[str]:
        """Write the configuration and make Icinga's directories; the argv to run it."""
        runs_as = pwd.getpwnam(self.user)
        for name in ("zones.d", "data", "log", "cache", "spool", "run", "perfdata"):
            (self.work / name).mkdir(mode=0o700)
            os.chown(self.work / name, runs_as.pw_uid, runs_as.pw_gid)
        conf = self.work / "icinga2.conf"
        conf.write_text(config)
        share_with_nagios(conf)
        # Icinga resolves this host's name at start-up (IcingaApplication::StaticInitialize,
        # for NodeName): a name that is not in /etc/hosts would be asked of the DNS server
        # in resolv.conf, off this host. Under a UTS namespace of its own the host is
        # called localhost, which /etc/hosts answers.
        argv = ["unshare", "--uts", "--", "sh", "-c", 'hostname localhost && exec "$@"', "sh"]
        return [*argv, ICINGA2, "daemon", "-c", str(conf), *self.defines()]

    async def start(self, config: str) -> None:
        with self.console.open("wb") as console:
            self.process = await asyncio.create_subprocess_exec(
                *self.prepare(config),
                cwd=self.work,
                stdout=console,
                stderr=console,
                env=ICINGA_ENV,
                start_new_session=True,  # its worker and its checks: one group to stop
            )

    async def stop(self) -> None:
        """SIGTERM to Icinga's process group (the umbrella, its worker, their checks),
        and SIGKILL if it has not ended within 15 s."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    def records(self) -> list[Record]:
        """Every check result so far: the rotated files in order, then the current one."""
        rotated = sorted(self.perfdata.glob("service-perfdata.*"), key=lambda p: int(p.suffix[1:]))
        records = []
        for path in [*rotated, self.perfdata / "current-service-perfdata"]:
            try:
                text = path.read_text()
            except FileNotFoundError:  # rotated away meanwhile: read again next time
                continue
            records += [
                Record(m["service"], m["state"], int(m["state_id"]), m["perfdata"], m["output"])
                for m in RECORD.finditer(text)
            ]
        return records

    async def record(self, service: str, state_id: int, within: float = 20) -> Record:
        """The first result of ``service`` in state ``state_id`` Icinga records. Icinga
        writes files and nothing else tells when: they are read again every 0.1 s."""
        deadline = time.monotonic() + within
        while True:
            records = self.records()
            found = [r for r in records if r.service == service and r.state_id == state_id]
            if found:
                return found[0]
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"icinga2 exited {self.process.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                seen = [(r.service, r.state, r.output[:200]) for r in records][-6:]
                raise AssertionError(
                    f"Icinga recorded no {service} in state {state_id} within {within} s;"
                    f" it recorded {seen}; its log: {self.tail()}"
                )
            await asyncio.sleep(0.1)

    def tail(self) -> str:
        """The end of what Icinga said, and of what it wrote last, for a failure."""
        paths = (self.console, self.log, self.perfdata / "current-service-perfdata")
        texts = [p.read_text(errors="replace")[-3000:] for p in paths if p.exists()]
        return "\n".join(texts)


def icinga_config(
    work: Path, *, graphite_port: int, services: dict[str, dict[str, Any]], env: dict[str, str]
) -> str:
    """A standalone configuration: the ITL, a checker, the two perfdata writers, one host
    and the services, and the CheckCommand as docs/icinga.md defines it, started as this
    test starts `probe`."""
    docs = (ROOT / "docs" / "icinga.md").read_text()
    found = re.search(r'^object CheckCommand "hotline-probe" \{\n.*?^\}\n', docs, re.M | re.S)
    assert found, 'docs/icinga.md shows no `object CheckCommand "hotline-probe"`'
    documented = '  command = [ "/opt/hotline-probe/bin/probe" ]\n'
    assert documented in found[0]
    ours = f"  command = {dsl(command('probe'))}\n  env = {dsl(env)}\n"
    check_command = found[0].replace(documented, ours)
    perfdata = work / "perfdata"
    lines = [
        # NodeName given: Icinga's default is this host's name, looked up at start-up.
        'const NodeName = "hotline-probe-test"',
        "const ZoneName = NodeName",
        "include <itl>",
        'object CheckerComponent "checker" { }',
        f'object FileLogger "main" {{ path = {dsl(str(work / "log" / "icinga2.log"))} }}',
        'object PerfdataWriter "perfdata" {',
        f"  service_perfdata_path = {dsl(str(perfdata / 'service-perfdata'))}",
        f"  service_temp_path = {dsl(str(perfdata / 'current-service-perfdata'))}",
        f"  host_perfdata_path = {dsl(str(perfdata / 'host-perfdata'))}",
        f"  host_temp_path = {dsl(str(perfdata / 'current-host-perfdata'))}",
        f"  service_format_template = {dsl(TEMPLATE)}",
        "  rotation_interval = 1s",
        "}",
        f'object GraphiteWriter "graphite" {{ host = "127.0.0.1"; port = {graphite_port} }}',
        check_command,
        # The host itself is not checked: only its services matter here.
        'object Host "hotline" { check_command = "dummy"; enable_active_checks = false }',
    ]
    for name, variables in services.items():
        lines += [
            f"object Service {dsl(name)} {{",
            '  host_name = "hotline"',
            '  check_command = "hotline-probe"',
            "  check_interval = 1s",
            "  retry_interval = 1s",
            "  max_check_attempts = 1",
            *(f"  vars.{key} = {dsl(value)}" for key, value in variables.items()),
            "}",
        ]
    return "\n".join(lines) + "\n"


def dsl(value: Any) -> str:
    """A value in Icinga's configuration language (its strings escape as JSON's do)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[ " + ", ".join(dsl(v) for v in value) + " ]"
    if isinstance(value, dict):
        return "{ " + "; ".join(f"{k} = {dsl(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def share_with_nagios(path: Path) -> None:
    """Readable by root and by nagios' group only: the configs name test secrets."""
    os.chown(path, 0, pwd.getpwnam(NAGIOS).pw_gid)
    path.chmod(0o640 if path.is_file() else 0o750)


def require_icinga() -> None:
    """Fail without Icinga 2 (the test deps install it); skip when not root."""
    if not Path(ICINGA2).exists():
        pytest.fail(f"Icinga 2 is needed ({ICINGA2}, Debian's icinga2-bin): {INSTALL_HINT}")
    if os.geteuid() != 0:
        pytest.skip("needs root: Icinga 2 is started as root and runs as nagios")
    try:
        pwd.getpwnam(NAGIOS)
    except KeyError:
        pytest.fail(f"no user {NAGIOS} (Debian's icinga2-common makes it): {INSTALL_HINT}")


@pytest.fixture
def icinga_work() -> Iterator[Path]:
    """Icinga's directory. Not under tmp_path: pytest makes that private to root, and
    Icinga and its checks run as nagios."""
    with tempfile.TemporaryDirectory(prefix="hp-icinga-") as name:
        yield Path(name)


def probe_env() -> dict[str, str]:
    """What `probe` needs in its environment beside the topology's secret: from the
    source tree, the tree on its path (Icinga starts checks in its own directory)."""
    return {} if INSTALLED else {"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


def icinga_user() -> tuple[str, str]:
    """Who Icinga runs as (RunAsUser), and why: nagios, as Debian runs it, when nagios
    can start `probe` as this test does; root otherwise (here: a Python under a private
    /root, which no other user may enter). Tried as Icinga starts a check: an exec as
    that user (setpriv's own exec may still see through the directory)."""
    as_nagios = ["setpriv", f"--reuid={NAGIOS}", f"--regid={NAGIOS}", "--init-groups"]
    done = subprocess.run(
        [*as_nagios, "sh", "-c", 'exec "$@"', "sh", *command("probe"), "--help"],
        cwd="/",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **probe_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 0:
        return NAGIOS, "as Debian runs it"
    return "root", f"{NAGIOS} cannot start {command('probe')}: {done.stderr.strip()[-200:]}"


def test_the_documented_configuration_is_valid(icinga_work: Path) -> None:
    """Every Icinga 2 block of docs/icinga.md (the CheckCommand, the services) passes
    `icinga2 daemon --validate` with the ITL."""
    require_icinga()
    share_with_nagios(icinga_work)
    docs = (ROOT / "docs" / "icinga.md").read_text()
    blocks = re.findall(r"^```icinga2\n(.*?)^```", docs, re.M | re.S)
    assert len(blocks) == 2, "docs/icinga.md: the CheckCommand, then the services"
    config = 'const NodeName = "hotline-probe-test"\ninclude <itl>\n' + "\n".join(blocks)
    argv = Icinga(icinga_work, "root").prepare(config)
    done = subprocess.run(
        [*argv, "--validate"], env=ICINGA_ENV, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Instantiated 4 Services" in done.stdout  # three applied, one object


@pytest.mark.e2e
async def test_icinga_records_what_probe_says(
    topology: tuple[Simulator, Path], icinga_work: Path, tmp_path: Path
) -> None:
    """Icinga 2 records OK, then WARNING (police-110 served by node-b), then CRITICAL (no
    node answers), with the check, its cause and its node on the first line and a line
    per check after it; its Graphite writer gets every perfdata value and rejects none;
    no event reaches the output, no secret anywhere. A push check `probe` cannot see the
    heartbeats of is UNKNOWN, with no '_state' value; `probe --from-daemon` has the
    daemon's judgement of it, and of police-110, instead."""
    require_icinga()
    user, why = icinga_user()
    print(f"Icinga 2 runs as {user}: {why}")  # shown with the test's output
    sim, config = topology
    node_a, node_b = sim.node("police-110", "node-a"), sim.node("police-110", "node-b")
    await node_a.set_mode(Mode.HEALTHY)
    await sim.node("province", "primary").set_mode(Mode.HEALTHY)
    work = icinga_work
    share_with_nagios(work)
    probe_config = work / "probe.yaml"
    probe_config.write_text(config.read_text())
    # Push heartbeats reach only the daemon; as nagios, `probe` could not even read the
    # daemon's state directory (0700 under systemd's DynamicUser). Here it has its own.
    callback_config = work / "callback.yaml"
    callback_config.write_text(f"""
state_dir: {work / "probe-state"}
checks:
  - name: province-callback
    title: 省民呼数据回传
    kind: freshness
    max_age: 15m
    source: {{type: push, token: "{CALLBACK_TOKEN}"}}
""")
    for path in (probe_config, callback_config):
        share_with_nagios(path)
    port = free_port()
    daemon_config = tmp_path / "probed.yaml"
    daemon_config.write_text(f"""
listen: "127.0.0.1:{port}"
state_dir: {tmp_path / "daemon-state"}
defaults: {{interval: 300ms, timeout: 500ms, retries: {{attempts: 1}}, confirm_after: 1,
            recover_after: 1}}
checks:
  - name: police-110
    title: 110 接处警平台对接
    kind: http
    nodes: [{{name: node-a, url: "{node_a.url}"}}, {{name: node-b, url: "{node_b.url}"}}]
  - name: province-callback
    title: 省民呼数据回传
    kind: freshness
    max_age: 15m
    source: {{type: push, token: "{CALLBACK_TOKEN}"}}
""")
    services: dict[str, dict[str, Any]] = {
        "probe-all": {"hotline_probe_config": str(probe_config), "hotline_probe_all": True},
        "callback-here": {"hotline_probe_config": str(callback_config), "hotline_probe_all": True},
        "from-daemon": {
            "hotline_probe_daemon": f"http://127.0.0.1:{port}",
            "hotline_probe_checks": ["police-110", "province-callback"],
        },
    }
    daemon, notify = await start_probed(daemon_config, tmp_path)
    icinga = Icinga(work, user)
    try:
        async with asyncio.timeout(15):  # the daemon says READY=1 once it runs its checks
            while b"READY=1" not in await asyncio.get_running_loop().sock_recv(notify, 4096):
                pass
        await post_heartbeat(port)
        async with Graphite() as graphite:
            env = {**probe_env(), **ENV}
            await icinga.start(
                icinga_config(work, graphite_port=graphite.port, services=services, env=env)
            )
            await follow_the_outage(icinga, graphite, node_a, node_b)
            await icinga.stop()
    finally:
        await icinga.stop()
        daemon.terminate()
        await daemon.wait()
        notify.close()
    log = icinga.log.read_text()
    assert "invalid perfdata" not in log.lower(), icinga.tail()
    assert not re.search(r"(warning|critical)/(GraphiteWriter|PerfdataWriter|Plugin)", log), log
    owner = (work / "perfdata" / "current-service-perfdata").stat().st_uid
    assert owner == pwd.getpwnam(user).pw_uid  # Icinga wrote as the user it ran as
    recorded = "\n".join(f"{r.output} {r.perfdata}" for r in icinga.records())
    assert '"@timestamp"' not in recorded  # no event became output
    for canary in (CANARY_TOKEN, CANARY_PASSWORD, CANARY_QUERY, CALLBACK_TOKEN):
        for text in (recorded, log, "\n".join(graphite.lines)):
            assert canary not in text
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events and all(validate(event) == [] for event in events)


async def post_heartbeat(port: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/heartbeat/province-callback",
            headers={"Authorization": f"Bearer {CALLBACK_TOKEN}"},
        ) as answer,
    ):
        assert answer.status == 204


async def follow_the_outage(
    icinga: Icinga, graphite: Graphite, node_a: SimNode, node_b: SimNode
) -> None:
    """All up; node-a refuses (WARNING, node-b active); node-b too (CRITICAL)."""
    ok = await icinga.record("probe-all", 0)
    assert lines(ok) == [
        "HOTLINE-PROBE OK - 4 of 4 up",
        "UP grassroots (基层智治平台对接) - active node node-a",
        "UP police-110 (110 接处警平台对接) - active node node-a",
        "UP province - active node primary",
        "UP db-1 - active node primary",
    ]
    names = ("grassroots", "police-110", "province", "db-1")
    assert [item.split("=")[0] for item in ok.perfdata.split()] == [
        f"{name}_{what}" for name in names for what in ("state", "duration")
    ]
    assert all(f"{name}_state=0;0;1;0;2" in ok.perfdata.split() for name in names)
    await graphite.value(metric("probe-all", "police-110_state"), "0")

    here = await icinga.record("callback-here", 3)
    assert lines(here) == [
        "HOTLINE-PROBE UNKNOWN - province-callback UNKNOWN (no_data, no node answered); 0 of 1 up",
        "UNKNOWN province-callback (省民呼数据回传) - no node answered - push: no_data "
        "(no heartbeat received yet (POST /heartbeat/province-callback))",
    ]
    assert re.fullmatch(r"province-callback_duration=\d+\.\d{3}s;;;0", here.perfdata)
    on_daemon = await icinga.record("from-daemon", 0)
    assert lines(on_daemon) == [
        "HOTLINE-PROBE OK - 2 of 2 up",
        "UP police-110 (110 接处警平台对接) - active node node-a",
        "UP province-callback (省民呼数据回传) - active node push",
    ]
    await graphite.value(metric("from-daemon", "province-callback_state"), "0")

    await node_a.set_mode(Mode.REFUSING)
    warning = await icinga.record("probe-all", 1)
    assert lines(warning)[:2] == [
        "HOTLINE-PROBE WARNING - police-110 DEGRADED (connection_refused, active node node-b);"
        " 3 of 4 up",
        "DEGRADED police-110 (110 接处警平台对接) - active node node-b - node-a: "
        f"connection_refused (connection refused by 127.0.0.1:{node_a.port})",
    ]
    assert "police-110_state=1;0;1;0;2" in warning.perfdata.split()
    await graphite.value(metric("probe-all", "police-110_state"), "1")

    await node_b.set_mode(Mode.REFUSING)
    critical = await icinga.record("probe-all", 2)
    assert lines(critical) == [
        "HOTLINE-PROBE CRITICAL - police-110 DOWN (connection_refused, no node answered);"
        " 3 of 4 up",
        "DOWN police-110 (110 接处警平台对接) - no node answered - "
        f"node-a: connection_refused (connection refused by 127.0.0.1:{node_a.port}); "
        f"node-b: connection_refused (connection refused by 127.0.0.1:{node_b.port})",
        "UP grassroots (基层智治平台对接) - active node node-a",
        "UP province - active node primary",
        "UP db-1 - active node primary",
    ]
    assert "police-110_state=2;0;1;0;2" in critical.perfdata.split()
    await graphite.value(metric("probe-all", "police-110_state"), "2")
    on_daemon = await icinga.record("from-daemon", 2)
    assert lines(on_daemon)[0] == (
        "HOTLINE-PROBE CRITICAL - police-110 DOWN (connection_refused, no node answered); 1 of 2 up"
    )
    assert "UP province-callback (省民呼数据回传) - active node push" in lines(on_daemon)
    await graphite.value(metric("from-daemon", "police-110_state"), "2")

    # Every value Icinga recorded reached Graphite; the unknown check has no state value.
    for record in (ok, here, critical):
        for item in record.perfdata.split():
            label, value = item.split("=")[0], item.split("=")[1].split(";")[0]
            assert graphite.values(metric(record.service, label)), (label, value)
    assert not graphite.values(metric("callback-here", "province-callback_state"))


def lines(record: Record) -> list[str]:
    """The output as Icinga keeps it: the first line ends where its perfdata began."""
    return [line.rstrip() for line in record.output.split("\n")]


def metric(service: str, label: str) -> str:
    """The Graphite path of a perfdata value under Icinga's default templates."""
    return f"icinga2.hotline.services.{service}.hotline-probe.perfdata.{label}.value"
