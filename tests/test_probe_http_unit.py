"""HTTP probe edge cases with aioresponses: judging answers and naming client errors.

Real-socket behaviour (refused, hanging, resets, certificates) is tested against the
simulators in test_probes.py; here each rule of ``expect:`` and each aiohttp exception
class is pinned down in isolation.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from config.kinds.http import HttpCheck
from config.load import parse_config
from core.errors import ErrorType, ProbeFailure
from probes import http
from probes.base import ProbeContext
from probes.http.common import user_agent

URL = "https://api.invalid/health"  # https: aioresponses stands in for aiohttp, which carries TLS


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


def check(expect: str = "{}", **opts: Any) -> HttpCheck:
    options = "".join(f", {k}: {v}" for k, v in opts.items())
    cfg = parse_config(
        f'checks:\n  - {{name: c, kind: http, nodes: [{{name: n, url: "{URL}"}}], '
        f"expect: {expect}{options}}}\n"
    )
    result = cfg.checks[0]
    assert isinstance(result, HttpCheck)
    return result


async def run(c: HttpCheck, ctx: ProbeContext) -> Any:
    return await http.probe(c, c.nodes[0], ctx)


async def failure(c: HttpCheck, ctx: ProbeContext) -> ProbeFailure:
    with pytest.raises(ProbeFailure) as raised:
        await run(c, ctx)
    return raised.value


async def test_status_default_is_any_2xx(mocked: aioresponses, ctx: ProbeContext) -> None:
    """Without `status:`, 204 passes and 301 (not followed) fails as http_status."""
    mocked.get(URL, status=204)
    observation = await run(check(), ctx)
    assert observation.details["status_code"] == 204
    mocked.get(URL, status=301, headers={"Location": "/elsewhere"})
    error = (await failure(check(), ctx)).error
    assert error.type is ErrorType.HTTP_STATUS
    assert error.message == "status 301, expected 2xx"


async def test_explicit_status_list(mocked: aioresponses, ctx: ProbeContext) -> None:
    """`status: [200, 401]` accepts 401 (an auth wall that answers is alive) and refuses 503."""
    mocked.get(URL, status=401)
    await run(check("{status: [200, 401]}"), ctx)
    mocked.get(URL, status=503)
    error = (await failure(check("{status: [200, 401]}"), ctx)).error
    assert (error.type, error.message) == (ErrorType.HTTP_STATUS, "status 503, expected 200, 401")


async def test_body_contains_and_regex(mocked: aioresponses, ctx: ProbeContext) -> None:
    """Substring and regex conditions pass on a match and fail as assertion otherwise."""
    mocked.get(URL, body="<ok>案件接口正常</ok>", repeat=True)
    await run(check('{body_contains: "案件接口正常", body_regex: "<ok>.*</ok>"}'), ctx)
    error = (await failure(check('{body_contains: "all good"}'), ctx)).error
    assert error.type is ErrorType.ASSERTION
    assert "all good" in error.message
    error = (await failure(check('{body_regex: "^\\\\d+$"}'), ctx)).error
    assert error.type is ErrorType.ASSERTION


async def test_json_fields(mocked: aioresponses, ctx: ProbeContext) -> None:
    """Dotted paths reach into objects and arrays; missing and unequal fields are named."""
    body = {"status": "ok", "data": {"queues": [{"depth": 3}], "degraded": False}}
    mocked.get(URL, payload=body, repeat=True)
    await run(check('{json: {status: ok, "data.queues.0.depth": 3, data.degraded: false}}'), ctx)
    error = (await failure(check('{json: {"data.queues.1.depth": 3}}'), ctx)).error
    assert (error.type, error.message) == (
        ErrorType.ASSERTION,
        "JSON field data.queues.1.depth is missing",
    )
    error = (await failure(check("{json: {status: down}}"), ctx)).error
    assert error.message == 'JSON field status is "ok", expected "down"'


async def test_json_condition_on_non_json_body(mocked: aioresponses, ctx: ProbeContext) -> None:
    """An HTML error page where JSON was expected is an assertion failure, not a crash."""
    mocked.get(URL, body="<html>502 Bad Gateway</html>")
    error = (await failure(check("{json: {status: ok}}"), ctx)).error
    assert (error.type, error.message) == (ErrorType.ASSERTION, "body is not JSON")


async def test_announced_body_over_the_cap(mocked: aioresponses, ctx: ProbeContext) -> None:
    """A body larger than max_body_bytes is refused without being read."""
    mocked.get(URL, body=b"x" * 2048)
    error = (await failure(check(max_body_bytes=1024), ctx)).error
    assert error.type is ErrorType.BODY_TOO_LARGE
    assert "1024" in error.message


async def test_post_sends_body_and_headers(mocked: aioresponses, ctx: ProbeContext) -> None:
    """A SOAP call sends its envelope and headers (header values come from secrets)."""
    mocked.post(URL, body="<ok/>")
    c = check(method="POST", body='"<soap/>"', headers="{SOAPAction: urn:hb, X-Token: canary-77}")
    await run(c, ctx)
    (_, url), calls = next(iter(mocked.requests.items()))
    assert str(url) == URL
    assert calls[0].kwargs["data"] == b"<soap/>"
    assert calls[0].kwargs["headers"] == {
        "SOAPAction": "urn:hb",
        "X-Token": "canary-77",
        "Accept-Encoding": "identity",
        "User-Agent": user_agent(),
        "Accept": "*/*",
    }


def _connector_error(code: int) -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("api.invalid", 80, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, OSError(code, errno.errorcode[code]))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_connector_error(errno.ECONNREFUSED), ErrorType.CONNECTION_REFUSED),
        (_connector_error(errno.ECONNRESET), ErrorType.CONNECTION_RESET),
        (_connector_error(errno.EHOSTUNREACH), ErrorType.CONNECTION),
        (_connector_error(errno.ETIMEDOUT), ErrorType.TIMEOUT),
        (aiohttp.ServerDisconnectedError(), ErrorType.CONNECTION_RESET),
        (
            aiohttp.ClientPayloadError("Response payload is not completed"),
            ErrorType.CONNECTION_RESET,
        ),
        (aiohttp.ClientOSError(errno.ECONNRESET, "reset"), ErrorType.CONNECTION_RESET),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), ErrorType.TLS),
    ],
    ids=lambda v: getattr(v, "value", type(v).__name__),
)
async def test_client_errors_are_classified(
    mocked: aioresponses, ctx: ProbeContext, exc: Exception, kind: ErrorType
) -> None:
    """Each aiohttp failure maps to one stable error.type with a readable message."""
    mocked.get(URL, exception=exc)
    error = (await failure(check(), ctx)).error
    assert error.type is kind
    assert error.message


async def test_expired_certificate_error_reads_as_expired(
    mocked: aioresponses, ctx: ProbeContext
) -> None:
    """OpenSSL's 'certificate has expired' (code 10) becomes tls_expired, not plain tls."""
    cert_error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cert_error.verify_code = 10
    cert_error.verify_message = "certificate has expired"
    key = aiohttp.client_reqrep.ConnectionKey("api.invalid", 443, True, True, None, None, None)
    mocked.get(URL, exception=aiohttp.ClientConnectorCertificateError(key, cert_error))
    error = (await failure(check(), ctx)).error
    assert (error.type, error.message) == (ErrorType.TLS_EXPIRED, "certificate has expired")
