"""Each probe kind against real loopback peers: every failure gets the right error.type.

The peers are the project's simulators (real sockets on 127.0.0.1, port 0); the runner
is the production one, so timeouts are enforced exactly as in `probe --all`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from config.checks import CheckBase
from config.load import parse_config
from core.errors import ErrorType
from core.result import CheckResult, NodeStatus, Status
from engine.runner import run_check
from probes.base import ProbeContext
from simulator import Mode, Simulator
from tests.endpoint import serving
from tests.ports import free_port


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as simulator:
        yield simulator


def one_check(kind: str, nodes: str, **opts: Any) -> CheckBase:
    lines = ["  - name: c", f"    kind: {kind}", f"    nodes: {nodes}"]
    lines += [f"    {key}: {value}" for key, value in opts.items()]
    return parse_config("checks:\n" + "\n".join(lines) + "\n").checks[0]


async def http_result(
    sim: Simulator, ctx: ProbeContext, mode: Mode, *, tls: bool = False, **opts: Any
) -> CheckResult:
    peer = await sim.add_http("link", "n", tls=tls, mode=mode)
    opts.setdefault("retries", "{attempts: 1}")
    if tls:
        opts["tls"] = "{ca_file: " + str(sim.ca_file) + ", " + opts.pop("tls_extra", "") + "}"
    check = one_check("http", f'[{{name: n, url: "{peer.url}"}}]', **opts)
    return await run_check(check, ctx)


def error_of(result: CheckResult) -> tuple[ErrorType, str]:
    error = result.nodes[0].error
    assert error is not None, "expected the node to fail"
    return error.type, error.message


async def test_http_healthy_reports_status_and_phases(sim: Simulator, ctx: ProbeContext) -> None:
    """A healthy node is up, with the status code and blackbox-style phase timings."""
    result = await http_result(sim, ctx, Mode.HEALTHY, expect="{json: {status: ok}}")
    assert result.status is Status.UP
    attempt = result.nodes[0].attempts[0]
    assert attempt.details["status_code"] == 200
    assert {"connect", "processing", "transfer"} <= set(attempt.phases)
    assert all(v >= 0 for v in attempt.phases.values())


async def test_https_with_custom_ca(sim: Simulator, ctx: ProbeContext) -> None:
    """HTTPS verified against the check's ca_file; the certificate's expiry is reported."""
    result = await http_result(sim, ctx, Mode.HEALTHY, tls=True)
    assert result.status is Status.UP
    details = result.nodes[0].attempts[0].details
    assert details["tls_days_left"] > 30
    assert details["tls_not_after"].endswith("Z")


@pytest.mark.parametrize(
    ("mode", "kind", "words"),
    [
        (Mode.REFUSING, ErrorType.CONNECTION_REFUSED, "connection refused"),
        (Mode.ERRORING, ErrorType.HTTP_STATUS, "status 503"),
        (Mode.RESET, ErrorType.CONNECTION_RESET, "cut short"),
        (Mode.GARBAGE, ErrorType.PROTOCOL, "not a valid HTTP response"),
    ],
)
async def test_http_failures(
    sim: Simulator, ctx: ProbeContext, mode: Mode, kind: ErrorType, words: str
) -> None:
    """Refused, 5xx, reset mid-body and garbage each get their own error.type."""
    result = await http_result(sim, ctx, mode)
    assert result.status is Status.DOWN
    error_type, message = error_of(result)
    assert error_type is kind
    assert words in message


async def test_wrong_body_is_an_assertion(sim: Simulator, ctx: ProbeContext) -> None:
    """A 200 with the wrong content is down with assertion, naming the field."""
    result = await http_result(sim, ctx, Mode.WRONG_BODY, expect="{json: {status: ok}}")
    assert error_of(result) == (
        ErrorType.ASSERTION,
        'JSON field status is "maintenance", expected "ok"',
    )


@pytest.mark.parametrize("mode", [Mode.HANGING, Mode.TRICKLE])
async def test_hang_and_trickle_end_at_the_timeout(
    sim: Simulator, ctx: ProbeContext, mode: Mode
) -> None:
    """A node that never answers, or drips one byte at a time, is a timeout within its bound."""
    started = time.monotonic()
    result = await http_result(sim, ctx, mode, timeout="300ms", max_body_bytes=64 * 2**20)
    elapsed = time.monotonic() - started
    assert error_of(result)[0] is ErrorType.TIMEOUT
    assert 0.29 <= elapsed < 0.3 + 0.25


async def test_slow_node_breaks_the_latency_limit(sim: Simulator, ctx: ProbeContext) -> None:
    """An answer slower than expect.max_latency is down with latency, not timeout."""
    peer = await sim.add_http("link", "n", mode=Mode.SLOW)
    peer.slow_delay = 0.15
    check = one_check(
        "http",
        f'[{{name: n, url: "{peer.url}"}}]',
        retries="{attempts: 1}",
        expect="{max_latency: 100ms}",
    )
    result = await run_check(check, ctx)
    error_type, message = error_of(result)
    assert error_type is ErrorType.LATENCY
    assert "limit 100 ms" in message


async def test_endless_body_is_capped(sim: Simulator, ctx: ProbeContext) -> None:
    """An endless body stops at max_body_bytes: body_too_large, quickly, memory bounded."""
    started = time.monotonic()
    result = await http_result(sim, ctx, Mode.HUGE_BODY, max_body_bytes=65536, timeout="5s")
    assert error_of(result)[0] is ErrorType.BODY_TOO_LARGE
    assert time.monotonic() - started < 2


async def test_expired_certificate_is_reported_as_expired(
    sim: Simulator, ctx: ProbeContext
) -> None:
    """An expired certificate from a trusted CA reads 'expired', not merely 'untrusted'."""
    result = await http_result(
        sim, ctx, Mode.EXPIRED_CERTIFICATE, tls=True, retries="{attempts: 3, backoff: 10ms}"
    )
    assert error_of(result) == (ErrorType.TLS_EXPIRED, "certificate has expired")
    assert len(result.nodes[0].attempts) == 1  # it will not heal on retry


async def test_self_signed_certificate_is_untrusted(sim: Simulator, ctx: ProbeContext) -> None:
    """A self-signed certificate fails verification as tls, with OpenSSL's reason."""
    result = await http_result(sim, ctx, Mode.BAD_CERTIFICATE, tls=True)
    error_type, message = error_of(result)
    assert error_type is ErrorType.TLS
    assert "self-signed" in message


async def test_verification_can_be_switched_off(sim: Simulator, ctx: ProbeContext) -> None:
    """`tls: {verify: false}` accepts a self-signed peer (for a lab link, on purpose)."""
    result = await http_result(sim, ctx, Mode.BAD_CERTIFICATE, tls=True, tls_extra="verify: false")
    assert result.status is Status.UP


async def test_dns_failure(ctx: ProbeContext) -> None:
    """An unresolvable host is a dns error (the test resolver knows only loopback)."""
    check = one_check(
        "http", '[{name: n, url: "http://db.invalid:8080/"}]', retries="{attempts: 1}"
    )
    error_type, message = error_of(await run_check(check, ctx))
    assert error_type is ErrorType.DNS
    assert "db.invalid" in message


# --- tcp -------------------------------------------------------------------------


async def tcp_result(
    sim: Simulator,
    ctx: ProbeContext,
    mode: Mode = Mode.HEALTHY,
    *,
    banner: bytes = b"",
    **opts: Any,
) -> CheckResult:
    peer = await sim.add_tcp("host", "n", banner=banner, mode=mode)
    opts.setdefault("retries", "{attempts: 1}")
    check = one_check("tcp", f'[{{name: n, address: "{peer.address}"}}]', **opts)
    return await run_check(check, ctx)


async def test_tcp_connect_only(sim: Simulator, ctx: ProbeContext) -> None:
    """A listening port is up; the connect phase is timed."""
    result = await tcp_result(sim, ctx)
    assert result.status is Status.UP
    assert "connect" in result.nodes[0].attempts[0].phases


async def test_tcp_banner_matches(sim: Simulator, ctx: ProbeContext) -> None:
    """The jump host's SSH banner matches reply_regex; the banner is kept in details."""
    result = await tcp_result(
        sim, ctx, banner=b"SSH-2.0-OpenSSH_9.2p1\r\n", expect="{reply_regex: '^SSH-2\\.0-'}"
    )
    assert result.status is Status.UP
    assert result.nodes[0].attempts[0].details["reply"].startswith("SSH-2.0-OpenSSH")


async def test_tcp_send_and_expect(sim: Simulator, ctx: ProbeContext) -> None:
    """Bytes written with escapes are sent, and the reply pattern is matched."""
    result = await tcp_result(sim, ctx, send="'PING\\r\\n'", expect="{reply_regex: PONG}")
    assert result.status is Status.UP


async def test_tcp_wrong_banner_is_an_assertion(sim: Simulator, ctx: ProbeContext) -> None:
    """A peer that answers something else fails as assertion, showing what it said."""
    result = await tcp_result(sim, ctx, mode=Mode.GARBAGE, expect="{reply_regex: '^SSH-'}")
    error_type, message = error_of(result)
    assert error_type is ErrorType.ASSERTION
    assert message.startswith("reply '\\x00\\x01garbage")


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        (Mode.REFUSING, ErrorType.CONNECTION_REFUSED),
        (Mode.HANGING, ErrorType.TIMEOUT),
        (Mode.RESET, ErrorType.CONNECTION_RESET),
    ],
)
async def test_tcp_failures(sim: Simulator, ctx: ProbeContext, mode: Mode, kind: ErrorType) -> None:
    """Refused, silent and reset middleware each get their error.type."""
    result = await tcp_result(
        sim,
        ctx,
        mode=mode,
        timeout="300ms",
        expect="{reply_regex: '^SSH-'}",
        banner=b"SSH-2.0-x\r\n",
    )
    assert error_of(result)[0] is kind


# --- tls -------------------------------------------------------------------------


async def tls_result(
    sim: Simulator, ctx: ProbeContext, mode: Mode = Mode.HEALTHY, tls: str = ""
) -> CheckResult:
    peer = await sim.add_tcp("portal", "n", tls=True, mode=mode)
    check = one_check(
        "tls",
        f'[{{name: n, address: "{peer.address}"}}]',
        retries="{attempts: 1}",
        timeout="1s",
        tls="{ca_file: " + str(sim.ca_file) + (", " + tls if tls else "") + "}",
    )
    return await run_check(check, ctx)


async def test_tls_handshake_details(sim: Simulator, ctx: ProbeContext) -> None:
    """A good certificate: up, with version, cipher, expiry and the tls phase timed."""
    result = await tls_result(sim, ctx)
    assert result.status is Status.UP
    attempt = result.nodes[0].attempts[0]
    assert attempt.details["tls_version"].startswith("TLS")
    assert attempt.details["tls_days_left"] > 30
    assert {"connect", "tls"} <= set(attempt.phases)


async def test_tls_warn_days_gives_a_warning(sim: Simulator, ctx: ProbeContext) -> None:
    """Inside warn_days the node stays up but the check carries a warning."""
    result = await tls_result(sim, ctx, tls="warn_days: 100, crit_days: 0")
    assert result.status is Status.UP
    assert result.warnings
    assert "certificate expires in" in result.warnings[0]


async def test_tls_crit_days_is_down(sim: Simulator, ctx: ProbeContext) -> None:
    """Inside crit_days the node is down with cert_expiring."""
    result = await tls_result(sim, ctx, tls="warn_days: 100, crit_days: 100")
    error_type, message = error_of(result)
    assert error_type is ErrorType.CERT_EXPIRING
    assert "critical below 100" in message


@pytest.mark.parametrize(
    ("mode", "tls", "kind", "words"),
    [
        (Mode.EXPIRED_CERTIFICATE, "", ErrorType.TLS_EXPIRED, "expired"),
        (Mode.BAD_CERTIFICATE, "", ErrorType.TLS, "self-signed"),
        (Mode.HEALTHY, "server_name: other.invalid", ErrorType.TLS, "mismatch"),
        (Mode.GARBAGE, "", ErrorType.TLS, "TLS handshake failed"),
        (Mode.HANGING, "", ErrorType.TIMEOUT, "no answer"),
    ],
)
async def test_tls_failures(
    sim: Simulator, ctx: ProbeContext, mode: Mode, tls: str, kind: ErrorType, words: str
) -> None:
    """Expired, self-signed, wrong name, not TLS at all, and a silent peer."""
    result = await tls_result(sim, ctx, mode, tls)
    error_type, message = error_of(result)
    assert error_type is kind
    assert words in message.lower() or words in message


async def test_failover_across_real_nodes(sim: Simulator, ctx: ProbeContext) -> None:
    """Preferred node refusing, alternate healthy: degraded, served by the alternate."""
    a = await sim.add_http("police-110", "node-a", mode=Mode.REFUSING)
    b = await sim.add_http("police-110", "node-b")
    check = one_check(
        "http",
        f'[{{name: node-a, url: "{a.url}"}}, {{name: node-b, url: "{b.url}"}}]',
        retries="{attempts: 2, backoff: 10ms}",
    )
    result = await run_check(check, ctx)
    assert result.status is Status.DEGRADED
    assert result.active_node == "node-b"
    assert [n.status for n in result.nodes] == [NodeStatus.DOWN, NodeStatus.UP]
    assert len(result.nodes[0].attempts) == 2
    assert b.requests == 1


async def with_peak_memory(check: CheckBase, ctx: ProbeContext) -> tuple[CheckResult, int]:
    """Run a check and report the most memory Python held at once meanwhile."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = await run_check(check, ctx)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_mutual_tls_presents_the_client_certificate(
    ctx: ProbeContext, tmp_path: Path
) -> None:
    """With cert_file/key_file the check passes a server that demands a client certificate."""
    import ssl

    import trustme
    from aiohttp import web

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("hotline-probe.ops.invalid")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    ca_file, client_file = tmp_path / "ca.pem", tmp_path / "client.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(client_file))

    async def hello(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        return web.json_response({"status": "ok", "client": bool(peer)})

    app = web.Application()
    app.router.add_get("/", hello)
    async with serving(app, server_ctx) as port:
        nodes = f'[{{name: n, url: "https://127.0.0.1:{port}/"}}]'
        with_cert = one_check(
            "http",
            nodes,
            retries="{attempts: 1}",
            tls=f"{{ca_file: {ca_file}, cert_file: {client_file}}}",
            expect="{json: {client: true}}",
        )
        assert (await run_check(with_cert, ctx)).status is Status.UP
        without = one_check("http", nodes, retries="{attempts: 1}", tls=f"{{ca_file: {ca_file}}}")
        error_type, _ = error_of(await run_check(without, ctx))
        assert error_type in (ErrorType.TLS, ErrorType.CONNECTION_RESET, ErrorType.PROTOCOL)


async def test_memory_stays_bounded_on_an_endless_body(sim: Simulator, ctx: ProbeContext) -> None:
    """Reading an endless body allocates about the body cap, not what the peer sends."""
    peer = await sim.add_http("link", "n", mode=Mode.HUGE_BODY)
    check = one_check(
        "http", f'[{{name: n, url: "{peer.url}"}}]', retries="{attempts: 1}", max_body_bytes=2**20
    )
    result, peak = await with_peak_memory(check, ctx)
    assert error_of(result)[0] is ErrorType.BODY_TOO_LARGE
    assert peak < 8 * 2**20


async def test_compressed_body_is_capped_after_inflating(ctx: ProbeContext) -> None:
    """A 30 KB gzip that inflates to 30 MiB is body_too_large, with bounded memory; a
    small gzip body is inflated and judged."""
    import gzip

    from aiohttp import web

    bomb = gzip.compress(b"\0" * (30 * 2**20))
    small = gzip.compress(b'{"status": "ok"}')

    async def handler(request: web.Request) -> web.Response:
        body = bomb if request.path == "/bomb" else small
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    async with serving(app) as port:
        ok = one_check(
            "http",
            f'[{{name: n, url: "http://127.0.0.1:{port}/small"}}]',
            retries="{attempts: 1}",
            expect="{json: {status: ok}}",
        )
        assert (await run_check(ok, ctx)).status is Status.UP
        check = one_check(
            "http", f'[{{name: n, url: "http://127.0.0.1:{port}/bomb"}}]', retries="{attempts: 1}"
        )
        result, peak = await with_peak_memory(check, ctx)
        assert error_of(result)[0] is ErrorType.BODY_TOO_LARGE
        assert peak < 8 * 2**20


async def test_redirect_to_https_is_verified(sim: Simulator, ctx: ProbeContext) -> None:
    """Following a redirect from http to a self-signed https node still fails as tls."""
    from aiohttp import web

    target = await sim.add_http("link", "tls-node", tls=True, mode=Mode.BAD_CERTIFICATE)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target.url)

    app = web.Application()
    app.router.add_get("/", redirect)
    async with serving(app) as port:
        check = one_check(
            "http",
            f'[{{name: n, url: "http://127.0.0.1:{port}/"}}]',
            retries="{attempts: 1}",
            follow_redirects="true",
        )
        assert error_of(await run_check(check, ctx))[0] is ErrorType.TLS


@pytest.mark.parametrize(
    ("kind", "mode", "words"),
    [
        ("http", Mode.HANGING, "waiting for the first byte of the answer"),
        ("tls", Mode.HANGING, "waiting for the TLS handshake"),
    ],
)
async def test_timeout_names_the_phase_that_hung(
    sim: Simulator, ctx: ProbeContext, kind: str, mode: Mode, words: str
) -> None:
    """A timeout says where the attempt was stuck, not just that it was."""
    if kind == "http":
        peer: Any = await sim.add_http("link", "n", mode=mode)
        nodes = f'[{{name: n, url: "{peer.url}"}}]'
    else:
        peer = await sim.add_tcp("link", "n", tls=True, mode=mode)
        nodes = f'[{{name: n, address: "{peer.address}"}}]'
    result = await run_check(one_check(kind, nodes, retries="{attempts: 1}", timeout="200ms"), ctx)
    error_type, message = error_of(result)
    assert error_type is ErrorType.TIMEOUT
    assert words in message


async def test_hanging_name_lookups_do_not_starve_other_checks(
    ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty lookups that never answer: they fail as dns within their timeout, and a
    check on localhost beside them is still up."""
    import socket
    import threading

    from engine.runner import run_all

    release = threading.Event()
    real = socket.getaddrinfo

    def stuck(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".stuck.invalid"):
            release.wait(5)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    async with Simulator() as local_sim:
        peer = await local_sim.add_http("local", "n")
        checks = "".join(
            f"  - {{name: s{i}, kind: tcp, timeout: 300ms, retries: {{attempts: 1}}, "
            f'nodes: [{{name: n, address: "h{i}.stuck.invalid:80"}}]}}\n'
            for i in range(20)
        )
        checks += (
            f"  - {{name: local, kind: http, timeout: 1s, retries: {{attempts: 1}}, "
            f'nodes: [{{name: n, url: "http://localhost:{peer.port}/"}}]}}\n'
        )
        config = parse_config("checks:\n" + checks)
        started = time.monotonic()
        try:
            results = await run_all(config, ctx)
        finally:
            release.set()
        elapsed = time.monotonic() - started
    by_name = {r.name: r for r in results}
    assert by_name["local"].status is Status.UP
    stuck_errors = {error_of(by_name[f"s{i}"]) for i in range(20)}
    assert stuck_errors == {(ErrorType.DNS, "name lookup gave no answer within 300ms")}
    assert elapsed < 1.5


# --- hostile input and the shared failure wording -------------------------------------


async def test_deeply_nested_json_body_is_an_assertion(ctx: ProbeContext) -> None:
    """A body of 100 000 "[" blows the JSON parser's stack: an assertion, not a crash."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="[" * 100_000, content_type="application/json")

    app = web.Application()
    app.router.add_get("/", handler)
    async with serving(app) as port:
        check = one_check(
            "http",
            f'[{{name: n, url: "http://127.0.0.1:{port}/"}}]',
            retries="{attempts: 1}",
            expect="{json: {status: ok}}",
        )
        result = await run_check(check, ctx)
    assert error_of(result) == (ErrorType.ASSERTION, "body is JSON nested too deeply to read")
    assert result.nodes[0].attempts[0].details["status_code"] == 200


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (113, ErrorType.CONNECTION, "unreachable during the exchange: No route to host"),
        (110, ErrorType.TIMEOUT, "timed out during the exchange"),
        (104, ErrorType.CONNECTION_RESET, "connection reset by"),
    ],
)
async def test_tcp_socket_errors_mid_exchange_are_named(
    sim: Simulator,
    ctx: ProbeContext,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    kind: ErrorType,
    words: str,
) -> None:
    """The kernel may report a lost route (EHOSTUNREACH) or a dead peer (ETIMEDOUT) on an
    established connection: each is named like the same error at connect, not a crash."""
    import os

    import probes.tcp
    from probes.net import open_stream

    async def failing_reads(*args: Any, **kwargs: Any) -> Any:
        reader, writer = await open_stream(*args, **kwargs)

        async def read(n: int = -1) -> bytes:
            raise (ConnectionResetError if code == 104 else OSError)(code, os.strerror(code))

        reader.read = read  # type: ignore[method-assign]
        return reader, writer

    monkeypatch.setattr(probes.tcp, "open_stream", failing_reads)
    result = await tcp_result(sim, ctx, banner=b"SSH-2.0-x\r\n", expect="{reply_regex: '^SSH-'}")
    error_type, message = error_of(result)
    assert error_type is kind
    assert words in message


@pytest.fixture
def idna_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real getaddrinfo's first step, IDNA-encoding the name, before the tests'
    loopback-only resolver: a label over 63 characters fails as it does in production
    (UnicodeError), without a query leaving the host."""
    import socket

    loopback_only = socket.getaddrinfo

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str):
            host.encode("idna")
        return loopback_only(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)


LONG_LABEL = "a" * 64 + ".example.invalid"
INVALID_NAME = "not a valid host name (label empty or too long)"


@pytest.mark.usefixtures("idna_lookups")
@pytest.mark.parametrize(
    ("kind", "nodes", "extra"),
    [
        ("tcp", f'[{{name: n, address: "{LONG_LABEL}:80"}}]', {}),
        ("tls", f'[{{name: n, address: "{LONG_LABEL}:443"}}]', {}),
        ("http", f'[{{name: n, url: "http://{LONG_LABEL}/"}}]', {}),
        ("dns", f'[{{name: n, address: "{LONG_LABEL}"}}]', {"query": "{name: example.org}"}),
        ("icmp", f"[{{name: n, host: {LONG_LABEL}}}]", {"count": 1}),
    ],
)
async def test_a_label_longer_than_63_characters_is_a_dns_failure(
    ctx: ProbeContext, kind: str, nodes: str, extra: dict[str, Any]
) -> None:
    """getaddrinfo refuses such a name with UnicodeError: every kind reports dns, saying
    the name is not valid, never a probe crash."""
    check = one_check(kind, nodes, retries="{attempts: 1}", **extra)
    error_type, message = error_of(await run_check(check, ctx))
    assert error_type is ErrorType.DNS
    assert message.startswith("cannot resolve ") and message.endswith(INVALID_NAME)


@pytest.mark.usefixtures("idna_lookups")
@pytest.mark.parametrize("driver", ["postgres", "mysql"])
async def test_a_long_label_in_a_sql_source_is_a_dns_failure(
    ctx: ProbeContext, driver: str
) -> None:
    """The database drivers resolve the host themselves: the same dns failure."""
    check = parse_config(f"""
checks:
  - name: c
    kind: freshness
    max_age: 15m
    retries: {{attempts: 1}}
    source: {{type: sql, driver: {driver}, host: {LONG_LABEL}, user: u, query: SELECT 1}}
""").checks[0]
    error_type, message = error_of(await run_check(check, ctx))
    assert error_type is ErrorType.DNS
    assert message == f"cannot resolve {LONG_LABEL}: {INVALID_NAME}"


async def test_a_refused_port_reads_the_same_for_every_kind(ctx: ProbeContext) -> None:
    """One wording for one socket error, whichever kind met it (probes/net.py)."""
    address = f"127.0.0.1:{free_port()}"
    checks = [
        one_check("tcp", f'[{{name: n, address: "{address}"}}]', retries="{attempts: 1}"),
        one_check("tls", f'[{{name: n, address: "{address}"}}]', retries="{attempts: 1}"),
        one_check("http", f'[{{name: n, url: "http://{address}/"}}]', retries="{attempts: 1}"),
        one_check(
            "dns",
            f'[{{name: n, address: "{address}"}}]',
            retries="{attempts: 1}",
            transport="tcp",
            query="{name: example.org}",
        ),
    ]
    for check in checks:
        assert error_of(await run_check(check, ctx)) == (
            ErrorType.CONNECTION_REFUSED,
            f"connection refused by {address}",
        ), check.kind
