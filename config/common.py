"""Pieces every config model shares: the frozen base, names, ``host:port`` addresses.

Apart from config/checks.py because config/outputs.py needs them too, and the config
root (config/probe_config.py) imports outputs.py.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"),
]
"""Check, node and output names: lowercase letters, digits and inner hyphens (they
become metric labels)."""

ADDRESS = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]\s]+)):(?P<port>\d{1,5})$")


def split_address(address: str, *, any_port: bool = False) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into its parts; ``any_port`` admits port 0."""
    match = ADDRESS.match(address)
    if not match:
        raise ValueError("address must be host:port (IPv6 as [addr]:port)")
    port = int(match.group("port"))
    if not (0 if any_port else 1) <= port < 65536:
        raise ValueError("port must be between 1 and 65535")
    return match.group("v6") or match.group("host"), port


def check_address(address: str) -> str:
    """A field validator: the address as written, once it splits."""
    split_address(address)
    return address
