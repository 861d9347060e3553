"""``kind: tcp`` with ``protocol:``: real servers answer up, broken peers a precise down.

The real PostgreSQL, MariaDB, Redis and RabbitMQ run on their standard loopback ports
(scripts/start-services.sh starts any that is not); sshd, a password-protected Redis and
an aiosmtpd server are started per test on loopback. The broken peers are tiny scripted
servers on port 0: half a handshake, garbage, a close before the greeting, a huge length.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, get_args

import pytest
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP

from config.kinds.tcp import TcpCheck, TcpProtocol
from config.load import parse_config
from core.errors import ErrorType
from core.result import Attempt, CheckResult, NodeStatus, Status
from engine.runner import run_check
from probes.base import ProbeContext
from probes.tcp_protocols import CONVERSATIONS
from simulator import Simulator
from simulator.certs import CertAuthority
from simulator.tcp_node import GREETINGS
from tests.ports import free_port

MAX_READ = 4096


def tcp_check(protocol: str, address: str, **opts: Any) -> TcpCheck:
    opts.setdefault("retries", "{attempts: 1}")
    lines = ["  - name: c", "    kind: tcp", f"    protocol: {protocol}"]
    lines += [f"    nodes: [{{name: n, address: '{address}'}}]"]
    lines += [f"    {key}: {value}" for key, value in opts.items()]
    check = parse_config("checks:\n" + "\n".join(lines) + "\n").checks[0]
    assert isinstance(check, TcpCheck)
    return check


async def run(ctx: ProbeContext, protocol: str, address: str, **opts: Any) -> CheckResult:
    return await run_check(tcp_check(protocol, address, **opts), ctx)


def only_attempt(result: CheckResult) -> Attempt:
    (attempt,) = result.nodes[0].attempts
    return attempt


def up(result: CheckResult) -> dict[str, Any]:
    """The details of a result that must be up."""
    attempt = only_attempt(result)
    assert attempt.error is None, attempt.error
    assert result.status is Status.UP
    return dict(attempt.details)


def down(result: CheckResult) -> tuple[ErrorType, str]:
    error = only_attempt(result).error
    assert error is not None, "expected the node to fail"
    assert result.nodes[0].status is NodeStatus.DOWN
    return error.type, error.message


def require_service(port: int, name: str) -> str:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"{name} is not answering on 127.0.0.1:{port} ({exc}): "
            "run `bash scripts/start-services.sh`"
        )
    return f"127.0.0.1:{port}"


def test_every_protocol_has_a_conversation() -> None:
    """Each value `protocol:` accepts has a preset behind it, and nothing else does."""
    assert set(get_args(TcpProtocol)) == set(CONVERSATIONS)


# --- the real servers on the machine ------------------------------------------------


async def test_mariadb_greeting_gives_its_version(ctx: ProbeContext) -> None:
    """MariaDB's handshake is read without logging in: its version, shown without the
    5.5.5- replication prefix, and the authentication plugin."""
    details = up(await run(ctx, "mysql", require_service(3306, "MariaDB")))
    assert details["protocol"] == "mysql"
    assert "MariaDB" in details["server_version"]
    assert not details["server_version"].startswith("5.5.5-")
    assert details["auth_plugin"]
    assert isinstance(details["tls_offered"], bool)


async def test_postgres_answers_the_startup(ctx: ProbeContext) -> None:
    """PostgreSQL answers the SSLRequest and the startup message; a role that does not
    exist (28000) still proves a server that takes connections."""
    result = await run(ctx, "postgres", require_service(5432, "PostgreSQL"))
    details = up(result)
    assert details["tls_offered"] in (True, False)
    assert details["sqlstate"] == "28000"
    assert "hotline_probe" in details["error"]
    assert {"processing", "transfer"} <= set(only_attempt(result).phases)


async def test_redis_pong(ctx: ProbeContext) -> None:
    """Redis answers PING with PONG."""
    details = up(await run(ctx, "redis", require_service(6379, "Redis")))
    assert details["reply"] == "PONG"


async def test_rabbitmq_connection_start(ctx: ProbeContext) -> None:
    """RabbitMQ's Connection.Start names the product and version."""
    details = up(await run(ctx, "amqp", require_service(5672, "RabbitMQ")))
    assert details["product"] == "RabbitMQ"
    assert details["server_version"][0].isdigit()
    assert details["amqp_version"] == "0-9"


@pytest.fixture
async def locked_redis(tmp_path: Path) -> AsyncIterator[str]:
    """A second, real redis-server on a free port that demands a password."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(tmp_path), "--requirepass", "canary-redis-password"]
    process = await asyncio.create_subprocess_exec(
        binary, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        await _wait_for_line(process, b"Ready to accept connections")
        yield f"127.0.0.1:{port}"
    finally:
        await _stop(process)


async def test_redis_noauth_is_alive(ctx: ProbeContext, locked_redis: str) -> None:
    """A Redis that wants a password answers PING with NOAUTH: up, and no password sent."""
    details = up(await run(ctx, "redis", locked_redis))
    assert details["reply"].startswith("NOAUTH")


@pytest.fixture
def sshd_config(tmp_path: Path) -> tuple[Path, int]:
    """An sshd_config for a free loopback port, a throwaway host key and no PAM."""
    if not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.fail("/usr/sbin/sshd is missing: run `make deps` (openssh-server)")
    privsep = Path("/run/sshd")  # compiled into sshd; Debian's unit creates it at boot
    if not privsep.is_dir():
        if os.geteuid() != 0:
            pytest.skip("sshd needs /run/sshd, which only root can create")
        privsep.mkdir(mode=0o755)
    key = tmp_path / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {key}\nUsePAM no\n"
        "PidFile none\nStrictModes no\nPasswordAuthentication no\n"
    )
    return config, port


@pytest.fixture
async def sshd(
    sshd_config: tuple[Path, int],
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """OpenSSH's sshd in the foreground, logging to stderr, stopped after the test."""
    config, port = sshd_config
    process = await asyncio.create_subprocess_exec(
        "/usr/sbin/sshd", "-D", "-e", "-f", str(config), stderr=subprocess.PIPE
    )
    try:
        await _wait_for_line(process, b"Server listening on", stream="stderr")
        yield f"127.0.0.1:{port}", process
    finally:
        await _stop(process)


async def test_sshd_banner(ctx: ProbeContext, sshd: tuple[str, asyncio.subprocess.Process]) -> None:
    """The jump host's sshd identifies itself: protocol 2.0 and its software version.
    The probe answers with its own identification, so sshd logs a client that left
    before authenticating, not a broken key exchange."""
    address, process = sshd
    details = up(await run(ctx, "ssh", address))
    assert details["protocol_version"] == "2.0"
    assert details["software_version"].startswith("OpenSSH_")
    assert details["banner"].startswith("SSH-2.0-OpenSSH_")
    logged = await _wait_for_line(process, b"Connection closed by", stream="stderr")
    assert b"kex_exchange_identification" not in logged
    assert logged.rstrip().endswith(b"[preauth]")


@pytest.fixture
async def smtp_server() -> AsyncIterator[str]:
    """aiosmtpd, a real SMTP server, on port 0."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Sink(), hostname="mail.hotline.invalid"), "127.0.0.1", 0
    )
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_smtp_greeting(ctx: ProbeContext, smtp_server: str) -> None:
    """An SMTP server's 220 greeting is up and reported."""
    details = up(await run(ctx, "smtp", smtp_server))
    assert details["greeting"].startswith("220 mail.hotline.invalid")


async def _wait_for_line(
    process: asyncio.subprocess.Process, text: bytes, *, stream: str = "stdout"
) -> bytes:
    """Wait (bounded) for a server's log line containing ``text`` rather than polling
    its port; returns what it logged up to that line."""
    pipe = process.stdout if stream == "stdout" else process.stderr
    assert pipe is not None
    seen: list[bytes] = []
    async with asyncio.timeout(10):
        while line := await pipe.readline():
            seen.append(line)
            if text in line:
                return b"".join(seen)
    pytest.fail(f"server exited before {text!r}: {b''.join(seen)[-500:]!r}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await process.wait()
            return
    process.kill()
    await process.wait()


# --- answers that are alive but refuse, or say they cannot serve ------------------------

Step = bytes | None | ssl.SSLContext
"""A scripted peer's move: bytes to send, None to read what the client sent, a context
to start TLS as the server."""


@contextlib.asynccontextmanager
async def scripted_peer(*steps: Step) -> AsyncIterator[str]:
    """A loopback server that plays ``steps`` to each client, then half-closes.

    It reads whatever the client sends until the client hangs up, so its close is a FIN,
    never an RST: the probe sees exactly the bytes scripted here.
    """
    handlers: set[asyncio.Task[None]] = set()

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for step in steps:
                if step is None:
                    await reader.read(MAX_READ)
                elif isinstance(step, ssl.SSLContext):
                    await writer.start_tls(step)
                else:
                    writer.write(step)
                    await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            while await reader.read(MAX_READ):
                pass
        except (ConnectionError, ssl.SSLError):
            pass  # the probe hung up first: that is its business
        finally:
            writer.transport.abort()

    def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(play(reader, writer))
        handlers.add(task)
        task.add_done_callback(handlers.discard)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def mysql_packet(payload: bytes, sequence: int = 0) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([sequence]) + payload


def mysql_error(code: int, message: bytes) -> bytes:
    return mysql_packet(b"\xff" + code.to_bytes(2, "little") + message)


def pg_message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def pg_error(sqlstate: bytes, message: bytes) -> bytes:
    return pg_message(b"E", b"SFATAL\x00C" + sqlstate + b"\x00M" + message + b"\x00\x00")


async def test_mysql_host_not_allowed_is_alive(ctx: ProbeContext) -> None:
    """MySQL's "Host is not allowed to connect" (1130) is an answer: up, with the error."""
    refusal = mysql_error(1130, b"Host '127.0.0.2' is not allowed to connect to this server")
    async with scripted_peer(refusal) as address:
        details = up(await run(ctx, "mysql", address))
    assert details["error_code"] == 1130
    assert "is not allowed to connect" in details["error"]


async def test_mysql_host_blocked_warns(ctx: ProbeContext) -> None:
    """A host blocked for connection errors (1129) is alive, with a warning that says why
    (aborted greetings such as this probe's count towards it) and what to do."""
    refusal = mysql_error(1129, b"#HY000Host 'x' is blocked because of many connection errors")
    async with scripted_peer(refusal) as address:
        result = await run(ctx, "mysql", address)
    assert up(result)["error"].startswith("Host 'x' is blocked")
    assert "max_connect_errors" in result.nodes[0].warnings[0]


async def test_mysql_too_many_connections_is_unavailable(ctx: ProbeContext) -> None:
    """Error 1040 means the applications cannot connect either: down, unavailable."""
    async with scripted_peer(mysql_error(1040, b"Too many connections")) as address:
        error_type, message = down(await run(ctx, "mysql", address))
    assert error_type is ErrorType.UNAVAILABLE
    assert "too many connections" in message


@pytest.mark.parametrize(
    ("sqlstate", "words"),
    [
        (b"57P03", "the database system is starting up"),
        (b"53300", "sorry, too many clients already"),
    ],
)
async def test_postgres_cannot_accept_is_unavailable(
    ctx: ProbeContext, sqlstate: bytes, words: str
) -> None:
    """Starting up / too many clients answer the startup with an error: down, unavailable."""
    async with scripted_peer(None, b"N", None, pg_error(sqlstate, words.encode())) as address:
        error_type, message = down(await run(ctx, "postgres", address))
    assert error_type is ErrorType.UNAVAILABLE
    assert sqlstate.decode() in message and words in message


async def test_postgres_over_tls_reports_the_auth_method(ctx: ProbeContext, tmp_path: Path) -> None:
    """A server that accepts SSL is spoken to over TLS (unverified, as sslmode=prefer);
    its SCRAM request is reported and answered by closing, never with a password."""
    certs = CertAuthority(directory=tmp_path)
    scram = pg_message(b"R", struct.pack("!i", 10) + b"SCRAM-SHA-256\x00\x00")
    steps = (None, b"S", certs.server_context(), None, scram)
    async with scripted_peer(*steps) as address:
        result = await run(ctx, "postgres", address)
    details = up(result)
    assert details["tls_offered"] is True
    assert details["auth_method"] == "sasl"
    assert details["sasl_mechanisms"] == ["SCRAM-SHA-256"]
    assert "tls" in only_attempt(result).phases


async def test_postgres_plaintext_after_yes_to_ssl_is_refused(ctx: ProbeContext) -> None:
    """Bytes after the "S" would be taken as if they came over TLS (CVE-2021-23222):
    refused as protocol, before any handshake."""
    async with scripted_peer(None, b"SR\x00\x00\x00\x08\x00\x00\x00\x00") as address:
        error_type, message = down(await run(ctx, "postgres", address))
    assert (error_type, message) == (
        ErrorType.PROTOCOL,
        "postgres: unencrypted bytes arrived before TLS started",
    )


async def test_postgres_tls_block_verifies(ctx: ProbeContext, tmp_path: Path) -> None:
    """With a `tls:` block the certificate is verified: a CA that did not sign it fails."""
    certs = CertAuthority(directory=tmp_path / "server")
    stranger = CertAuthority(directory=tmp_path / "other")
    steps = (None, b"S", certs.server_context(), None, pg_message(b"R", struct.pack("!i", 5)))
    async with scripted_peer(*steps) as address:
        result = await run(ctx, "postgres", address, tls=f"{{ca_file: {stranger.ca_file}}}")
    error_type, message = down(result)
    assert error_type is ErrorType.TLS
    assert "certificate" in message


async def test_postgres_trust_reads_the_version_and_terminates(ctx: ProbeContext) -> None:
    """Under trust the session opens: the server version is reported, then Terminate."""
    opened = b"".join(
        (
            pg_message(b"R", struct.pack("!i", 0)),
            pg_message(b"S", b"server_version\x0015.8 (Debian 15.8-0+deb12u1)\x00"),
            pg_message(b"K", struct.pack("!ii", 1, 2)),
            pg_message(b"Z", b"I"),
        )
    )
    async with scripted_peer(None, b"N", None, opened) as address:
        details = up(await run(ctx, "postgres", address))
    assert details["auth_method"] == "trust"
    assert details["server_version"] == "15.8 (Debian 15.8-0+deb12u1)"


async def test_redis_loading_is_unavailable(ctx: ProbeContext) -> None:
    """A Redis still loading its dataset refuses commands: down, unavailable."""
    loading = b"-LOADING Redis is loading the dataset in memory\r\n"
    async with scripted_peer(None, loading) as address:
        error_type, message = down(await run(ctx, "redis", address))
    assert error_type is ErrorType.UNAVAILABLE
    assert "LOADING" in message


async def test_smtp_421_is_unavailable(ctx: ProbeContext) -> None:
    """A 421 greeting closes the door for everyone: down, unavailable."""
    busy = b"421 mail.hotline.invalid Service not available, too busy\r\n"
    async with scripted_peer(busy) as address:
        error_type, message = down(await run(ctx, "smtp", address))
    assert error_type is ErrorType.UNAVAILABLE
    assert "too busy" in message


async def test_smtp_multiline_greeting(ctx: ProbeContext) -> None:
    """A multi-line 220 greeting is read to its last line; the first is reported."""
    greeting = b"220-mail.hotline.invalid ESMTP\r\n220-no UCE\r\n220 ready\r\n"
    async with scripted_peer(greeting) as address:
        details = up(await run(ctx, "smtp", address))
    assert details["greeting"] == "220 mail.hotline.invalid ESMTP"


@pytest.mark.parametrize(
    ("greeting", "shown"),
    [(b"220\r\n", "220"), (b"220-\r\n220\r\n", "220"), (b"220 \r\n", "220")],
)
async def test_smtp_greeting_without_text(ctx: ProbeContext, greeting: bytes, shown: str) -> None:
    """RFC 5321 makes the text after the code optional: a bare "220" is a greeting."""
    async with scripted_peer(greeting) as address:
        details = up(await run(ctx, "smtp", address))
    assert details["greeting"] == shown


@contextlib.asynccontextmanager
async def postgres_tls_then_garbage(server: ssl.SSLContext) -> AsyncIterator[str]:
    """Says yes to SSL, completes the handshake, then sends a record that cannot be
    decrypted (a box on the path corrupting traffic, a broken TLS offloader)."""

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(8)  # SSLRequest
        writer.write(b"S")
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = server.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                incoming.write(await reader.read(MAX_READ))
        writer.write(outgoing.read())
        # In place of an answer to the startup message: application data with a bad MAC.
        writer.write(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        await writer.drain()
        await reader.read(MAX_READ)
        writer.transport.abort()

    listening = await asyncio.start_server(play, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    finally:
        listening.close()
        await listening.wait_closed()


async def test_postgres_tls_error_after_the_handshake_is_tls(
    ctx: ProbeContext, tmp_path: Path
) -> None:
    """An SSL error on the upgraded connection is a tls failure, not a probe crash."""
    certs = CertAuthority(directory=tmp_path)
    async with postgres_tls_then_garbage(certs.server_context()) as address:
        error_type, message = down(await run(ctx, "postgres", address))
    assert error_type is ErrorType.TLS
    assert message.startswith("TLS failed during the exchange: ")


@pytest.mark.parametrize("protocol", [p for p in get_args(TcpProtocol) if p != "postgres"])
def test_tls_block_is_refused_where_no_tls_is_spoken(protocol: str) -> None:
    """Only postgres (and a dialogue with starttls) upgrade to TLS; elsewhere a tls: block
    would verify nothing."""
    from config.load import ConfigError

    with pytest.raises(ConfigError, match=f"protocol: {protocol} makes no TLS connection"):
        tcp_check(protocol, "db.invalid:1", tls="{verify: false}")
    with pytest.raises(ConfigError, match="a tcp check without either makes no TLS connection"):
        parse_config(
            "checks:\n  - {name: c, kind: tcp, tls: {verify: false}, "
            "nodes: [{name: n, address: 'db.invalid:1'}]}\n"
        )
    assert tcp_check("postgres", "db.invalid:1", tls="{verify: false}").tls is not None


async def test_presets_name_the_same_facts_the_same(ctx: ProbeContext) -> None:
    """One name per fact in every preset that reports it (mysql, postgres, amqp):
    tls_offered for a server that accepts TLS, server_version for its version."""
    mysql_greeting = mysql_packet(
        b"\x0a8.0.36\x00" + b"\x01\x00\x00\x00" + b"12345678\x00" + b"\x00\x08"
    )
    async with scripted_peer(mysql_greeting) as address:
        mysql = up(await run(ctx, "mysql", address))
    async with scripted_peer(None, b"N", None, pg_message(b"R", struct.pack("!i", 5))) as address:
        postgres = up(await run(ctx, "postgres", address))
    properties = b"".join(
        bytes([len(k)]) + k + b"S" + len(v).to_bytes(4, "big") + v
        for k, v in ((b"product", b"RabbitMQ"), (b"version", b"3.12.1"))
    )
    start = (
        (10).to_bytes(2, "big")
        + (10).to_bytes(2, "big")
        + b"\x00\x09"
        + len(properties).to_bytes(4, "big")
        + properties
    )
    frame = b"\x01\x00\x00" + len(start).to_bytes(4, "big") + start + b"\xce"
    async with scripted_peer(None, frame) as address:
        amqp = up(await run(ctx, "amqp", address))
    assert (mysql["tls_offered"], postgres["tls_offered"]) == (True, False)
    assert (mysql["server_version"], amqp["server_version"]) == ("8.0.36", "3.12.1")
    assert not {"ssl", "version"} & (set(mysql) | set(postgres) | set(amqp))


async def test_amqp_other_version_is_alive_with_a_warning(ctx: ProbeContext) -> None:
    """A broker that answers with its own protocol header (AMQP 1.0) is up, with a warning."""
    async with scripted_peer(None, b"AMQP\x00\x01\x00\x00") as address:
        result = await run(ctx, "amqp", address)
    assert up(result)["server_protocol"] == "AMQP 1.0.0"
    assert "does not speak 0-9-1" in result.nodes[0].warnings[0]


async def test_ssh_lines_before_the_identification_are_skipped(ctx: ProbeContext) -> None:
    """RFC 4253 lets a server send other lines (a legal notice) before its identification."""
    notice = b"Authorised use only.\r\nSSH-2.0-OpenSSH_8.0 FreeBSD-20200214\r\n"
    async with scripted_peer(notice) as address:
        details = up(await run(ctx, "ssh", address))
    assert (details["software_version"], details["comments"]) == (
        "OpenSSH_8.0",
        "FreeBSD-20200214",
    )


async def test_simulator_greetings_pass_the_presets(ctx: ProbeContext) -> None:
    """The demo's simulated nodes answer the presets example.yaml uses convincingly."""
    async with Simulator() as sim:
        for protocol, greeting in GREETINGS.items():
            peer = await sim.add_tcp(protocol, "n", banner=greeting)
            details = up(await run(ctx, protocol, peer.address))
            assert details["protocol"] == protocol
    assert details["reply"] == "PONG"  # redis, the last: the node answers PING


# --- peers that do not speak the protocol ---------------------------------------------

_GREETING = GREETINGS["mysql"]
_AMQP_START = bytes.fromhex("0100000000001e000a000a0009") + b"\x00\x00\x00\x00"  # no end

# For each protocol: what the peer reads first (client-first protocols), then the
# bytes of half a handshake, of garbage, and of a huge length field.
FAULTS: dict[str, dict[str, Sequence[Step]]] = {
    "mysql": {
        "half": [_GREETING[: len(_GREETING) // 2]],
        "garbage": [b"\x00\x01garbage\r\n\r\n"],
        "huge": [b"\xff\xff\xff\x00" + b"\x0a" * 100],
    },
    "postgres": {
        "half": [None, b"N", None, b"R\x00\x00"],
        "garbage": [None, b"\x00\x01garbage\r\n\r\n"],
        "huge": [None, b"N", None, b"R\x7f\xff\xff\xff"],
    },
    "redis": {
        "half": [None, b"+PON"],
        "garbage": [None, b"\x00\x01garbage\r\n\r\n"],
        "huge": [None, b"$" + b"9" * 20_000],
    },
    "amqp": {
        "half": [None, _AMQP_START],
        "garbage": [None, b"\x00\x01garbage\r\n\r\n"],
        "huge": [None, b"\x01\x00\x00\xff\xff\xff\xf0"],
    },
    "ssh": {
        "half": [b"SSH-2.0-Open"],
        "garbage": [b"\x00\x01garbage\r\n\r\n"],
        "huge": [b"SSH-2.0-" + b"A" * 20_000],
    },
    "smtp": {
        "half": [b"220-mail.hotline.invalid ESMTP\r\n"],
        "garbage": [b"\x00\x01garbage\r\n\r\n"],
        "huge": [b"220 " + b"A" * 20_000],
    },
}
CLIENT_FIRST = {"postgres", "redis", "amqp"}
FAULT_WORDS = {
    "half": "closed the connection after",
    "huge": "max_read_bytes",
}


@pytest.mark.parametrize("protocol", sorted(FAULTS))
async def test_close_before_the_greeting(ctx: ProbeContext, protocol: str) -> None:
    """A peer that closes without a word is down with protocol, not a crash or a hang."""
    steps: list[Step] = [None] if protocol in CLIENT_FIRST else []
    async with scripted_peer(*steps) as address:
        error_type, message = down(await run(ctx, protocol, address))
    assert error_type is ErrorType.PROTOCOL
    assert message == f"{protocol}: peer closed the connection without a reply"


@pytest.mark.parametrize("fault", ["half", "garbage", "huge"])
@pytest.mark.parametrize("protocol", sorted(FAULTS))
async def test_broken_peer_is_a_protocol_error(
    ctx: ProbeContext, protocol: str, fault: str
) -> None:
    """Half a handshake, garbage or a huge length field: down with protocol, promptly,
    with a message that names the preset (and for the cases with one, the cause)."""
    started = time.monotonic()
    async with scripted_peer(*FAULTS[protocol][fault]) as address:
        error_type, message = down(await run(ctx, protocol, address, timeout="3s"))
    assert error_type is ErrorType.PROTOCOL, message
    assert message.startswith(f"{protocol}: ")
    assert FAULT_WORDS.get(fault, "") in message
    assert time.monotonic() - started < 2


async def test_negative_postgres_length_is_named(ctx: ProbeContext) -> None:
    """A length field below its own size is refused by value, not read as a huge count."""
    async with scripted_peer(None, b"N", None, b"R\xff\xff\xff\xff") as address:
        error_type, message = down(await run(ctx, "postgres", address))
    assert (error_type, message) == (
        ErrorType.PROTOCOL,
        "postgres: message b'R' declares a length of -1",
    )


async def test_silent_server_is_a_timeout_in_processing(ctx: ProbeContext) -> None:
    """A server that accepts and never greets ends at the timeout, placed while waiting
    for the first byte of the answer."""
    async with scripted_peer(None, None) as address:
        error_type, message = down(await run(ctx, "mysql", address, timeout="200ms"))
    assert error_type is ErrorType.TIMEOUT
    assert "waiting for the first byte" in message
