"""The registry of kinds is the one list: the config's union and the probe table come from it."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Literal

import pytest

from config.checks import CheckBase, Node
from config.kinds import KINDS
from config.probe_config import ProbeConfig, config_model
from config.registry import kind_of
from probes import PROBES
from probes.base import Observation


class ThrowawayCheck(CheckBase):
    kind: Literal["throwaway"]
    nodes: list[Node]


async def probe(check: CheckBase, node: Node, ctx: object) -> Observation:
    """The throwaway kind's probe; found by PROBES as this module's ``probe``."""
    raise NotImplementedError


@pytest.fixture
def throwaway() -> Iterator[None]:
    KINDS.register(probe=__name__)(ThrowawayCheck)
    try:
        yield
    finally:
        KINDS.unregister("throwaway")


def union_kinds(model: type[ProbeConfig]) -> set[str]:
    """The kinds ``checks:`` admits, read from the model's own field type."""
    (entry,) = typing.get_args(model.model_fields["checks"].annotation)
    return {kind_of(m) for m in typing.get_args(typing.get_args(entry)[0])}


def test_every_kind_in_the_config_union_has_a_probe() -> None:
    """The discriminated union names exactly the kinds of the probe table, and each
    kind's probe module has a probe function."""
    assert union_kinds(ProbeConfig) == set(PROBES) == set(KINDS)
    for kind in union_kinds(ProbeConfig):
        assert callable(PROBES[kind]), kind


@pytest.mark.usefixtures("throwaway")
def test_a_new_kind_is_picked_up_from_the_registry_alone() -> None:
    """A model registered with its probe module validates in a config and its probe is in
    PROBES, with no other list edited."""
    config = config_model().model_validate(
        {"checks": [{"name": "t", "kind": "throwaway", "nodes": [{"name": "n"}]}]}
    )
    (check,) = config.checks
    assert isinstance(check, ThrowawayCheck)
    assert config.check("t") is check
    assert "throwaway" in PROBES
    assert PROBES["throwaway"] is probe
    assert union_kinds(config_model()) == set(PROBES)


def test_a_kind_cannot_be_registered_twice() -> None:
    """Two models claiming one ``kind:`` would make the union ambiguous."""
    with pytest.raises(ValueError, match="registered twice"):
        KINDS.register(probe="probes.http")(KINDS["http"].model)
