"""A small HTTP API on 127.0.0.1 for flipping simulator nodes from a shell.

For example ``curl -X PUT 127.0.0.1:PORT/nodes/LINK/NODE -d '{"mode": "refusing"}'``.
"""

from collections.abc import Sequence
from typing import Protocol

from aiohttp import web

from simulator.base import LOOPBACK, SimNode, bind_loopback


class NodeRegistry(Protocol):
    """What the control API needs from whoever owns the nodes."""

    @property
    def nodes(self) -> Sequence[SimNode]: ...

    def node(self, link: str, node: str) -> SimNode:
        """The node, or KeyError."""
        ...


class ControlServer:
    """Serves ``GET /nodes``, ``GET /nodes/{link}/{node}`` and ``PUT /nodes/{link}/{node}``."""

    def __init__(self, *, registry: NodeRegistry, port: int = 0) -> None:
        self._registry = registry
        self._requested_port = port
        self._port = 0
        app = web.Application()
        app.router.add_get("/nodes", self._list)
        app.router.add_get("/nodes/{link}/{node}", self._show)
        app.router.add_put("/nodes/{link}/{node}", self._update)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}/"

    async def start(self) -> None:
        await self._runner.setup()
        # Binding the socket ourselves is how we learn the port the OS picked.
        sock = bind_loopback(self._requested_port)
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([node.state() for node in self._registry.nodes])

    async def _show(self, request: web.Request) -> web.Response:
        node = self._find(request)
        return web.json_response(node.state())

    async def _update(self, request: web.Request) -> web.Response:
        node = self._find(request)
        try:
            body = await request.json()
        except ValueError:
            raise _bad_request('body must be JSON like {"mode": "refusing"}') from None
        mode = body.get("mode") if isinstance(body, dict) else None
        if not isinstance(mode, str):
            raise _bad_request('body must be JSON like {"mode": "refusing"}')
        try:
            await node.set_mode(mode)
        except ValueError as exc:  # the message lists the modes that would have worked
            raise _bad_request(str(exc)) from None
        return web.json_response(node.state())

    def _find(self, request: web.Request) -> SimNode:
        link, name = request.match_info["link"], request.match_info["node"]
        try:
            return self._registry.node(link, name)
        except KeyError:
            raise web.HTTPNotFound(
                text=f"no node {link}/{name}\n", content_type="text/plain"
            ) from None


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message + "\n", content_type="text/plain")
