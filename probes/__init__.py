"""The probe registry: ``kind`` in the config -> the function that runs one attempt."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from probes.base import Probe

# Each kind's module is imported with the first check of that kind, so a run pays only
# for the kinds its config uses: aiohttp (freshness, and http over TLS or a proxy),
# dnspython and icmplib each cost tens of milliseconds that `probe --all` over plain
# HTTP checks need not spend.
_MODULES = {
    "http": "probes.http",
    "proxy": "probes.proxy",
    "tcp": "probes.tcp",
    "tls": "probes.tls",
    "freshness": "probes.freshness",
    "dns": "probes.dns",
    "icmp": "probes.icmp",
}


class _Registry(Mapping[str, Probe]):
    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)
        self._loaded: dict[str, Probe] = {}

    def __getitem__(self, kind: str) -> Probe:
        probe = self._loaded.get(kind)
        if probe is None:
            module = importlib.import_module(self._modules[kind])  # KeyError: no such kind
            probe = self._loaded[kind] = module.probe
        return probe

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


PROBES: Mapping[str, Probe] = _Registry(_MODULES)
