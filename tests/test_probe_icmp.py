"""``kind: icmp`` on loopback in this process, and inside network namespaces the tests make.

Loopback shows the echo loop and its figures. The namespace tests run ``probe`` as a
subprocess in the prober's namespace, with the sysctl and the privileges each case
needs, against a peer namespace whose echo replies a test responder drops or delays:
unprivileged sockets, raw sockets, neither (the message that says what to change),
loss, slow replies, garbage and routers that answer "unreachable".
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.kinds.icmp import IcmpCheck
from config.load import parse_config
from core.clock import FakeClock
from core.errors import ErrorType, ProbeFailure
from core.result import CheckResult, NodeResult, NodeStatus, Status
from engine.runner import run_check
from events.ecs import check_event
from probes import icmp_access
from probes.base import ProbeContext
from tests.netns import PEER_IP, Pair, ip, namespace_pair, unavailable

ROOT = Path(__file__).resolve().parents[1]
NOBODY = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
]
EVERY_GROUP = "0 2147483647"
NO_GROUP = "1 0"  # low above high: nobody may open a ping socket (Debian's default)


def icmp_check(nodes: str, **opts: Any) -> IcmpCheck:
    opts.setdefault("retries", "{attempts: 1}")
    lines = ["  - name: ping", "    kind: icmp", f"    nodes: {nodes}"]
    lines += [f"    {key}: {value}" for key, value in opts.items()]
    check = parse_config("checks:\n" + "\n".join(lines) + "\n").checks[0]
    assert isinstance(check, IcmpCheck)
    return check


def details_of(result: CheckResult) -> dict[str, Any]:
    attempt = result.nodes[0].last
    assert attempt is not None
    return dict(attempt.details)


def error_of(result: CheckResult) -> tuple[ErrorType, str]:
    error = result.nodes[0].error
    assert error is not None, "expected the node to fail"
    return error.type, error.message


# --- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "rate"), [("20%", 0.2), (0.2, 0.2), ("0.25", 0.25), ("0%", 0.0)]
)
def test_max_loss_forms(written: object, rate: float) -> None:
    """max_loss is a percentage or a fraction, and is shown as a percentage."""
    check = icmp_check("[{name: a, host: a.example.invalid}]", expect=f"{{max_loss: {written}}}")
    assert check.expect.max_loss == pytest.approx(rate)
    assert check.expect.model_dump()["max_loss"] == f"{rate * 100:g}%"


def test_icmp_defaults() -> None:
    """Three echoes half a second apart, each waiting a second: within the default timeout."""
    check = icmp_check("[{name: a, host: '::1'}]")
    assert (check.count, check.echo_interval, check.reply_timeout) == (3, 0.5, 1.0)
    assert check.expect.max_loss is None


# --- loopback, in this process -----------------------------------------------------------


async def test_loopback_echoes(fake_clock: FakeClock, fake_ctx: ProbeContext) -> None:
    """Three echoes to 127.0.0.1 all come back; rtt figures, loss and the socket are reported,
    and the echoes are spaced on the injected clock."""
    check = icmp_check("[{name: lo, host: 127.0.0.1}]", echo_interval="400ms")
    result = await run_check(check, fake_ctx)
    assert result.status is Status.UP, result.nodes[0].error
    details = details_of(result)
    assert details["address"] == "127.0.0.1"
    assert (details["packets_sent"], details["packets_received"], details["loss"]) == (3, 3, 0.0)
    assert 0 < details["rtt_min_ms"] <= details["rtt_avg_ms"] <= details["rtt_max_ms"] < 1000
    assert details["socket"] in ("raw", "unprivileged")
    rtt = result.nodes[0].attempts[0].phases["rtt"]
    assert rtt == pytest.approx(details["rtt_avg_ms"] / 1000, abs=1e-6)
    assert result.nodes[0].target == "127.0.0.1"
    assert len(fake_clock.sleeps) == 2
    assert all(0.39 < s <= 0.4 for s in fake_clock.sleeps)  # the interval less the rtt


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_loopback(fake_ctx: ProbeContext) -> None:
    """::1 answers through an ICMPv6 socket."""
    result = await run_check(icmp_check('[{name: lo6, host: "::1"}]'), fake_ctx)
    assert result.status is Status.UP, result.nodes[0].error
    assert details_of(result)["packets_received"] == 3


async def test_host_name_is_resolved_first(fake_ctx: ProbeContext) -> None:
    """A host name is looked up first: the resolve phase, then the echoes."""
    result = await run_check(icmp_check("[{name: lo, host: localhost}]", count=1), fake_ctx)
    assert result.status is Status.UP, result.nodes[0].error
    assert {"resolve", "rtt"} <= set(result.nodes[0].attempts[0].phases)


async def test_unresolvable_host(fake_ctx: ProbeContext) -> None:
    """A host name that does not resolve fails as dns, before any socket is opened."""
    result = await run_check(icmp_check("[{name: app, host: app-1.example.invalid}]"), fake_ctx)
    assert error_of(result) == (
        ErrorType.DNS,
        "cannot resolve app-1.example.invalid: Name or service not known",
    )


# --- choosing the socket --------------------------------------------------------------------


def _fake_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, span: str, cap_eff: str) -> None:
    ranges, status = tmp_path / "ping_group_range", tmp_path / "status"
    ranges.write_text(span + "\n")
    status.write_text(f"Name:\tprobe\nCapInh:\t0\nCapEff:\t{cap_eff}\n")
    monkeypatch.setattr(icmp_access, "PING_GROUP_RANGE", ranges)
    monkeypatch.setattr(icmp_access, "PROC_STATUS", status)


@pytest.mark.parametrize(
    ("span", "cap_eff", "privileged"),
    [
        (EVERY_GROUP, "0000000000000000", False),
        (EVERY_GROUP, "0000000000002000", False),  # both allowed: the ping socket is preferred
        (NO_GROUP, "0000000000002000", True),  # bit 13, CAP_NET_RAW
        (NO_GROUP, "000001fffeffffff", True),
    ],
)
def test_socket_choice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, span: str, cap_eff: str, privileged: bool
) -> None:
    """The unprivileged ping socket when the group range allows, else raw with CAP_NET_RAW."""
    _fake_proc(monkeypatch, tmp_path, span, cap_eff)
    assert icmp_access.choose().privileged is privileged


def test_neither_socket_allowed_says_what_to_change(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Neither allowed: a permission failure naming the gid, the sysctl and the capability."""
    _fake_proc(monkeypatch, tmp_path, NO_GROUP, "000001fffeffdfff")  # all but bit 13 (and 24)
    with pytest.raises(ProbeFailure) as raised:
        icmp_access.choose()
    error = raised.value.error
    assert error.type is ErrorType.PERMISSION
    assert f"gid {os.getegid()} is outside net.ipv4.ping_group_range (1 0)" in error.message
    assert "AmbientCapabilities=CAP_NET_RAW" in error.message
    assert not error.retryable


async def test_socket_is_closed_when_its_setup_fails(
    fake_ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ping socket that refuses RECVERR (a kernel or sandbox without it) fails the
    attempt as connection, naming the option, and the socket is closed, not leaked."""
    import errno

    from icmplib import ICMPv4Socket

    from probes import icmp

    try:
        allowed = icmp_access.choose()  # whichever socket this host lets the test open
    except ProbeFailure as refused:
        pytest.skip(refused.error.message)
    opened: list[Any] = []

    class NoRecvErr:
        def __init__(self, real: socket.socket) -> None:
            self.real = real

        def setsockopt(self, *args: Any) -> None:
            raise OSError(errno.ENOPROTOOPT, os.strerror(errno.ENOPROTOOPT))

    class Socket(ICMPv4Socket):  # type: ignore[misc]  # icmplib has no type hints
        __slots__ = ()

        def __init__(self, privileged: bool) -> None:
            super().__init__(privileged=allowed.privileged)
            opened.append(self)

        @property
        def sock(self) -> Any:
            return NoRecvErr(self._sock)

    monkeypatch.setattr(icmp, "ICMPv4Socket", Socket)
    monkeypatch.setattr(icmp_access, "choose", lambda: icmp_access.Access(privileged=False))
    result = await run_check(icmp_check("[{name: lo, host: 127.0.0.1}]"), fake_ctx)
    assert error_of(result) == (
        ErrorType.CONNECTION,
        "cannot set up the ICMP socket (RECVERR): Protocol not available",
    )
    (icmp_socket,) = opened
    assert icmp_socket.is_closed


# --- inside network namespaces ------------------------------------------------------------

needs_netns = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


@functools.cache
def _nobody_cannot_run_python() -> str | None:
    """Why this Python cannot run as nobody (a venv under a private /root), or None."""
    done = subprocess.run(
        [*NOBODY, sys.executable, "-c", "import icmplib, yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 0:
        return None
    return f"{sys.executable} cannot run as nobody: {done.stderr.strip()[-200:]}"


def as_nobody_or_skip() -> None:
    reason = _nobody_cannot_run_python()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def pair() -> Iterator[Pair]:
    with namespace_pair() as made:
        # Routers limit the ICMP errors they send per host; tests send them in bursts.
        made.sysctl(made.peer, "net.ipv4.icmp_ratelimit", "0")
        yield made


@pytest.fixture
def config_dir() -> Iterator[Path]:
    """A config directory that `nobody` can read (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory(prefix="hp-icmp-") as name:
        os.chmod(name, 0o755)  # noqa: S103 - read by nobody on purpose; holds no secret
        yield Path(name)


def run_probe(
    pair: Pair, config_dir: Path, checks: str, *, span: str, as_nobody: bool = False
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """`probe --all --json` in the prober's namespace; its nodes by check name."""
    pair.sysctl(pair.prober, "net.ipv4.ping_group_range", span)
    path = config_dir / "config.yaml"
    path.write_text("checks:\n" + checks)
    path.chmod(0o644)
    command = [sys.executable, "-m", "cli", "--all", "--json", "--events", "off", "-c", str(path)]
    command += ["--concurrency", "1"]  # one check at a time: the peer counts and delays
    done = pair.exec(pair.prober, [*(NOBODY if as_nobody else []), *command], cwd=ROOT)
    assert "Traceback" not in done.stderr, done.stderr
    document = json.loads(done.stdout)
    return done, {check["name"]: check["nodes"][0] for check in document["checks"]}


def ping(name: str, host: str = PEER_IP, **opts: Any) -> str:
    """One check entry; quick echoes so that a namespace test takes a second or two."""
    fields = {"count": 3, "echo_interval": "50ms", "reply_timeout": "300ms", **opts}
    extra = "".join(f", {key}: {value}" for key, value in fields.items())
    return (
        f"  - {{name: {name}, kind: icmp, retries: {{attempts: 1}}{extra}, "
        f"nodes: [{{name: peer, host: {host}}}]}}\n"
    )


@pytest.fixture
def responder(pair: Pair) -> Iterator[Any]:
    """Start tests/icmp_responder.py in the peer namespace, in place of the kernel's replies."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> None:
        pair.sysctl(pair.peer, "net.ipv4.icmp_echo_ignore_all", "1")
        command = ["ip", "netns", "exec", pair.peer, sys.executable, "-m", "tests.icmp_responder"]
        proc = subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    yield start
    for proc in started:
        assert proc.stdin is not None
        proc.stdin.close()  # its signal to stop
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@needs_netns
def test_unprivileged_socket_without_any_privilege(pair: Pair, config_dir: Path) -> None:
    """As nobody, with no capability at all, echoes go out through a ping socket once the
    group range holds nobody's group."""
    as_nobody_or_skip()
    _, nodes = run_probe(pair, config_dir, ping("peer"), span=EVERY_GROUP, as_nobody=True)
    node = nodes["peer"]
    assert node["status"] == "up", node["error"]
    assert node["details"]["socket"] == "unprivileged"
    assert node["details"]["packets_received"] == 3


@needs_netns
def test_raw_socket_with_cap_net_raw(pair: Pair, config_dir: Path) -> None:
    """With ping sockets closed to every group, CAP_NET_RAW (root here) opens a raw socket."""
    _, nodes = run_probe(pair, config_dir, ping("peer"), span=NO_GROUP)
    assert nodes["peer"]["status"] == "up", nodes["peer"]["error"]
    assert nodes["peer"]["details"]["socket"] == "raw"


@needs_netns
def test_neither_allowed_names_the_fix(pair: Pair, config_dir: Path) -> None:
    """No ping sockets for the group and no CAP_NET_RAW: the check is down with a message
    that names the sysctl and the unit setting, and probe exits without a traceback."""
    as_nobody_or_skip()
    done, nodes = run_probe(pair, config_dir, ping("peer"), span=NO_GROUP, as_nobody=True)
    error = nodes["peer"]["error"]
    assert error["type"] == "permission"
    assert error["message"] == (
        "cannot send ICMP echoes: gid 65534 is outside net.ipv4.ping_group_range (1 0) and "
        "the process lacks CAP_NET_RAW; allow one: set the sysctl net.ipv4.ping_group_range "
        "to a range holding 65534, or give the unit AmbientCapabilities=CAP_NET_RAW"
    )
    assert len(nodes["peer"]["attempts"]) == 1  # final: a retry cannot change it
    assert done.returncode == 2


@needs_netns
@pytest.mark.parametrize("span", [NO_GROUP, EVERY_GROUP], ids=["raw", "unprivileged"])
def test_total_loss(pair: Pair, config_dir: Path, span: str) -> None:
    """A peer that never replies: packet_loss at 100%, after every echo had its wait."""
    pair.sysctl(pair.peer, "net.ipv4.icmp_echo_ignore_all", "1")
    _, nodes = run_probe(pair, config_dir, ping("peer"), span=span)
    error = nodes["peer"]["error"]
    assert (error["type"], error["message"]) == (
        "packet_loss",
        f"no reply to 3 echoes to {PEER_IP} (100% loss)",
    )
    assert nodes["peer"]["details"]["loss"] == 1.0


@needs_netns
def test_partial_loss_against_max_loss(pair: Pair, config_dir: Path, responder: Any) -> None:
    """Every second echo dropped: 50% loss fails a 25% limit, passes a 50% one, and passes
    by default (one reply is enough)."""
    responder("--drop-every", "2")
    checks = (
        ping("strict", count=4, expect="{max_loss: 25%}")
        + ping("lenient", count=4, expect="{max_loss: 0.5}")
        + ping("default", count=4)
    )
    _, nodes = run_probe(pair, config_dir, checks, span=EVERY_GROUP)
    assert nodes["strict"]["error"] == {
        "type": "packet_loss",
        "message": f"2 of 4 echoes to {PEER_IP} unanswered (50% loss, limit 25%)",
    }
    for name in ("lenient", "default"):
        assert nodes[name]["status"] == "up", nodes[name]["error"]
        assert nodes[name]["details"]["loss"] == 0.5


@needs_netns
def test_slow_replies(pair: Pair, config_dir: Path, responder: Any) -> None:
    """Replies after 120 ms break max_rtt and max_avg_rtt as latency; past reply_timeout
    they are lost."""
    responder("--delay", "0.12")
    checks = (
        ping("max", expect="{max_rtt: 50ms}")
        + ping("avg", expect="{max_avg_rtt: 50ms}")
        + ping("late", reply_timeout="60ms")
        + ping("fine", expect="{max_rtt: 1s}")
    )
    _, nodes = run_probe(pair, config_dir, checks, span=EVERY_GROUP)
    assert nodes["max"]["error"]["type"] == "latency"
    assert nodes["max"]["error"]["message"].startswith(f"slowest reply from {PEER_IP} took 1")
    assert nodes["max"]["error"]["message"].endswith("limit 50.0 ms")
    assert nodes["avg"]["error"]["type"] == "latency"
    assert "on average" in nodes["avg"]["error"]["message"]
    assert nodes["late"]["error"]["type"] == "packet_loss"
    assert nodes["fine"]["status"] == "up"
    assert nodes["fine"]["details"]["rtt_min_ms"] >= 120


@needs_netns
@pytest.mark.parametrize("span", [NO_GROUP, EVERY_GROUP], ids=["raw", "unprivileged"])
def test_garbage_before_each_reply_is_ignored(
    pair: Pair, config_dir: Path, responder: Any, span: str
) -> None:
    """Malformed, foreign and mismatched ICMP packets are skipped; the real replies count."""
    responder("--garbage")
    _, nodes = run_probe(pair, config_dir, ping("peer"), span=span)
    assert nodes["peer"]["status"] == "up", nodes["peer"]["error"]
    assert nodes["peer"]["details"]["packets_received"] == 3


@needs_netns
def test_garbage_only_is_loss(pair: Pair, config_dir: Path, responder: Any) -> None:
    """A peer that answers only with garbage has answered nothing: packet_loss."""
    responder("--garbage", "--drop-every", "1")
    _, nodes = run_probe(pair, config_dir, ping("peer"), span=NO_GROUP)
    assert nodes["peer"]["error"]["type"] == "packet_loss"


@needs_netns
@pytest.mark.parametrize(
    ("span", "reason"),
    [(NO_GROUP, "Destination host unreachable"), (EVERY_GROUP, "No route to host")],
    ids=["raw", "unprivileged"],
)
def test_router_says_unreachable(pair: Pair, config_dir: Path, span: str, reason: str) -> None:
    """A router's "destination unreachable" is a connection failure, on either socket."""
    ip("-n", pair.prober, "route", "add", "10.88.0.0/24", "via", PEER_IP)
    pair.sysctl(pair.peer, "net.ipv4.ip_forward", "1")
    ip("-n", pair.peer, "route", "add", "unreachable", "10.88.0.0/24")
    _, nodes = run_probe(pair, config_dir, ping("peer", host="10.88.0.5"), span=span)
    assert nodes["peer"]["error"] == {
        "type": "connection",
        "message": f"10.88.0.5: {reason} (no echo answered)",
    }


@needs_netns
def test_no_route(pair: Pair, config_dir: Path) -> None:
    """No route to the host at all: the send itself fails, a connection failure."""
    _, nodes = run_probe(pair, config_dir, ping("peer", host="10.99.0.1"), span=EVERY_GROUP)
    assert nodes["peer"]["error"] == {
        "type": "connection",
        "message": "10.99.0.1: Network is unreachable (no echo answered)",
    }


@pytest.mark.parametrize(
    ("target", "destination"),
    [
        ("127.0.0.1", {"address": "127.0.0.1"}),
        ("::1", {"address": "::1"}),  # not ":" port 1
        ("app-1.example.invalid", {"address": "app-1.example.invalid"}),
        ("[::1]:5353", {"address": "::1", "port": 5353}),
        ("ns1.example.invalid:53", {"address": "ns1.example.invalid", "port": 53}),
        ("system", None),  # dns's system resolver: the node's name stands in for a target
    ],
)
def test_event_destination(target: str, destination: dict[str, Any] | None) -> None:
    """Events carry destination.address (and port) for every form a node's target takes."""
    node = NodeResult("system" if target == "system" else "n", target, NodeStatus.DOWN)
    result = CheckResult(
        "c", "icmp", "", Status.DOWN, None, datetime.now(UTC), 0.1, (node,), "0" * 32
    )
    assert check_event(result).get("destination") == destination
