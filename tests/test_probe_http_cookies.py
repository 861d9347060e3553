"""Cookies across the redirects of one attempt (probes/http/aiohttp_client.py), and none
beyond it: a loopback aiohttp application whose login redirect sets a cookie that the
page it leads to requires, as a web login does."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from config.load import parse_config
from core.errors import ErrorType
from core.result import CheckResult, Status
from engine.runner import run_check
from probes.base import ProbeContext
from probes.http.aiohttp_client import session as http_session
from tests.endpoint import serving


class Login:
    """``/login`` sets ``session=<n>`` (n counting logins) and redirects to ``/app``,
    which answers 400 without the cookie, 503 the first ``busy`` times it has one,
    200 after. Every request's path and Cookie header are kept."""

    def __init__(self, busy: int = 0) -> None:
        self.busy = busy
        self.logins = 0
        self.seen: list[tuple[str, str | None]] = []
        self.app = web.Application()
        self.app.router.add_get("/login", self.login)
        self.app.router.add_get("/app", self.page)

    async def login(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers.get("Cookie")))
        self.logins += 1
        response = web.HTTPFound("/app")
        response.set_cookie("session", str(self.logins), httponly=True)
        raise response

    async def page(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers.get("Cookie")))
        if "session" not in request.cookies:
            return web.Response(status=400, text="no session")
        if self.busy:
            self.busy -= 1
            return web.Response(status=503, text="busy")
        return web.Response(text="welcome")


async def run(port: int, path: str, ctx: ProbeContext, **opts: Any) -> CheckResult:
    lines = [
        "  - name: c",
        "    kind: http",
        f'    nodes: [{{name: n, url: "http://127.0.0.1:{port}{path}"}}]',
        "    timeout: 2s",
    ]
    lines += [f"    {key}: {value}" for key, value in opts.items()]
    check = parse_config("checks:\n" + "\n".join(lines) + "\n").checks[0]
    return await run_check(check, ctx)


async def test_a_cookie_set_by_a_redirect_reaches_the_next_hop(ctx: ProbeContext) -> None:
    """A login redirect's Set-Cookie goes with the request it leads to (a browser's
    behaviour), also when the node is named by its IP address."""
    server = Login()
    async with serving(server.app) as port:
        result = await run(port, "/login", ctx, follow_redirects="true", retries="{attempts: 1}")
    assert result.status is Status.UP, result.nodes[0].error
    assert server.seen == [("/login", None), ("/app", "session=1")]


async def test_no_cookie_passes_to_another_attempt_or_check(ctx: ProbeContext) -> None:
    """Each attempt starts with an empty jar: the retry logs in again without the first
    attempt's cookie, and a later check of the same context sends none either."""
    server = Login(busy=1)
    async with serving(server.app) as port:
        retried = await run(
            port,
            "/login",
            ctx,
            follow_redirects="true",
            retries="{attempts: 2, backoff: 0s}",
        )
        assert retried.status is Status.UP, retried.nodes[0].error
        assert server.seen == [
            ("/login", None),
            ("/app", "session=1"),  # 503: the attempt fails, the runner retries
            ("/login", None),
            ("/app", "session=2"),
        ]
        other = await run(
            port, "/app", ctx, follow_redirects="true", retries="{attempts: 1}", client="aiohttp"
        )
        lent = await http_session(ctx).get(f"http://127.0.0.1:{port}/app")
        lent.release()
    assert other.status is Status.DOWN
    error = other.nodes[0].error
    assert error is not None
    assert error.type is ErrorType.HTTP_STATUS
    assert error.message.startswith("status 400")
    assert lent.status == 400  # the session lent to other requests keeps no cookie either
    assert server.seen[4:] == [("/app", None), ("/app", None)]
