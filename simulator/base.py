"""What every simulated node shares: a stable loopback port, a runtime mode, a listener.

A node owns one port for its whole life. Modes that change what the listener looks
like (closed for `refusing`, another certificate for the TLS modes) close it and
re-bind the same port; every other mode is read per request or per connection.
"""

import asyncio
import contextlib
import socket
import ssl
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from simulator.modes import Mode

LOOPBACK = "127.0.0.1"

# A TLS client that never finishes the handshake must not pin a transport for long.
_TLS_TIMEOUTS = {"ssl_handshake_timeout": 5.0, "ssl_shutdown_timeout": 1.0}


def bind_loopback(port: int) -> socket.socket:
    """A TCP socket bound to 127.0.0.1:`port` (0 lets the OS pick), not yet listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Re-binding the port we just closed must not trip over TIME_WAIT connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock


def reset_connection(transport: asyncio.BaseTransport) -> None:
    """Close `transport` with a TCP RST instead of a FIN, as a crashing peer would."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger on with a zero timeout makes close() discard the send queue and send RST;
        # OSError means it is already closed underneath us, with nothing left to reset.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


async def interrupted(changed: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True when `changed` fired first (mode switch or stop)."""
    try:
        async with asyncio.timeout(seconds):
            await changed.wait()
    except TimeoutError:
        return False
    return True


class SimNode(ABC):
    """One simulated endpoint of one link, listening on 127.0.0.1.

    Subclasses provide the protocol, the modes they support and, for TLS, which
    certificate each mode presents.
    """

    kind: ClassVar[str]

    def __init__(self, *, link: str, node: str, mode: Mode = Mode.HEALTHY) -> None:
        self.link = link
        self.node = node
        # Requests (HTTP, proxy) or connections (TCP) seen, so tests can tell nodes apart.
        self.requests = 0
        self._request_seen = asyncio.Event()
        self._mode = self._validate(mode)
        self._port = 0
        self._server: asyncio.Server | None = None
        self._server_tls: ssl.SSLContext | None = None
        # Replaced on every switch; whatever is parked on the old one wakes and re-reads the mode.
        self._changed = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    # -- what subclasses provide -------------------------------------------------

    @property
    @abstractmethod
    def modes(self) -> frozenset[Mode]:
        """The modes this node can be switched into."""

    @property
    @abstractmethod
    def scheme(self) -> str:
        """URL scheme of `url`."""

    @abstractmethod
    def _protocol_factory(self) -> Callable[[], asyncio.BaseProtocol]:
        """Builds one protocol instance per accepted connection."""

    @abstractmethod
    def _drop_connections(self) -> None:
        """Abort every accepted connection (the peer went away or changed certificate)."""

    def _tls_context(self, mode: Mode) -> ssl.SSLContext | None:
        """The server context the listener needs in `mode`; None for plain TCP."""
        return None

    @abstractmethod
    async def _shutdown(self) -> None:
        """Release what the subclass holds once the listener and connections are gone."""

    # -- public API --------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        """Switch now; a needed re-bind runs in the background (await `settle()` for it)."""
        self._switch(mode)
        # Kept until settle() or stop() awaits it, so a failed re-bind is never lost.
        self._pending.add(asyncio.get_running_loop().create_task(self._apply_listener()))

    async def set_mode(self, mode: Mode | str) -> None:
        """Switch to `mode` and return once the listener matches it.

        Raises ValueError for an unknown mode or one this node does not support.
        """
        self._switch(mode)
        await self._apply_listener()

    async def wait_for_requests(self, count: int) -> None:
        """Return once `requests` reaches `count`; callers bound it with a timeout."""
        while self.requests < count:
            await self._request_seen.wait()

    async def settle(self) -> None:
        """Wait for re-binds scheduled by the `mode` setter, raising their errors."""
        pending, self._pending = self._pending, set()
        await asyncio.gather(*pending)

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot for the control API and the demo."""
        return {
            "link": self.link,
            "node": self.node,
            "kind": self.kind,
            "mode": self._mode.value,
            "address": self.address,
            "requests": self.requests,
        }

    async def start(self) -> None:
        """Bind a port (the OS picks it) and start listening unless `refusing`."""
        sock = bind_loopback(0)
        self._port = sock.getsockname()[1]
        if self._mode is Mode.REFUSING:
            sock.close()
            return
        tls = self._tls_context(self._mode)
        self._server = await self._listen(sock, tls)
        self._server_tls = tls

    async def stop(self) -> None:
        """Close the listener and every connection; wake and finish parked handlers."""
        if self._stopping:
            return
        self._stopping = True
        self._changed.set()
        pending, self._pending = self._pending, set()
        await asyncio.gather(*pending, return_exceptions=True)
        async with self._lock:
            self._close_listener()
            self._drop_connections()
        await self._shutdown()

    # -- internals ---------------------------------------------------------------

    def _count_request(self) -> None:
        self.requests += 1
        self._request_seen.set()
        self._request_seen = asyncio.Event()

    def _validate(self, mode: Mode | str) -> Mode:
        try:
            mode = Mode(mode)
        except ValueError:
            valid = ", ".join(m.value for m in Mode)
            raise ValueError(f"unknown mode {mode!r}; valid modes: {valid}") from None
        if mode not in self.modes:
            valid = ", ".join(m.value for m in Mode if m in self.modes)
            raise ValueError(
                f"{self.kind} node does not support {mode.value!r}; use one of: {valid}"
            )
        return mode

    def _switch(self, mode: Mode | str) -> None:
        if self._stopping:
            raise RuntimeError(f"{self.link}/{self.node} is stopped")
        self._mode = self._validate(mode)
        self._changed.set()
        self._changed = asyncio.Event()

    async def _apply_listener(self) -> None:
        async with self._lock:
            if self._stopping:
                return
            want_open = self._mode is not Mode.REFUSING
            want_tls = self._tls_context(self._mode) if want_open else None
            is_open = self._server is not None
            if is_open == want_open and want_tls is self._server_tls:
                return
            self._close_listener()
            # A pooled keep-alive connection would hide the change from the client.
            self._drop_connections()
            if want_open:
                self._server = await self._listen(bind_loopback(self._port), want_tls)
                self._server_tls = want_tls

    async def _listen(self, sock: socket.socket, tls: ssl.SSLContext | None) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        extra: dict[str, Any] = _TLS_TIMEOUTS if tls is not None else {}
        try:
            return await loop.create_server(self._protocol_factory(), sock=sock, ssl=tls, **extra)
        except BaseException:
            sock.close()
            raise

    def _close_listener(self) -> None:
        if self._server is not None:
            # close() shuts the listening socket at once; new connects now get ECONNREFUSED.
            self._server.close()
            self._server = None
            self._server_tls = None
