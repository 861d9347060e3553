"""``kind: tcp`` with ``dialogue:``: send/expect steps, captures, STARTTLS judged like kind: tls.

The SMTP peer is aiosmtpd on a loopback port 0, with certificates from a trustme CA
whose leaves expire when each test says; broken peers are scripted loopback servers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiosmtpd.smtp import SMTP, Envelope, Session

from config.kinds.tcp import TcpCheck
from config.load import parse_config
from core.errors import ErrorType
from core.result import Attempt, CheckResult, Status
from engine.runner import run_check
from probes.base import ProbeContext

MAIL_HOST = "mail.hotline.invalid"
ROOT = Path(__file__).resolve().parent.parent

# The SMTP STARTTLS recipe of the README, as JSON (which is YAML): the greeting's host
# name is captured and greeted back, TLS starts, and EHLO is said again over it.
STARTTLS: list[dict[str, Any]] = [
    {"expect": r"^220 (?P<host>\S+)"},
    {"send": r"EHLO probe-of-${capture:host}\r\n"},
    {"expect": r"^250 "},
    {"send": r"STARTTLS\r\n"},
    {"expect": r"^220 "},
    {"starttls": True},
    {"send": r"EHLO probe\r\n"},
    {"expect": r"^250 "},
]


def dialogue_check(address: str, steps: list[dict[str, Any]], **opts: Any) -> TcpCheck:
    check: dict[str, Any] = {
        "name": "mail",
        "kind": "tcp",
        "nodes": [{"name": "n", "address": address}],
        "retries": {"attempts": 1},
        "dialogue": steps,
        **opts,
    }
    parsed = parse_config(json.dumps({"checks": [check]})).checks[0]
    assert isinstance(parsed, TcpCheck)
    return parsed


def only_attempt(result: CheckResult) -> Attempt:
    (attempt,) = result.nodes[0].attempts
    return attempt


def failure(result: CheckResult) -> tuple[ErrorType, str]:
    error = only_attempt(result).error
    assert error is not None, "expected the node to fail"
    return error.type, error.message


class Recorder:
    """An aiosmtpd handler that keeps each EHLO's name, and whether TLS carried it."""

    def __init__(self) -> None:
        self.ehlo: list[tuple[str, bool]] = []

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.ehlo.append((hostname, session.ssl is not None))
        return responses


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.ECDSA)


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dialogue-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_tls(ca: trustme.CA, days_left: float) -> ssl.SSLContext:
    """A server context whose leaf (for 127.0.0.1) expires ``days_left`` days from now."""
    now = dt.datetime.now(dt.UTC)
    leaf = ca.issue_cert(
        "127.0.0.1",
        "localhost",
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=days_left),
        key_type=trustme.KeyType.ECDSA,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return context


@asynccontextmanager
async def smtp_server(
    tls: ssl.SSLContext | None = None, handler: object | None = None
) -> AsyncIterator[str]:
    """aiosmtpd on 127.0.0.1, port 0, offering STARTTLS when given a context."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler or Recorder(), hostname=MAIL_HOST, tls_context=tls),
        "127.0.0.1",
        0,
    )
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def scripted_peer(*turns: bytes | None) -> AsyncIterator[str]:
    """A peer that plays ``turns`` in order (bytes: send them; None: read one line),
    then closes the connection."""
    handlers: set[asyncio.Task[None]] = set()

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            for turn in turns:
                if turn is None:
                    await reader.readline()
                else:
                    writer.write(turn)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(play, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


# --- STARTTLS and the certificate ---------------------------------------------------


async def test_starttls_is_up_with_the_certificate(
    ctx: ProbeContext, ca: trustme.CA, ca_file: Path
) -> None:
    """STARTTLS on a real SMTP server: up, with TLS version, cipher and notAfter, and
    the second EHLO really went over TLS."""
    recorder = Recorder()
    async with smtp_server(server_tls(ca, 90), recorder) as address:
        check = dialogue_check(address, STARTTLS, tls={"ca_file": str(ca_file)})
        result = await run_check(check, ctx)
    attempt = only_attempt(result)
    assert attempt.error is None, attempt.error
    assert result.status is Status.UP and not result.warnings
    assert attempt.details["tls_version"].startswith("TLS")
    assert attempt.details["tls_cipher"]
    assert 89 < attempt.details["tls_days_left"] <= 90
    assert attempt.details["tls_not_after"].endswith("Z")
    assert attempt.details["reply"] == "250 HELP"
    assert "tls" in attempt.phases
    assert [secure for _, secure in recorder.ehlo] == [False, True]


@pytest.mark.parametrize(
    ("document", "section"),
    [("docs/kinds/tcp-protocols.md", "## SMTP STARTTLS"), ("README.md", "### `dialogue:`")],
)
async def test_the_documented_recipe_checks_starttls(
    ctx: ProbeContext, ca: trustme.CA, ca_file: Path, document: str, section: str
) -> None:
    """The SMTP STARTTLS example of the README and of docs/kinds/tcp-protocols.md, as
    written there, greets a real server with its own name, then again over TLS: up."""
    text = (ROOT / document).read_text()
    block = text.split(section)[1].split("```yaml\n")[1].split("```")[0]
    (documented,) = yaml.safe_load(block)
    recorder = Recorder()
    async with smtp_server(server_tls(ca, 90), recorder) as address:
        tls = {**documented["tls"], "ca_file": str(ca_file)}
        result = await run_check(dialogue_check(address, documented["dialogue"], tls=tls), ctx)
    assert only_attempt(result).error is None, only_attempt(result).error
    assert recorder.ehlo == [(MAIL_HOST, False), ("hotline-probe", True)]


async def test_certificate_inside_crit_days_is_down(
    ctx: ProbeContext, ca: trustme.CA, ca_file: Path
) -> None:
    """A STARTTLS certificate expiring within crit_days: down with cert_expiring, and
    its notAfter still reported."""
    async with smtp_server(server_tls(ca, 3)) as address:
        tls = {"ca_file": str(ca_file), "warn_days": 30, "crit_days": 7}
        result = await run_check(dialogue_check(address, STARTTLS, tls=tls), ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.CERT_EXPIRING
    assert "critical below 7" in message
    assert "tls_not_after" in only_attempt(result).details


async def test_certificate_inside_warn_days_warns(
    ctx: ProbeContext, ca: trustme.CA, ca_file: Path
) -> None:
    """A STARTTLS certificate expiring within warn_days (but not crit_days): up, with a
    warning."""
    async with smtp_server(server_tls(ca, 20)) as address:
        tls = {"ca_file": str(ca_file), "warn_days": 30, "crit_days": 7}
        result = await run_check(dialogue_check(address, STARTTLS, tls=tls), ctx)
    assert only_attempt(result).error is None
    assert result.status is Status.UP
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("certificate expires in 20 days")


async def test_certificate_of_another_ca_is_tls(
    ctx: ProbeContext, ca: trustme.CA, tmp_path: Path
) -> None:
    """A STARTTLS certificate the check's ca_file did not sign: down with tls."""
    stranger = tmp_path / "other-ca.pem"
    trustme.CA(key_type=trustme.KeyType.ECDSA).cert_pem.write_to_path(str(stranger))
    async with smtp_server(server_tls(ca, 90)) as address:
        check = dialogue_check(address, STARTTLS, tls={"ca_file": str(stranger)})
        result = await run_check(check, ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.TLS
    assert message.startswith("certificate not trusted")


async def test_plaintext_before_tls_is_refused(ctx: ProbeContext, ca_file: Path) -> None:
    """Bytes the peer sent after its go-ahead are never taken as if TLS had carried
    them (the STARTTLS injection of CVE-2011-0411): protocol, naming the step."""
    async with scripted_peer(b"220 go ahead\r\n250 injected\r\n", None) as address:
        steps: list[dict[str, Any]] = [{"expect": "^220 "}, {"starttls": True}]
        result = await run_check(dialogue_check(address, steps), ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.PROTOCOL
    assert message == (
        "dialogue[1]: unencrypted bytes arrived before TLS started: '250 injected\\r\\n'"
    )


# --- captures -------------------------------------------------------------------------


async def test_capture_is_sent_in_a_later_step(ctx: ProbeContext) -> None:
    """A named group of an earlier expect fills ${capture:NAME} in a later send: the
    server is greeted with the name from its own greeting."""
    recorder = Recorder()
    steps = [*STARTTLS[:3], {"send": r"QUIT\r\n"}]
    async with smtp_server(handler=recorder) as address:
        result = await run_check(dialogue_check(address, steps), ctx)
    assert only_attempt(result).error is None
    assert recorder.ehlo == [(f"probe-of-{MAIL_HOST}", False)]
    assert only_attempt(result).details["captured"] == {"host": MAIL_HOST}


async def test_a_secret_that_reads_like_a_capture_is_sent_as_it_is(
    ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ${env:...} value is never searched for captures (nor its backslashes read as
    escapes), and the repr of the check shows the reference, not the value."""
    monkeypatch.setenv("EHLO_NAME", r"canary-${capture:host}\x41")
    recorder = Recorder()
    steps = [*STARTTLS[:1], {"send": r"EHLO ${env:EHLO_NAME}\r\n"}, {"expect": "^250 "}]
    async with smtp_server(handler=recorder) as address:
        check = dialogue_check(address, steps)
        result = await run_check(check, ctx)
    assert only_attempt(result).error is None
    assert recorder.ehlo == [(r"canary-${capture:host}\x41", False)]
    assert "canary" not in repr(check)
    assert check.model_dump()["dialogue"][1]["send"] == r"EHLO ${env:EHLO_NAME}\r\n"


# --- reading lines --------------------------------------------------------------------


async def test_multiline_reply_is_read_to_the_matching_line(ctx: ProbeContext) -> None:
    """An expect passes over lines until one matches: the 250- lines of an EHLO reply
    are skipped, and the group captures from the last line, not the first."""
    steps = [
        {"expect": "^220 "},
        {"send": r"EHLO probe\r\n"},
        {"expect": "^250-(?P<first>.*)$"},
        {"expect": "^250 (?P<last>.*)$"},
    ]
    async with smtp_server() as address:
        result = await run_check(dialogue_check(address, steps), ctx)
    attempt = only_attempt(result)
    assert attempt.error is None, attempt.error
    assert attempt.details["captured"] == {"first": MAIL_HOST, "last": "HELP"}


async def test_expect_that_never_matches_names_the_step(ctx: ProbeContext) -> None:
    """A reply that does not match before the peer closes: assertion naming the step,
    the pattern and what was read."""
    steps = [{"expect": "^220 "}, {"send": r"QUIT\r\n"}, {"expect": "^250 "}]
    async with smtp_server() as address:
        result = await run_check(dialogue_check(address, steps), ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.ASSERTION
    assert message.startswith(
        "dialogue[2]: no line matches /^250 / before the peer closed the connection: '221 "
    )


async def test_max_read_bytes_bounds_an_expect(ctx: ProbeContext) -> None:
    """An expect stops looking after max_read_bytes: assertion, with the limit named."""
    steps = [{"expect": "^220 "}, {"send": r"EHLO probe\r\n"}, {"expect": "^250 "}]
    async with smtp_server() as address:
        result = await run_check(dialogue_check(address, steps, max_read_bytes=48), ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.ASSERTION
    assert message.startswith(
        f"dialogue[2]: no line matches /^250 / in the first 48 bytes (max_read_bytes): "
        f"'250-{MAIL_HOST}\\r\\n"
    )


async def test_unterminated_last_line_matches_at_close(ctx: ProbeContext) -> None:
    """A last line without its line end is matched once the peer closes after it."""
    async with scripted_peer(b"HELLO\r\nREADY") as address:
        result = await run_check(dialogue_check(address, [{"expect": "^READY$"}]), ctx)
    assert only_attempt(result).error is None
    assert only_attempt(result).details["reply"] == "READY"


async def test_peer_closing_mid_dialogue_is_a_reset(ctx: ProbeContext) -> None:
    """A peer that hangs up between replies: connection_reset naming the step."""
    async with scripted_peer(b"220 ready\r\n", None) as address:
        steps = [{"expect": "^220 "}, {"send": r"EHLO probe\r\n"}, {"expect": "^250 "}]
        result = await run_check(dialogue_check(address, steps), ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.CONNECTION_RESET
    expected = f"connection closed by {address} at dialogue[2], before a line matching /^250 /"
    assert message == expected


async def test_timeout_names_the_step(ctx: ProbeContext) -> None:
    """A reply that never comes: the runner's timeout names the step it waited for."""
    steps = [{"expect": "^220 "}, {"send": r"NOOP\r\n"}, {"expect": "^999 "}]
    async with smtp_server() as address:
        result = await run_check(dialogue_check(address, steps, timeout="200ms"), ctx)
    error_type, message = failure(result)
    assert error_type is ErrorType.TIMEOUT
    assert message == "no answer within 200ms, waiting for dialogue[2] (a line matching /^999 /)"
