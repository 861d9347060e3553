"""`kind: proxy` and `proxy:` on http: through a real tinyproxy and through hostile proxies.

tinyproxy (Debian's package, installed by scripts/install-test-deps.sh) runs in the
foreground on a free loopback port with a temporary config; the targets are the
project's simulators. Every failure must say whether the proxy or the target failed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from config import secret_values
from config.checks import CheckBase
from config.kinds.http import HttpCheck
from config.kinds.proxy import ProxyCheck
from config.load import parse_config
from core.errors import ErrorType
from core.result import CheckResult, Status
from engine.runner import run_check
from probes.base import ProbeContext, attempt_marks
from simulator import Mode, SimHttpNode, Simulator
from tests.cli_run import probe
from tests.endpoint import scripted
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
TINYPROXY = "/usr/bin/tinyproxy"
USER, PASSWORD = "hotline", "canary-proxy-pw-7d2e"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as simulator:
        yield simulator


StartProxy = Callable[..., Awaitable[str]]


@pytest.fixture
async def tinyproxy(tmp_path: Path) -> AsyncIterator[StartProxy]:
    """Starts tinyproxy (Basic auth USER/PASSWORD, CONNECT to the given ports only) and
    returns its address; every one started is stopped after the test."""
    if not os.access(TINYPROXY, os.X_OK):
        pytest.fail(f"{TINYPROXY} is missing: run `scripts/install-test-deps.sh .venv` as root")
    processes: list[asyncio.subprocess.Process] = []
    drains: list[asyncio.Task[None]] = []

    async def start(*connect_ports: int) -> str:
        port = free_port()
        config = tmp_path / f"tinyproxy-{port}.conf"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Allow 127.0.0.1",
            f"BasicAuth {USER} {PASSWORD}",
            "Timeout 10",
            "MaxClients 20",
            "LogLevel Info",
            *(f"ConnectPort {p}" for p in connect_ports),
        ]
        config.write_text("\n".join(lines) + "\n")
        # -d: the foreground, logging to stdout (no LogFile), so the test sees it start.
        process = await asyncio.create_subprocess_exec(
            TINYPROXY,
            "-d",
            "-c",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        processes.append(process)
        ready = asyncio.Event()
        log: list[str] = []

        async def drain() -> None:  # a full pipe would stall tinyproxy
            assert process.stdout is not None
            while line := await process.stdout.readline():
                log.append(line.decode(errors="replace"))
                if "Accepting connections" in log[-1]:
                    ready.set()

        drains.append(asyncio.create_task(drain()))
        try:
            async with asyncio.timeout(10):
                await ready.wait()
        except TimeoutError:
            pytest.fail("tinyproxy did not start:\n" + "".join(log))
        return f"127.0.0.1:{port}"

    yield start
    for process in processes:
        if process.returncode is None:
            process.terminate()
        await process.wait()
    for task in drains:
        await task


def proxy_check(
    url: str, proxy: str, *, kind: str = "proxy", credentials: bool = True, **opts: Any
) -> CheckBase:
    auth = f", username: {USER}, password: {PASSWORD}" if credentials else ""
    lines = [
        "  - name: c",
        f"    kind: {kind}",
        f'    nodes: [{{name: n, url: "{url}"}}]',
        f'    proxy: {{url: "http://{proxy}"{auth}}}',
        "    retries: {attempts: 1}",
    ]
    lines += [f"    {key}: {value}" for key, value in opts.items()]
    return parse_config("checks:\n" + "\n".join(lines) + "\n").checks[0]


def error_of(result: CheckResult) -> tuple[ErrorType, str]:
    error = result.nodes[0].error
    assert error is not None, "expected the node to fail"
    return error.type, error.message


async def https_target(sim: Simulator, mode: Mode = Mode.HEALTHY) -> SimHttpNode:
    return await sim.add_http("target", "tls", tls=True, mode=mode)


def tls_of(sim: Simulator) -> str:
    return f"{{ca_file: {sim.ca_file}}}"


# --- through tinyproxy ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["proxy", "http"])
async def test_http_target_through_the_proxy(
    sim: Simulator, tinyproxy: StartProxy, ctx: ProbeContext, kind: str
) -> None:
    """An http:// node is asked through the proxy (absolute URI, proxy credentials): up,
    and the target really saw the request come from the proxy."""
    target = await sim.add_http("target", "plain")
    proxy = await tinyproxy()
    result = await run_check(proxy_check(target.url + "/ping", proxy, kind=kind), ctx)
    assert result.status is Status.UP, result.nodes[0].error
    details = result.nodes[0].attempts[0].details
    assert (details["status_code"], details["proxy"]) == (200, proxy)
    assert target.requests == 1


async def test_https_target_through_a_connect_tunnel(
    sim: Simulator, tinyproxy: StartProxy, ctx: ProbeContext
) -> None:
    """An https:// node goes through CONNECT; TLS is end to end (the target's certificate
    is inspected) and the proxy's part is timed as its own phases."""
    target = await https_target(sim)
    proxy = await tinyproxy(target.port)
    result = await run_check(proxy_check(target.url, proxy, tls=tls_of(sim)), ctx)
    assert result.status is Status.UP, result.nodes[0].error
    attempt = result.nodes[0].attempts[0]
    assert attempt.details["tls_days_left"] > 30
    assert {"proxy_connect", "proxy_tunnel", "tls", "processing"} <= set(attempt.phases)


@pytest.mark.parametrize("https", [True, False], ids=["connect", "absolute-uri"])
async def test_missing_credentials_are_a_proxy_failure(
    sim: Simulator, tinyproxy: StartProxy, ctx: ProbeContext, https: bool
) -> None:
    """A 407 is the proxy refusing us, whether it answers CONNECT or a plain request."""
    target = await https_target(sim) if https else await sim.add_http("target", "plain")
    proxy = await tinyproxy(target.port)
    check = proxy_check(target.url, proxy, tls=tls_of(sim), credentials=False)
    result = await run_check(check, ctx)
    assert error_of(result) == (
        ErrorType.PROXY,
        f"proxy {proxy} requires authentication (407 Proxy Authentication Required); "
        "the check gives no credentials",
    )
    assert result.nodes[0].attempts[0].details["proxy_status"] == 407
    assert target.requests == 0


def with_url_credentials(url: str, proxy: str, password: str) -> CheckBase:
    return parse_config(
        "checks:\n  - name: c\n    kind: proxy\n    retries: {attempts: 1}\n"
        f'    nodes: [{{name: n, url: "{url}"}}]\n'
        f'    proxy: {{url: "http://{USER}:{password}@{proxy}"}}\n'
    ).checks[0]


async def test_wrong_credentials_are_a_proxy_failure(
    sim: Simulator, tinyproxy: StartProxy, ctx: ProbeContext
) -> None:
    """Wrong credentials refused in answer to CONNECT (tinyproxy says 401 there, not
    407): the proxy's failure; the target is never reached."""
    target = await https_target(sim)
    proxy = await tinyproxy(target.port)
    check = with_url_credentials(target.url, proxy, "not-the-password")
    assert error_of(await run_check(check, ctx)) == (
        ErrorType.PROXY,
        f"proxy {proxy} rejected the check's credentials (401 Unauthorized)",
    )
    assert target.requests == 0


async def test_wrong_credentials_over_absolute_uri(
    sim: Simulator, tinyproxy: StartProxy, ctx: ProbeContext
) -> None:
    """For an http:// node a 407 is the proxy's (only proxies send it); tinyproxy's 401
    could be the target's own, so it is judged as an answer naming the proxy."""
    target = await sim.add_http("target", "plain")
    answer = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    async with hostile_proxy(answer) as strict:
        check = with_url_credentials(target.url, strict, "not-the-password")
        assert error_of(await run_check(check, ctx)) == (
            ErrorType.PROXY,
            f"proxy {strict} rejected the check's credentials (407 Proxy Authentication Required)",
        )
    proxy = await tinyproxy()
    check = with_url_credentials(target.url, proxy, "not-the-password")
    assert error_of(await run_check(check, ctx)) == (
        ErrorType.HTTP_STATUS,
        f"status 401 (Unauthorized) through proxy {proxy}, expected 2xx",
    )
    assert target.requests == 0


async def test_proxy_port_closed_is_proxy_refused(ctx: ProbeContext) -> None:
    """Nothing listening on the proxy's port: the proxy failed, not the target."""
    port = free_port()
    check = proxy_check("https://127.0.0.1:9/", f"127.0.0.1:{port}")
    assert error_of(await run_check(check, ctx)) == (
        ErrorType.PROXY,
        f"connection refused by the proxy 127.0.0.1:{port}",
    )


async def test_target_down_behind_a_working_proxy(
    sim: Simulator, tinyproxy: StartProxy, ctx: ProbeContext
) -> None:
    """The proxy answers CONNECT with 'cannot reach it' (tinyproxy: 500 Unable to
    connect): the tunnel was not given, a proxy failure, whose message says the proxy
    answered and what it could not reach."""
    target = await https_target(sim, Mode.REFUSING)
    proxy = await tinyproxy(target.port)
    result = await run_check(proxy_check(target.url, proxy, tls=tls_of(sim)), ctx)
    assert error_of(result) == (
        ErrorType.PROXY,
        f"proxy {proxy} answered that it could not reach 127.0.0.1:{target.port} "
        "(500 Unable to connect)",
    )
    assert result.nodes[0].attempts[0].details["proxy_status"] == 500


async def test_plain_target_down_shows_the_proxys_answer(
    sim: Simulator, tinyproxy: StartProxy, ctx: ProbeContext
) -> None:
    """For an http:// target the proxy's error page is an answer like any other: an
    http_status failure that quotes the reason and names the proxy it came through."""
    target = await sim.add_http("target", "plain", mode=Mode.REFUSING)
    proxy = await tinyproxy()
    result = await run_check(proxy_check(target.url, proxy), ctx)
    assert error_of(result) == (
        ErrorType.HTTP_STATUS,
        f"status 500 (Unable to connect) through proxy {proxy}, expected 2xx",
    )


async def test_tunnel_to_a_forbidden_port_is_a_proxy_failure(
    sim: Simulator, tinyproxy: StartProxy, ctx: ProbeContext
) -> None:
    """The proxy's policy refusing the tunnel (403) is the proxy's doing."""
    target = await https_target(sim)
    proxy = await tinyproxy(target.port + 1 if target.port < 65535 else target.port - 1)
    kind, message = error_of(await run_check(proxy_check(target.url, proxy), ctx))
    assert kind is ErrorType.PROXY
    assert message == (
        f"proxy {proxy} refused to open a tunnel to 127.0.0.1:{target.port} (403 Access violation)"
    )


async def test_target_failures_after_the_tunnel_are_the_targets(
    sim: Simulator, tinyproxy: StartProxy, ctx: ProbeContext
) -> None:
    """Once the tunnel stands, a 503 from the target is http_status, as without a proxy."""
    target = await https_target(sim, Mode.ERRORING)
    proxy = await tinyproxy(target.port)
    result = await run_check(proxy_check(target.url, proxy, tls=tls_of(sim)), ctx)
    assert error_of(result) == (ErrorType.HTTP_STATUS, "status 503, expected 2xx")


# --- hostile proxies ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def hostile_proxy(answer: bytes | None, *, close: bool = True) -> AsyncIterator[str]:
    """A proxy on port 0 that reads a request head, sends ``answer`` and closes (or, with
    ``answer`` None and ``close`` False, never answers until the client goes away)."""
    async with scripted(answer, close=close) as port:
        yield f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            b"\x00\x01garbage\r\n\r\n",
            "answered CONNECT with something that is not HTTP: Expected HTTP/",
        ),
        (b"HTTP/1.1 200 Connec", "closed the connection before answering CONNECT"),
        (b"", "closed the connection before answering CONNECT"),
        (
            b"HTTP/1.1 200 OK\r\nX-Junk: " + b"j" * 100_000,
            "answered CONNECT with something that is not HTTP: Got more than",
        ),
    ],
    ids=["garbage", "cut-mid-status-line", "closed-at-once", "huge-header"],
)
async def test_hostile_proxy_answers_are_proxy_failures(
    ctx: ProbeContext, answer: bytes, message: str
) -> None:
    """Garbage, or a close in the middle of CONNECT: a clear proxy failure, no crash."""
    async with hostile_proxy(answer) as proxy:
        kind, text = error_of(await run_check(proxy_check("https://127.0.0.1:9/", proxy), ctx))
    assert kind is ErrorType.PROXY
    assert text.startswith(f"proxy {proxy} {message}")


async def test_connect_never_answered_is_a_proxy_timeout(ctx: ProbeContext) -> None:
    """A proxy that takes the CONNECT and says nothing: at the timeout, a proxy failure
    naming the wait, not a generic timeout."""
    async with hostile_proxy(None, close=False) as proxy:
        check = proxy_check("https://127.0.0.1:9/", proxy, timeout="300ms")
        result = await run_check(check, ctx)
    assert error_of(result) == (
        ErrorType.PROXY,
        "no answer within 300ms, waiting for the proxy's answer to CONNECT",
    )
    assert "proxy_connect" in result.nodes[0].attempts[0].phases


async def test_bad_gateway_and_gateway_timeout_are_proxy_failures(ctx: ProbeContext) -> None:
    """502 and 504 to CONNECT are the proxy's failures, as the issue counts them; the
    message says what the proxy could not reach, the details carry its status."""
    for status, kind, words in (
        (502, ErrorType.PROXY, "answered that it could not reach 127.0.0.1:9 (502 Bad Gateway)"),
        (504, ErrorType.PROXY, "answered that 127.0.0.1:9 did not answer it in time (504 "),
    ):
        reason = "Bad Gateway" if status == 502 else "Gateway Timeout"
        answer = f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode()
        async with hostile_proxy(answer) as proxy:
            result = await run_check(proxy_check("https://127.0.0.1:9/", proxy), ctx)
        assert error_of(result)[0] is kind
        assert words in error_of(result)[1]


async def test_unresolvable_proxy_is_a_proxy_failure(ctx: ProbeContext) -> None:
    """A proxy name that does not resolve is the proxy's failure, named as such."""
    check = proxy_check("https://127.0.0.1:9/", "zzd-proxy.hotline.invalid:3128")
    kind, message = error_of(await run_check(check, ctx))
    assert kind is ErrorType.PROXY
    assert message.startswith("cannot resolve the proxy zzd-proxy.hotline.invalid:3128")


# --- secrets -------------------------------------------------------------------------


@pytest.mark.e2e
async def test_proxy_credentials_never_leak(
    sim: Simulator, tinyproxy: StartProxy, tmp_path: Path
) -> None:
    """A proxy password in `password` or inside `url` appears in no output of `probe
    --all`: not in the JSON, the events, nor as the Basic token of the header."""
    target = await sim.add_http("target", "plain")
    proxy = await tinyproxy()
    config = tmp_path / "config.yaml"
    config.write_text(f"""
checks:
  - name: fields
    kind: proxy
    retries: {{attempts: 1}}
    nodes: [{{name: n, url: "{target.url}/"}}]
    proxy: {{url: "http://{proxy}", username: {USER}, password: "${{env:CANARY_PROXY_PW}}"}}
  - name: in-url
    kind: http
    retries: {{attempts: 1}}
    nodes: [{{name: n, url: "{target.url}/"}}]
    proxy: {{url: "http://{USER}:${{env:CANARY_PROXY_PW}}@{proxy}"}}
  - name: wrong
    kind: proxy
    retries: {{attempts: 1}}
    nodes: [{{name: n, url: "{target.url}/"}}]
    proxy: {{url: "http://{USER}:canary-wrong-pw-3b@{proxy}"}}
""")
    proc = await probe(
        "--all", "--json", "--events", "on", "-c", str(config), env={"CANARY_PROXY_PW": PASSWORD}
    )
    document = json.loads(proc.stdout)
    status = {c["name"]: c["status"] for c in document["checks"]}
    assert status == {"fields": "up", "in-url": "up", "wrong": "down"}, proc.stderr
    output = proc.stdout + proc.stderr
    assert f"status 401 (Unauthorized) through proxy {proxy}" in output
    for secret in (PASSWORD, "canary-wrong-pw-3b"):
        token = base64.b64encode(f"{USER}:{secret}".encode()).decode()
        assert secret not in output
        assert token not in output


def test_proxy_secrets_are_known_to_the_scrubber(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of writing the password reach the output scrubber; dumps hide them."""
    monkeypatch.setenv("CANARY_PROXY_PW", "canary/pw@4")
    config = parse_config("""
checks:
  - name: a
    kind: proxy
    nodes: [{name: n, url: "https://t.invalid/"}]
    proxy: {url: "http://zzd.invalid:3128", username: u, password: canary-field-pw-1}
  - name: b
    kind: http
    nodes: [{name: n, url: "https://t.invalid/"}]
    proxy: {url: "http://u:${env:CANARY_PROXY_PW}@zzd.invalid:3128"}
""")
    secrets = set(secret_values(config))
    assert {"canary-field-pw-1", "canary/pw@4"} <= secrets
    b = config.check("b")
    assert isinstance(b, HttpCheck) and b.proxy is not None
    assert b.proxy.credentials == ("u", "canary/pw@4")  # decoded from the url
    for text in (repr(config), str(config.model_dump()), config.model_dump_json()):
        assert "canary" not in text


# --- config ----------------------------------------------------------------------------


def test_proxy_check_model() -> None:
    """The proxy's address and endpoint never carry credentials."""
    check = proxy_check("https://t.invalid/", "zzd.invalid:3128")
    assert isinstance(check, ProxyCheck)
    assert check.proxy.address == "zzd.invalid:3128"
    assert check.proxy.endpoint == "http://zzd.invalid:3128"
    assert check.proxy.credentials == (USER, PASSWORD)


# --- the demo ------------------------------------------------------------------------


@pytest.mark.e2e
async def test_demo_proxy_checks_follow_the_switches(tmp_path: Path) -> None:
    """`probe --all --json` against the demo's topology: flipping the simulated 浙政钉
    proxy takes the proxy check and the signed provincial calls through it down (with
    the proxy named as the culprit) and back up."""
    import yaml

    from simulator.demo import EXAMPLE, build

    async with Simulator(directory=tmp_path) as sim:
        document = await build(sim, EXAMPLE.read_text(encoding="utf-8"))
        config = tmp_path / "demo.yaml"
        config.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        forward_proxy = sim.node("forward-proxy", "zzd-proxy")
        seen: list[dict[str, tuple[str, str | None]]] = []
        for mode in (Mode.HEALTHY, Mode.REFUSING, Mode.ERRORING, Mode.HEALTHY):
            await forward_proxy.set_mode(mode)
            run = await probe("--all", "--json", "--events", "off", "-c", str(config))
            checks = {c["name"]: c for c in json.loads(run.stdout)["checks"]}
            seen.append(
                {
                    name: (
                        checks[name]["status"],
                        (checks[name]["nodes"][0]["error"] or {}).get("type"),
                    )
                    for name in ("zzd-proxy", "province-minhu")
                }
            )
    assert seen == [
        {"zzd-proxy": ("up", None), "province-minhu": ("up", None)},
        {"zzd-proxy": ("down", "proxy"), "province-minhu": ("down", "proxy")},
        # A proxy that answers 502: a proxy failure (its message says it answered).
        {"zzd-proxy": ("down", "proxy"), "province-minhu": ("down", "proxy")},
        {"zzd-proxy": ("up", None), "province-minhu": ("up", None)},
    ], run.stderr


def test_documented_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example at the top of docs/kinds/proxy.md is a valid config."""
    monkeypatch.setenv("ZZD_PROXY_PASSWORD", "doc-proxy-pw")
    monkeypatch.setenv("MINHU_SIGN_SECRET", "doc-sign-secret")
    doc = (ROOT / "docs" / "kinds" / "proxy.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config("checks:\n" + example)
    zzd, minhu = config.checks
    assert isinstance(zzd, ProxyCheck) and isinstance(minhu, HttpCheck)
    assert minhu.proxy == zzd.proxy and minhu.sign is not None
    assert zzd.proxy.credentials == ("hotline-probe", "doc-proxy-pw")


async def test_hang_before_the_proxy_connects_is_the_proxys(ctx: ProbeContext) -> None:
    """An attempt cut by its timeout while still connecting to the proxy (a black-holed
    proxy address) is a proxy failure naming that wait."""

    async def stuck_connecting(check: Any, node: Any, ctx: ProbeContext) -> Any:
        marks = attempt_marks()
        marks["connect_start"] = marks["proxy_start"] = ctx.clock.monotonic()
        await asyncio.Event().wait()

    check = proxy_check("https://127.0.0.1:9/", "127.0.0.1:9", timeout="50ms")
    result = await run_check(check, ctx, probes={"proxy": stuck_connecting})
    assert error_of(result) == (
        ErrorType.PROXY,
        "no answer within 50ms, waiting for the connection to the proxy",
    )


async def test_signed_request_through_the_proxy(tinyproxy: StartProxy, ctx: ProbeContext) -> None:
    """A signed call through the proxy (the provincial interface's path) still verifies:
    the proxy relays the path, query and headers the signature covers."""
    from tests.test_signing import verifying_server

    proxy = await tinyproxy()
    async with verifying_server("canary-sign-via-proxy-2") as server:
        url = server.url + "/open/api/%E6%8E%A5%E5%8F%A3?z=1&a=%E6%B5%B7+%E5%AE%81"
        check = proxy_check(url, proxy, sign="{secret: canary-sign-via-proxy-2}")
        result = await run_check(check, ctx)
    assert result.status is Status.UP, result.nodes[0].error
    (seen,) = server.seen
    assert "tinyproxy" in seen.get("Via", "")  # it did come through the proxy
