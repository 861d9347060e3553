"""``kind: proxy``: watches a forward proxy by reaching a target through it."""

from __future__ import annotations

from typing import Literal

from config.kinds.http import HttpCheckBase, ProxyOptions
from config.registry import KINDS


@KINDS.register(probe="probes.proxy")
class ProxyCheck(HttpCheckBase):
    """Watches a forward proxy by reaching a target through it."""

    kind: Literal["proxy"]
    proxy: ProxyOptions
