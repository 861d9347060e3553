"""`sign:` on http checks: the documented example holds, a server that verifies with its
own computation accepts every attempt, and the secret shows up in no output.

The verifying server is an aiohttp app on port 0 that recomputes the signature with the
hmac and hashlib modules and its own canonical query, never with probes/signing.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
import yaml
from aiohttp import web

from config.kinds.http import HttpCheck
from config.load import parse_config
from config.signing import SignOptions
from core.clock import FakeClock
from core.errors import ErrorType
from core.result import CheckResult, Status
from engine.runner import run_check
from probes.base import ProbeContext
from probes.signing import canonical_query, signature_headers
from tests.cli_run import probe
from tests.endpoint import serving

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "signing.md").read_text(encoding="utf-8")
SECRET = "canary-sign-secret-5e1a"


def fenced(language: str, containing: str = "") -> str:
    """The first ```language block of docs/signing.md that contains ``containing``."""
    for block in re.findall(rf"```{language}\n(.*?)```", DOC, re.DOTALL):
        if containing in block:
            return str(block)
    raise AssertionError(f"docs/signing.md has no {language} block with {containing!r}")


def independent_query(raw: str) -> str:
    pairs = parse_qsl(raw, keep_blank_values=True)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def at(timestamp_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=timestamp_ms)


def sign_options(block: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> SignOptions:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    document = yaml.safe_load(block)
    check = parse_config(
        "checks:\n  - "
        + json.dumps(
            {
                "name": "c",
                "kind": "http",
                "nodes": [{"name": "n", "url": "https://t.invalid/"}],
                "sign": document["sign"],
            }
        )
        + "\n"
    ).checks[0]
    assert isinstance(check, HttpCheck) and check.sign is not None
    return check.sign


# --- the documentation's worked example ---------------------------------------------


def test_worked_example_recomputes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The doc's HMAC example: its string to sign and its signature are what an
    independent computation and the probe's own code both get."""
    secret = re.search(r"issued the secret `([^`]+)`", DOC)
    assert secret is not None
    request = fenced("http", "X-Signature").strip().splitlines()
    method, target, _ = request[0].split(" ")
    headers = dict(line.split(": ", 1) for line in request[1:])
    path, _, query = target.partition("?")
    text = "\n".join(
        [method, path, independent_query(query), "", headers["X-Timestamp"], headers["X-Nonce"]]
    )
    assert text == fenced("text", headers["X-Nonce"]).rstrip("\n")
    expected = hmac.new(secret.group(1).encode(), text.encode(), hashlib.sha256).hexdigest()
    assert headers["X-Signature"] == expected

    options = sign_options(
        fenced("yaml", "city="),
        monkeypatch,
        MINHU_SIGN_SECRET=secret.group(1),
    )
    computed = signature_headers(
        options,
        method=method,
        url=f"https://{headers['Host']}{target}",
        body=None,
        now=at(int(headers["X-Timestamp"])),
        nonce=headers["X-Nonce"],
    )
    assert computed == {name: headers[name] for name in computed}
    assert set(computed) == {"X-Signature", "X-Timestamp", "X-Nonce", "X-App-Key"}


def test_worked_legacy_md5_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """The doc's MD5 example: MD5(app_key + seconds + nonce + secret), capital hex."""
    secret = re.search(r"issued the secret `([^`]+)`", DOC)
    wanted = re.search(r"sends `sign: ([0-9A-F]{32})` with\s+`timestamp: (\d+)`", DOC)
    assert secret is not None and wanted is not None
    options = sign_options(
        fenced("yaml", "algorithm: md5"), monkeypatch, LEGACY_SIGN_SECRET=secret.group(1)
    )
    nonce = fenced("http", "X-Nonce").split("X-Nonce: ")[1].split()[0]
    seconds = int(wanted.group(2))
    computed = signature_headers(
        options,
        method="GET",
        url="https://t.invalid/",
        body=None,
        now=at(seconds * 1000),
        nonce=nonce,
    )
    plain = f"hotline-12345{seconds}{nonce}{secret.group(1)}".encode()
    independent = hashlib.md5(plain, usedforsecurity=False).hexdigest().upper()
    assert computed == {
        "sign": wanted.group(1),
        "timestamp": str(seconds),
        "nonce": nonce,
        "appKey": "hotline-12345",
    }
    assert independent == wanted.group(1)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        ("q=a+b&r=a%20b&t=~x_y.z-", "q=a%20b&r=a%20b&t=~x_y.z-"),
        ("city=%E6%B5%B7%E5%AE%81&flag&e=", "city=%E6%B5%B7%E5%AE%81&e=&flag="),
        ("k=a%2Fb%3D&&", "k=a%2Fb%3D"),
    ],
)
def test_canonical_query(raw: str, canonical: str) -> None:
    """Decoded, re-encoded (RFC 3986 unreserved kept), sorted; the same as a server's."""
    assert canonical_query(raw) == canonical
    assert independent_query(raw) == canonical


# --- against a server that verifies ---------------------------------------------------


@dataclass
class Verifier:
    """Accepts a request only when its signature is right; remembers what it saw."""

    secret: str
    url: str = ""
    seen: list[dict[str, str]] = field(default_factory=list)
    fail_first: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        h = request.headers
        text = "\n".join(
            [
                request.method,
                request.url.raw_path,
                independent_query(request.url.raw_query_string),
                body,
                h.get("X-Timestamp", ""),
                h.get("X-Nonce", ""),
            ]
        )
        good = hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        self.seen.append(dict(h))
        if not hmac.compare_digest(h.get("X-Signature", ""), good):
            return web.Response(status=401, text="bad signature\n")
        if len(self.seen) <= self.fail_first:
            return web.Response(status=503, text="try again\n")
        return web.json_response({"status": "ok"})


@contextlib.asynccontextmanager
async def verifying_server(secret: str) -> AsyncIterator[Verifier]:
    """An aiohttp app on 127.0.0.1, port 0, that checks every request's signature."""
    verifier = Verifier(secret=secret)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", verifier.handle)
    async with serving(app) as port:
        verifier.url = f"http://127.0.0.1:{port}"
        yield verifier


@pytest.fixture
async def verifier() -> AsyncIterator[Verifier]:
    async with verifying_server(SECRET) as server:
        yield server


def signed_check(url: str, secret: str, **opts: Any) -> HttpCheck:
    opts.setdefault("retries", "{attempts: 1}")
    lines = [
        "  - name: c",
        "    kind: http",
        f'    nodes: [{{name: n, url: "{url}"}}]',
        f"    sign: {{secret: {secret}, app_key: hotline-12345}}",
        *(f"    {key}: {value}" for key, value in opts.items()),
    ]
    check = parse_config("checks:\n" + "\n".join(lines) + "\n").checks[0]
    assert isinstance(check, HttpCheck)
    return check


def nonces() -> Callable[[], str]:
    numbers: Iterator[int] = iter(range(1, 1000))
    return lambda: f"nonce-{next(numbers)}"


async def run_with(check: HttpCheck, clock: FakeClock) -> CheckResult:
    async with ProbeContext(clock=clock, nonce=nonces()) as ctx:
        return await run_check(check, ctx)


async def test_signed_post_passes_an_independent_verifier(
    verifier: Verifier, fake_clock: FakeClock
) -> None:
    """A POST with a body and an unsorted, encoded query is accepted; the headers carry
    the fake clock's time in ms and the injected nonce."""
    url = verifier.url + "/open/api/%E6%8E%A5%E5%8F%A3?z=1&a=%E6%B5%B7+%E5%AE%81&a=0"
    check = signed_check(url, SECRET, method="POST", body="'{\"ping\": 1}'")
    result = await run_with(check, fake_clock)
    assert result.status is Status.UP, result.nodes[0].error
    (seen,) = verifier.seen
    assert seen["X-Timestamp"] == str(int(fake_clock.now().timestamp() * 1000))
    assert (seen["X-Nonce"], seen["X-App-Key"]) == ("nonce-1", "hotline-12345")


async def test_every_attempt_is_signed_afresh(verifier: Verifier, fake_clock: FakeClock) -> None:
    """A retry carries a new nonce and a later timestamp, and verifies again."""
    verifier.fail_first = 1
    check = signed_check(verifier.url + "/ping", SECRET, retries="{attempts: 2, backoff: 1s}")
    result = await run_with(check, fake_clock)
    assert result.status is Status.UP
    first, second = verifier.seen
    assert (first["X-Nonce"], second["X-Nonce"]) == ("nonce-1", "nonce-2")
    waited_ms = int(second["X-Timestamp"]) - int(first["X-Timestamp"])
    assert waited_ms == int(fake_clock.sleeps[0] * 1000) > 0  # ms, truncated


async def test_wrong_secret_is_refused(verifier: Verifier, fake_clock: FakeClock) -> None:
    """A signature with the wrong secret gets the server's 401: http_status, down."""
    result = await run_with(signed_check(verifier.url + "/", "not-the-secret"), fake_clock)
    error = result.nodes[0].error
    assert error is not None
    assert (error.type, error.message) == (ErrorType.HTTP_STATUS, "status 401, expected 2xx")


def test_default_nonces_are_random() -> None:
    """Without a test's source, nonces are 128 random bits in hex, never repeated."""
    ctx = ProbeContext()
    drawn = {ctx.nonce() for _ in range(100)}
    assert len(drawn) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", n) for n in drawn)


@pytest.mark.e2e
async def test_secret_never_in_output(verifier: Verifier, tmp_path: Path) -> None:
    """`probe --all` with events: the secret of a passing, a refused and an MD5 check
    (where it is inside the signed string) appears nowhere."""
    config = tmp_path / "config.yaml"
    config.write_text(f"""
checks:
  - name: good
    kind: http
    retries: {{attempts: 1}}
    nodes: [{{name: n, url: "{verifier.url}/ping?token=x"}}]
    sign: {{secret: "${{env:CANARY_SIGN}}"}}
  - name: refused
    kind: http
    retries: {{attempts: 1}}
    nodes: [{{name: n, url: "{verifier.url}/"}}]
    sign: {{algorithm: md5, secret: canary-md5-secret-0c, string_to_sign: "{{nonce}}{{secret}}"}}
""")
    proc = await probe(
        "--all", "--json", "--events", "on", "-c", str(config), env={"CANARY_SIGN": SECRET}
    )
    statuses = {c["name"]: c["status"] for c in json.loads(proc.stdout)["checks"]}
    assert statuses == {"good": "up", "refused": "down"}, proc.stderr
    output = proc.stdout + proc.stderr
    assert "status 401" in output
    assert SECRET not in output and "canary-md5-secret-0c" not in output
