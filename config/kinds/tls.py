"""``kind: tls``: a TLS handshake with each node and its certificate's expiry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.checks import AddressNode, CheckBase
from config.registry import KINDS


@KINDS.register(probe="probes.tls")
class TlsCheck(CheckBase):
    kind: Literal["tls"]
    nodes: list[AddressNode] = Field(min_length=1)
