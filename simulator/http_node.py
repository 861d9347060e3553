"""An HTTP(S) endpoint of one link, answering every method and path per its mode."""

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from simulator.base import SimNode, interrupted, reset_connection
from simulator.certs import CertAuthority, CertVariant
from simulator.modes import GARBAGE_BYTES, TLS_MODES, Mode

_PLAIN_MODES = frozenset(Mode) - TLS_MODES
_CERT_FOR_MODE = {
    Mode.BAD_CERTIFICATE: CertVariant.SELF_SIGNED,
    Mode.EXPIRED_CERTIFICATE: CertVariant.EXPIRED,
}
# `reset` promises 1000 bytes and delivers 10, so the client sees a body cut short.
_RESET_PREFIX = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"status":'
)
# `trickle` announces a body it will never finish, so no client can stop reading early.
_TRICKLE_LENGTH = 1_000_000  # under a probe's default body cap, so only time ends it
_HUGE_CHUNK = b"x" * 65536


class SimHttpNode(SimNode):
    """An aiohttp app on its own 127.0.0.1 port; HTTPS when `certs` is given.

    `slow_delay` and `trickle_interval` are plain attributes so tests can shrink them;
    `healthy_body` replaces the default ``{"status": "ok", "link": ..., "node": ...}``
    answer (a Spring Boot actuator, say, answers ``{"status": "UP"}``).
    """

    kind = "http"

    def __init__(
        self,
        *,
        link: str,
        node: str,
        certs: CertAuthority | None = None,
        mode: Mode = Mode.HEALTHY,
    ) -> None:
        self._certs = certs
        super().__init__(link=link, node=node, mode=mode)
        self.slow_delay = 2.0
        self.trickle_interval = 0.5
        self.healthy_body: dict[str, Any] | None = None
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown timeout: every parked handler is woken on stop anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)

    @property
    def tls(self) -> bool:
        return self._certs is not None

    @property
    def modes(self) -> frozenset[Mode]:
        return frozenset(Mode) if self.tls else _PLAIN_MODES

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{super().url}/"

    async def start(self) -> None:
        await self._runner.setup()
        await super().start()

    def _tls_context(self, mode: Mode) -> ssl.SSLContext | None:
        if self._certs is None:
            return None
        return self._certs.server_context(_CERT_FOR_MODE.get(mode, CertVariant.GOOD))

    def _protocol_factory(self) -> Callable[[], asyncio.BaseProtocol]:
        server = self._runner.server
        assert server is not None, "start() sets the runner up first"
        return server

    def _drop_connections(self) -> None:
        server = self._runner.server
        for handler in server.connections if server is not None else ():
            if handler.transport is not None:
                handler.transport.abort()
            handler.force_close()

    async def _shutdown(self) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._count_request()
        await request.read()
        while True:
            # Captured before the mode, so a switch in between still wakes us.
            changed = self._changed
            mode = self._mode
            if self._stopping or mode is Mode.REFUSING:
                return _drop(request)
            if mode is Mode.HANGING:
                await changed.wait()
                continue
            if mode is Mode.SLOW:
                if await interrupted(changed, self.slow_delay):
                    continue
                return self._healthy()
            return await self._answer(request, mode, changed)

    async def _answer(
        self, request: web.Request, mode: Mode, changed: asyncio.Event
    ) -> web.StreamResponse:
        if mode is Mode.ERRORING:
            return web.Response(status=503, text="simulated outage\n")
        if mode is Mode.WRONG_BODY:
            return web.json_response({"status": "maintenance"})
        if mode is Mode.RESET:
            return _reset_midway(request)
        if mode is Mode.GARBAGE:
            return _garbage(request)
        if mode is Mode.TRICKLE:
            return await self._trickle(request, changed)
        if mode is Mode.HUGE_BODY:
            return await _huge_body(request, changed)
        # healthy, and the certificate modes: their failure is in the handshake, not here.
        return self._healthy()

    def _healthy(self) -> web.Response:
        body = self.healthy_body
        if body is None:
            body = {"status": "ok", "link": self.link, "node": self.node}
        return web.json_response(body)

    async def _trickle(self, request: web.Request, changed: asyncio.Event) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.content_length = _TRICKLE_LENGTH
        await response.prepare(request)
        try:
            while True:
                await response.write(b".")
                if await interrupted(changed, self.trickle_interval):
                    break
        except ConnectionError:
            pass  # the client gave up, which is what a trickle is for
        # The body is unfinished, so the connection cannot carry another request.
        _drop(request)
        return response


async def _huge_body(request: web.Request, changed: asyncio.Event) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        while not changed.is_set():
            await response.write(_HUGE_CHUNK)
            # write() only yields when the socket buffer is full; keep the loop fair anyway.
            await asyncio.sleep(0)
    except ConnectionError:
        pass
    _drop(request)
    return response


def _reset_midway(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.write(_RESET_PREFIX)
        reset_connection(transport)
    return _closed_response()


def _garbage(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.write(GARBAGE_BYTES)
        transport.close()
    return _closed_response()


def _drop(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.abort()
    return _closed_response()


def _closed_response() -> web.StreamResponse:
    # aiohttp needs a response back; writing it to the closed transport raises a
    # ConnectionError that aiohttp swallows, so nothing more reaches the wire.
    return web.Response()
