"""The probe registry: ``kind`` in the config -> the function that runs one attempt."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

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


class Registry(Mapping[str, Probe]):
    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)
        self._loaded: dict[str, Probe] = {}

    def __getitem__(self, kind: str) -> Probe:
        probe = self._loaded.get(kind)
        if probe is None:
            probe = self._loaded[kind] = self._module(kind).probe
        return probe

    def _module(self, kind: str) -> Any:
        return importlib.import_module(self._modules[kind])  # KeyError: no such kind

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def prepare(self, checks: Iterable[Any]) -> None:
        """Import what these checks will need before any of them runs.

        An import inside a run would be timed as part of its first attempt (aiohttp
        takes a fifth of a second) and would hold the loop against every probe in
        flight. A kind's module may define ``prepare(checks)`` for its own needs."""
        by_kind: dict[str, list[Any]] = {}
        for check in checks:
            by_kind.setdefault(check.kind, []).append(check)
        for kind, of_kind in by_kind.items():
            module = self._module(kind)
            self._loaded.setdefault(kind, module.probe)
            if hasattr(module, "prepare"):
                module.prepare(of_kind)


PROBES = Registry(_MODULES)
