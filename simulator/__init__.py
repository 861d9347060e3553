"""Loopback simulators of the hotline platform's peers, for `probe demo` and the tests.

Everything binds 127.0.0.1 and dials only loopback addresses.
"""

from simulator.base import SimNode
from simulator.certs import CertAuthority, CertVariant
from simulator.control import ControlServer, NodeRegistry
from simulator.dns_node import SimDnsNode
from simulator.http_node import SimHttpNode
from simulator.modes import Mode
from simulator.peers import Simulator
from simulator.proxy import SimForwardProxy
from simulator.tcp_node import SimTcpNode

__all__ = [
    "CertAuthority",
    "CertVariant",
    "ControlServer",
    "Mode",
    "NodeRegistry",
    "SimDnsNode",
    "SimForwardProxy",
    "SimHttpNode",
    "SimNode",
    "SimTcpNode",
    "Simulator",
]
