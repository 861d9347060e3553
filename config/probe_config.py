"""The root of the config file: ``defaults:``, ``checks:`` and the daemon's settings.

Runtime state (streaks, active node, last success) never lives here; these objects are
shared read-only by every check run and can be swapped whole on reload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import (
    AfterValidator,
    Field,
    ModelWrapValidatorHandler,
    create_model,
    field_validator,
    model_validator,
)

from config.checks import CheckBase
from config.common import Model, split_address
from config.defaults import Defaults, merge_defaults
from config.dependencies import find_cycle
from config.fields import AbsolutePath
from config.kinds import KINDS
from config.outputs import Output, StreamOutput, check_outputs
from config.secrets import collect_references, references_so_far
from config.sharing import share_parts
from config.tls import checking_once


def _check_listen(listen: str) -> str:
    if listen != "off":
        split_address(listen, any_port=True)  # port 0: the OS picks (tests)
    return listen


if TYPE_CHECKING:
    Check = CheckBase
else:
    Check = KINDS.union()
"""One entry of ``checks:``; ``kind`` picks the model (and the probe that runs it), from
the kinds in config/registry.py."""


_STDERR: Output = StreamOutput(type="stderr")


class ProbeConfig(Model):
    """The root of the config file. Environment variables ``PROBE_A__B`` override ``a.b``
    (config/env.py merges them in before validation)."""

    defaults: Defaults = Defaults()
    checks: list[Check] = Field(min_length=1)
    concurrency: int = Field(200, ge=1, le=10_000)
    """How many checks run at once; the rest wait for a slot."""
    listen: Annotated[str, AfterValidator(_check_listen)] = "127.0.0.1:9640"
    """The daemon's HTTP endpoint (metrics, status, health); "off" disables it."""
    outputs: list[Output] = Field(default_factory=lambda: [_STDERR])
    """Where the daemon's events go (docs/events.md); by default JSON lines on stderr."""
    state_dir: AbsolutePath = Path("/var/lib/hotline-probe")
    """Where the daemon keeps what must outlive it (push heartbeats); the systemd unit's
    StateDirectory=. ``probe`` reads heartbeats from here too."""

    # Derived while the model is made (model_post_init), kept in slots beside the fields:
    # the index check() reads on every run (a slot read takes 70 ns, a pydantic private
    # attribute 2.6 us), and every value a ``${env:}`` / ``${file:}`` reference resolved
    # to, for scrubbing.
    __slots__ = ("_by_name", "_referenced")
    if TYPE_CHECKING:
        _by_name: dict[str, CheckBase]
        _referenced: frozenset[str]

    @property
    def referenced_secrets(self) -> frozenset[str]:
        return self._referenced

    def model_post_init(self, context: Any) -> None:
        self._derive(references_so_far())  # run inside _one_validation_pass's collection

    def _derive(self, referenced: frozenset[str]) -> None:
        self._by_name = {check.name: check for check in self.checks}
        self._referenced = referenced

    # Copies are made without model_post_init and without the slots: derive them again.
    def __copy__(self) -> Self:
        copied = super().__copy__()
        copied._derive(self._referenced)
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        copied = super().__deepcopy__(memo)
        copied._derive(self._referenced)
        return copied

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        copied._derive(self._referenced)  # ``update`` may have brought other checks
        return copied

    @model_validator(mode="wrap")
    @classmethod
    def _one_validation_pass(
        cls, data: Any, handler: ModelWrapValidatorHandler[ProbeConfig]
    ) -> ProbeConfig:
        # Here rather than in the loader so that any way of building a config (the file,
        # the environment, a test's model_validate) records what its references resolved
        # to, and checks each distinct set of TLS files once.
        with collect_references(), checking_once():
            config = handler(data)
        share_parts(config)
        return config

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        """Copy ``defaults:`` into every check that does not set the key itself."""
        return merge_defaults(data)

    @field_validator("outputs")
    @classmethod
    def _outputs_apart(cls, outputs: list[Output]) -> list[Output]:
        check_outputs(outputs)
        return outputs

    @field_validator("checks")
    @classmethod
    def _unique_names(cls, checks: list[CheckBase]) -> list[CheckBase]:
        first: dict[str, int] = {}
        for index, check in enumerate(checks):
            if check.name in first:
                raise ValueError(
                    f"check name {check.name!r} is used by checks[{first[check.name]}] "
                    f"and checks[{index}]"
                )
            first[check.name] = index
        return checks

    @field_validator("checks")
    @classmethod
    def _dependencies_resolve(cls, checks: list[CheckBase]) -> list[CheckBase]:
        index = {check.name: i for i, check in enumerate(checks)}
        for i, check in enumerate(checks):
            for parent in check.depends_on:
                if parent not in index:
                    raise ValueError(f"checks[{i}].depends_on names unknown check {parent!r}")
                if parent == check.name:
                    raise ValueError(f"checks[{i}].depends_on names the check itself")
        cycle = find_cycle({c.name: c.depends_on for c in checks})
        if cycle:
            raise ValueError("depends_on forms a cycle: " + " -> ".join(cycle))
        return checks

    def selected(self, names: Iterable[str] | None = None) -> list[CheckBase]:
        """The checks so named, in the order given (KeyError if one is not); all when
        ``names`` is None."""
        return [self.check(n) for n in names] if names is not None else list(self.checks)

    def check(self, name: str) -> CheckBase:
        """The check called ``name`` (KeyError if none); the daemon asks on every run."""
        return self._by_name[name]


def config_model() -> type[ProbeConfig]:
    """ProbeConfig over the kinds registered now. ProbeConfig itself was made over the
    kinds of config/kinds/ when this module was imported; a kind registered later (a
    test's throwaway one) needs a model of its own."""
    entry = KINDS.union()
    checks: Any = (list[entry], Field(min_length=1))  # type: ignore[valid-type]
    made: type[ProbeConfig] = create_model("ProbeConfig", __base__=ProbeConfig, checks=checks)
    return made
