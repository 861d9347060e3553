"""The daemon's HTTP endpoint: /metrics for Prometheus, /status as JSON, /healthz, and
``POST /heartbeat/<check>`` for the push sources of freshness checks.

Bound to loopback by default (``listen:``); it exposes no secrets. The only input it
takes is a heartbeat, which must carry the check's token and a small body.

Idle clients cannot starve the probes: a connection must send its request head within
``REQUEST_HEAD_TIMEOUT``, a heartbeat its body within ``REQUEST_BODY_TIMEOUT``, an idle
keep-alive connection is closed after ``KEEPALIVE_TIMEOUT``, and the endpoint holds at
most ``connection_cap()`` connections, so most file descriptors stay for probing.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import resource
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from pydantic import SecretStr

from config.common import split_address
from events.ecs import heartbeat_event
from web.metrics import CONTENT_TYPE, Metrics
from web.stream import pieces, stream

HEARTBEAT_MAX_BODY = 64 * 1024
"""A heartbeat needs no body; a poster may send a little (a callback id), never more."""

REQUEST_HEAD_TIMEOUT = 10.0
"""Seconds a client has, once connected, to send a whole request head (line and
headers); a connection still without one is closed. curl or Prometheus needs
milliseconds."""
REQUEST_BODY_TIMEOUT = 10.0
"""Seconds a heartbeat's body may take to arrive; slower is refused with 408."""
KEEPALIVE_TIMEOUT = 75.0
"""Seconds an idle keep-alive connection is kept, which also bounds the wait for its
next request head (aiohttp's own default is an hour). Longer than a minute, so a
scraper every 60 s keeps its connection."""
MAX_CONNECTIONS = 256
"""Connections the endpoint holds at once, at most (and at most a quarter of the
descriptors the process may open: ``connection_cap``). Beyond it the oldest connection
still without a request is closed, else the oldest idle keep-alive one, else the new one."""

PushToken = Callable[[str], SecretStr | None]
"""The token of the push freshness check so named; None for any other name."""
RecordHeartbeat = Callable[[str], Awaitable[None]]
RejectHeartbeat = Callable[[str, str, str | None], None]
"""Report a heartbeat refused for its token: check, why, the peer's address."""

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_BEARER = re.compile(r"^\s*bearer\s+(.+?)\s*$", re.IGNORECASE)


def build_app(
    *,
    metrics: Metrics,
    status: Callable[[], dict[str, Any]],  # "checks" may be an iterator (streamed)
    healthy: Callable[[], tuple[bool, str]],
    scrub: Callable[[str], str],
    emit: Callable[[dict[str, Any]], None],
    push_token: PushToken | None = None,
    record_heartbeat: RecordHeartbeat | None = None,
    reject_heartbeat: RejectHeartbeat | None = None,
) -> web.Application:
    async def get_metrics(request: web.Request) -> web.StreamResponse:
        return await stream(request, CONTENT_TYPE, metrics.chunks())

    async def get_status(request: web.Request) -> web.StreamResponse:
        texts = _status_texts(status(), scrub)
        return await stream(request, "application/json; charset=utf-8", pieces(texts))

    async def get_healthz(_: web.Request) -> web.Response:
        ok, reason = healthy()
        return web.json_response(
            {"status": "ok" if ok else "unhealthy", "reason": reason}, status=200 if ok else 503
        )

    async def post_heartbeat(request: web.Request) -> web.Response:
        name = request.match_info["check"]
        token = push_token(name) if push_token and _NAME.match(name) else None
        if token is None or record_heartbeat is None:
            return _problem(404, "no freshness check with a push source has this name")
        if (request.content_length or 0) > HEARTBEAT_MAX_BODY:
            return _too_large()
        if not _authorized(request, token):
            why = "no bearer token" if "Authorization" not in request.headers else "wrong token"
            if reject_heartbeat is not None:  # the daemon's: a flood is summarised
                reject_heartbeat(name, why, request.remote)
            else:
                message = f"heartbeat for {name} refused: {why}"
                emit(heartbeat_event(name, message, peer=request.remote))
            return _problem(401, why, headers={"WWW-Authenticate": 'Bearer realm="hotline-probe"'})
        try:
            async with asyncio.timeout(REQUEST_BODY_TIMEOUT):
                await request.read()  # bounded by the application's client_max_size
        except web.HTTPRequestEntityTooLarge:
            return _too_large()
        except TimeoutError:
            why = f"the body did not arrive within {REQUEST_BODY_TIMEOUT:g} s"
            return _problem(408, why, headers={"Connection": "close"})
        await record_heartbeat(name)
        return web.Response(status=204)

    # client_max_size bounds every body read; only the heartbeat reads one.
    app = web.Application(client_max_size=HEARTBEAT_MAX_BODY)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/status", get_status)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_post("/heartbeat/{check}", post_heartbeat)
    return app


def _authorized(request: web.Request, token: SecretStr) -> bool:
    match = _BEARER.match(request.headers.get("Authorization", ""))
    if match is None:
        return False
    # Constant time, so the answer's timing says nothing about how much of a guess matched.
    # aiohttp hands over bytes that are not UTF-8 as lone surrogates: compared as the
    # bytes that were sent, such a token is simply wrong.
    return hmac.compare_digest(
        match.group(1).encode("utf-8", "surrogateescape"),
        token.get_secret_value().encode("utf-8", "surrogateescape"),
    )


def _problem(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


def _too_large() -> web.Response:
    return _problem(413, f"a heartbeat body is at most {HEARTBEAT_MAX_BODY} bytes")


async def serve(
    app: web.Application,
    listen: str,
    *,
    head_timeout: float | None = None,
    max_connections: int | None = None,
) -> web.AppRunner:
    """Start serving on ``host:port``; raises OSError (port taken, no such address).

    ``head_timeout`` (by default REQUEST_HEAD_TIMEOUT) and ``max_connections`` (by
    default ``connection_cap()``) bound what clients may hold: see ``_Guard``."""
    host, port = split_address(listen, any_port=True)
    guard = _Guard(
        REQUEST_HEAD_TIMEOUT if head_timeout is None else head_timeout,
        connection_cap() if max_connections is None else max_connections,
    )
    app.middlewares.append(guard.middleware)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=2.0,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
    )
    await runner.setup()
    try:
        await _GuardedSite(runner, host, port, guard).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def connection_cap(most: int | None = None) -> int:
    """``most`` (MAX_CONNECTIONS), or a quarter of the soft RLIMIT_NOFILE if that is less:
    the other three quarters stay for probing, outputs and the spool, whatever clients do."""
    most = MAX_CONNECTIONS if most is None else most
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return most
    return max(1, min(most, soft // 4))


class _Connection(asyncio.Protocol):
    """One client connection: aiohttp's request handler does the work, the guard hears
    when it opens and closes and may close it."""

    def __init__(self, guard: _Guard, handler: RequestHandler) -> None:
        self.guard = guard
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = False  # a request head arrived
        self.busy = 0  # requests being handled now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.handler.connection_made(transport)
        self.guard.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.closed(self)
        self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> None:
        self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Guard:
    """Bounds the connections clients hold: each must send a request head within
    ``head_timeout``, and at most ``cap`` are open at once (see MAX_CONNECTIONS for which
    one goes). aiohttp itself bounds neither the wait for a first request nor the count."""

    def __init__(self, head_timeout: float, cap: int) -> None:
        self.head_timeout = head_timeout
        self.cap = cap
        self._open: dict[RequestHandler, _Connection] = {}  # oldest first

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        return lambda: _Connection(self, server())

    def opened(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        connection.timer = loop.call_later(self.head_timeout, self._expire, connection)
        self._open[connection.handler] = connection
        if len(self._open) > self.cap:
            self._drop(self._victim(connection))

    def closed(self, connection: _Connection) -> None:
        if connection.timer is not None:
            connection.timer.cancel()
        self._open.pop(connection.handler, None)

    def _expire(self, connection: _Connection) -> None:
        if not connection.started:
            self._drop(connection)

    def _victim(self, new: _Connection) -> _Connection:
        others = [c for c in self._open.values() if c is not new]
        waiting = (c for c in others if not c.started)
        idle = (c for c in others if not c.busy)
        return next(waiting, None) or next(idle, None) or new

    def _drop(self, connection: _Connection) -> None:
        self.closed(connection)
        connection.close()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        connection = self._open.get(request.protocol)
        if connection is None:  # already dropped
            return await handler(request)
        connection.started = True
        if connection.timer is not None:
            connection.timer.cancel()
        connection.busy += 1
        try:
            return await handler(request)
        finally:
            connection.busy -= 1


class _GuardedSite(web.TCPSite):
    """aiohttp's TCP site, its connections made through the guard."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: _Guard) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )


def _status_texts(document: dict[str, Any], scrub: Callable[[str], str]) -> Iterator[str]:
    """The document as json.dumps writes it, its checks one by one, each scrubbed whole
    (a secret never spans two pieces)."""
    head = {key: value for key, value in document.items() if key != "checks"}
    opening = scrub(json.dumps(head, ensure_ascii=False)[:-1])
    yield opening + (", " if head else "") + '"checks": ['
    for index, entry in enumerate(document.get("checks", ())):
        yield (", " if index else "") + scrub(json.dumps(entry, ensure_ascii=False))
    yield "]}"


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (listen on port 0 in tests)."""
    return int(runner.addresses[0][1])
