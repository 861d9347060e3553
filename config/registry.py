"""The one list of kinds: each config/kinds/<kind>.py registers its check model here,
with the module of the probe that runs it.

Both the config's discriminated union (``checks:``, config/probe_config.py) and the probe
table (``probes.PROBES``) are derived from this registry, so a new kind is one config
file and one probe file. The probe is named by its dotted module name and imported by
probes/ when first needed: config sits below probes and never imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, Union

from pydantic import Field

from config.checks import CheckBase

Model = TypeVar("Model", bound=type[CheckBase])


@dataclass(frozen=True)
class Kind:
    name: str
    """The ``kind:`` value that selects the model."""
    model: type[CheckBase]
    probe: str
    """Dotted name of the module whose ``probe`` function runs one attempt of the kind
    (and whose optional ``prepare(checks)`` imports what its checks will need)."""


def kind_of(model: type[CheckBase]) -> str:
    """The ``kind:`` value that selects a check model (its ``kind: Literal[...]``)."""
    literal = model.model_fields["kind"].annotation
    return str(literal.__args__[0])  # type: ignore[union-attr]


class Kinds(Mapping[str, Kind]):
    """Kind name -> Kind, in the order the kinds were registered."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}

    def register(self, *, probe: str) -> Callable[[Model], Model]:
        """A class decorator: ``@KINDS.register(probe="probes.tcp")`` over ``TcpCheck``."""

        def add(model: Model) -> Model:
            name = kind_of(model)
            if name in self._kinds:
                raise ValueError(f"kind {name!r} is registered twice")
            self._kinds[name] = Kind(name=name, model=model, probe=probe)
            return model

        return add

    def unregister(self, name: str) -> None:
        """Forget a kind (a test's throwaway one)."""
        del self._kinds[name]

    def union(self) -> Any:
        """The type of one entry of ``checks:``: the models, told apart by ``kind``."""
        models = tuple(kind.model for kind in self._kinds.values())
        return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007

    def __getitem__(self, name: str) -> Kind:
        return self._kinds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)


KINDS = Kinds()
"""Every kind; config/kinds/__init__.py imports each module of that package, and each
registers itself."""
