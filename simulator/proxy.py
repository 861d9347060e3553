"""A minimal HTTP forward proxy that only ever dials loopback addresses."""

import asyncio
import base64
import binascii
import hmac
import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from simulator.base import LOOPBACK, SimNode, reset_connection
from simulator.modes import Mode

_MODES = frozenset({Mode.HEALTHY, Mode.REFUSING, Mode.HANGING, Mode.ERRORING})
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
}
# Hop-by-hop headers the proxy consumes instead of forwarding.
_HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"proxy-authorization", b"proxy-connection"}
)
_CONNECT_TIMEOUT = 5.0
_CHUNK = 65536


def loopback_target(host: str) -> str | None:
    """The address to dial for `host`, or None when it is not loopback.

    Names are never resolved: only "localhost" and loopback IP literals pass, so no
    request can make the simulator send a packet off the machine.
    """
    if host.lower() == "localhost":
        return LOOPBACK
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(address) if address.is_loopback else None


class SimForwardProxy(SimNode):
    """CONNECT tunnels and absolute-URI requests, one request per client connection.

    With `username` and `password` set, requests need matching Basic proxy auth.
    `requests` counts request heads read.
    """

    kind = "proxy"

    def __init__(
        self,
        *,
        link: str,
        node: str,
        username: str | None = None,
        password: str | None = None,
        mode: Mode = Mode.HEALTHY,
    ) -> None:
        super().__init__(link=link, node=node, mode=mode)
        self._credentials = None if username is None else f"{username}:{password or ''}".encode()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def modes(self) -> frozenset[Mode]:
        return _MODES

    @property
    def scheme(self) -> str:
        return "http"

    def _protocol_factory(self) -> Callable[[], asyncio.BaseProtocol]:
        return lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(), self._accept)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task set rather than asyncio's, so stop() can cancel and await each one.
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop_connections(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _shutdown(self) -> None:
        self._drop_connections()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        changed = self._changed
        try:
            if self._mode is Mode.HANGING:
                await changed.wait()
                return
            if self._stopping or self._mode is Mode.REFUSING:
                reset_connection(writer.transport)
                return
            await self._proxy(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _respond(writer, 431)
            return
        self._count_request()
        if self._mode is Mode.ERRORING:
            await _respond(writer, 502, "simulated proxy failure")
            return
        request_line, *header_lines = head[:-4].split(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3:
            await _respond(writer, 400, "malformed request line")
            return
        method, target, version = (p.decode("latin-1") for p in parts)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in header_lines)
        }
        if not self._authorized(headers.get(b"proxy-authorization")):
            await _respond(
                writer,
                407,
                "proxy authentication required",
                extra=b'Proxy-Authenticate: Basic realm="sim"\r\n',
            )
            return
        if method == "CONNECT":
            await self._connect(target, reader, writer)
        else:
            await self._forward(method, target, version, header_lines, reader, writer)

    def _authorized(self, header: bytes | None) -> bool:
        if self._credentials is None:
            return True
        scheme, _, token = (header or b"").partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            supplied = base64.b64decode(token.strip(), validate=True)
        except binascii.Error:
            return False
        return hmac.compare_digest(supplied, self._credentials)

    async def _connect(
        self, authority: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        parsed = urlsplit(f"//{authority}")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if parsed.hostname is None or port is None:
            await _respond(writer, 400, "CONNECT needs host:port")
            return
        upstream = await self._dial(parsed.hostname, port, writer)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _tunnel(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    async def _forward(
        self,
        method: str,
        target: str,
        version: str,
        header_lines: list[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        parsed = urlsplit(target)
        try:
            port = parsed.port or 80
        except ValueError:
            port = 0
        if parsed.scheme != "http" or parsed.hostname is None or not port:
            await _respond(writer, 400, "expected an absolute http:// URI")
            return
        upstream = await self._dial(parsed.hostname, port, writer)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        path = parsed.path or "/"
        if parsed.query:
            path += f"?{parsed.query}"
        kept = [
            line
            for line in header_lines
            if line.partition(b":")[0].strip().lower() not in _HOP_HEADERS
        ]
        # Connection: close makes the origin end the response with EOF, so relaying
        # until EOF is a complete, correctly framed answer without parsing it.
        head = b"\r\n".join(
            [f"{method} {path} {version}".encode("latin-1"), *kept, b"Connection: close"]
        )
        try:
            up_writer.write(head + b"\r\n\r\n")
            await up_writer.drain()
            await _tunnel(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    async def _dial(
        self, host: str, port: int, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        address = loopback_target(host)
        if address is None:
            # Checked before any socket exists: the hard rule is loopback traffic only.
            await _respond(writer, 403, f"target {host!r} is not loopback")
            return None
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                return await asyncio.open_connection(address, port)
        except (OSError, TimeoutError) as exc:
            await _respond(writer, 502, f"cannot reach {address}:{port}: {exc}")
            return None


async def _respond(
    writer: asyncio.StreamWriter, status: int, text: str = "", *, extra: bytes = b""
) -> None:
    body = (text or _REASONS[status]).encode() + b"\n"
    writer.write(
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n"
        + extra
        + b"\r\n"
        + body
    )
    await writer.drain()


async def _tunnel(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    """Relay both ways until the upstream side closes."""
    up = asyncio.create_task(_pipe(client_reader, upstream_writer))
    down = asyncio.create_task(_pipe(upstream_reader, client_writer))
    try:
        # The client finishing first only half-closes (_pipe sends EOF upstream); the
        # exchange is over when upstream has said all it will say.
        await down
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        pass
