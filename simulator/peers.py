"""`Simulator`: owns every simulated node of a demo or a test, and their certificates."""

import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from simulator.base import SimNode
from simulator.certs import CertAuthority
from simulator.control import ControlServer
from simulator.dns_node import SimDnsNode
from simulator.http_node import SimHttpNode
from simulator.modes import Mode
from simulator.proxy import SimForwardProxy
from simulator.tcp_node import SimTcpNode

_N = TypeVar("_N", bound=SimNode)


class Simulator:
    """Loopback stand-ins for the real peers, keyed by (link, node).

    Use as ``async with Simulator() as sim:``; certificates go to `directory`, or
    to a temporary directory removed on `stop()`.
    """

    def __init__(self, *, directory: Path | None = None) -> None:
        self._directory = directory
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._certs: CertAuthority | None = None
        self._nodes: dict[tuple[str, str], SimNode] = {}
        self._control: ControlServer | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def certs(self) -> CertAuthority:
        """The CA and leaves, made on first use so plain-only setups skip the key work."""
        if self._certs is None:
            directory = self._directory
            if directory is None:
                self._tempdir = tempfile.TemporaryDirectory(prefix="hotline-sim-")
                directory = Path(self._tempdir.name)
            self._certs = CertAuthority(directory=directory)
        return self._certs

    @property
    def ca_file(self) -> Path:
        """The CA PEM that verifies every TLS node's good certificate."""
        return self.certs.ca_file

    @property
    def nodes(self) -> tuple[SimNode, ...]:
        return tuple(self._nodes.values())

    def node(self, link: str, node: str) -> SimNode:
        """The node added as (`link`, `node`); KeyError when there is none."""
        return self._nodes[(link, node)]

    async def add_http(
        self, link: str, node: str, *, tls: bool = False, mode: Mode = Mode.HEALTHY
    ) -> SimHttpNode:
        self._check_new(link, node)
        certs = self.certs if tls else None
        return await self._started(SimHttpNode(link=link, node=node, certs=certs, mode=mode))

    async def add_tcp(
        self,
        link: str,
        node: str,
        *,
        banner: bytes = b"",
        tls: bool = False,
        mode: Mode = Mode.HEALTHY,
    ) -> SimTcpNode:
        self._check_new(link, node)
        certs = self.certs if tls else None
        tcp = SimTcpNode(link=link, node=node, banner=banner, certs=certs, mode=mode)
        return await self._started(tcp)

    async def add_dns(self, link: str, node: str, *, mode: Mode = Mode.HEALTHY) -> SimDnsNode:
        """A DNS server answering every A question with a loopback address."""
        self._check_new(link, node)
        return await self._started(SimDnsNode(link=link, node=node, mode=mode))

    async def add_proxy(
        self,
        link: str,
        node: str,
        *,
        username: str | None = None,
        password: str | None = None,
        mode: Mode = Mode.HEALTHY,
    ) -> SimForwardProxy:
        self._check_new(link, node)
        proxy = SimForwardProxy(
            link=link, node=node, username=username, password=password, mode=mode
        )
        return await self._started(proxy)

    async def start_control(self, *, port: int = 0) -> ControlServer:
        """Start the control API (once); `stop()` closes it with the nodes."""
        if self._control is None:
            control = ControlServer(registry=self, port=port)
            await control.start()
            self._control = control
        return self._control

    async def stop(self) -> None:
        """Close the control API and every node; remove temporary certificates."""
        if self._control is not None:
            await self._control.stop()
            self._control = None
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
            self._certs = None

    def _check_new(self, link: str, node: str) -> None:
        if (link, node) in self._nodes:
            raise ValueError(f"node {link}/{node} already exists")

    async def _started(self, node: _N) -> _N:
        try:
            await node.start()
        except BaseException:
            await node.stop()
            raise
        self._nodes[(node.link, node.node)] = node
        return node
