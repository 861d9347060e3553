"""The probe table: ``kind`` in the config -> the function that runs one attempt.

Derived from the registry of kinds (config/registry.py), where each kind names its probe
module; a probe module defines ``probe`` (and may define ``prepare(checks)``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from config.kinds import KINDS
from config.registry import Kind
from probes.base import Probe

# Each kind's module is imported with the first check of that kind, so a run pays only
# for the kinds its config uses: aiohttp (freshness, and http over TLS or a proxy),
# dnspython and icmplib each cost tens of milliseconds that `probe --all` over plain
# HTTP checks need not spend.


class Registry(Mapping[str, Probe]):
    """kind -> probe, read from the registry of kinds (config/registry.py) when asked,
    so a kind registered there is found here without a list of its own."""

    def __init__(self, kinds: Mapping[str, Kind]) -> None:
        self._kinds = kinds
        self._loaded: dict[str, Probe] = {}  # by module name

    def __getitem__(self, kind: str) -> Probe:
        name = self._kinds[kind].probe  # KeyError: no such kind
        probe = self._loaded.get(name)
        if probe is None:
            probe = self._loaded[name] = importlib.import_module(name).probe
        return probe

    def _module(self, kind: str) -> Any:
        return importlib.import_module(self._kinds[kind].probe)  # KeyError: no such kind

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

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
            self._loaded.setdefault(module.__name__, module.probe)
            if hasattr(module, "prepare"):
                module.prepare(of_kind)


PROBES = Registry(KINDS)
