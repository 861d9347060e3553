"""What every kind of check shares: the check base, its nodes, retries and TLS options.

Each kind's own model lives in config/kinds/<kind>.py and extends CheckBase.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, Field, FilePath, model_validator

from config.common import Model, Name, check_address, split_address
from config.duration import Duration
from config.fields import PositiveDuration, RunCount
from config.secrets import Secret
from config.tls import check_files


class Retries(Model):
    attempts: int = Field(3, ge=1, le=10)
    backoff: Duration = 0.2
    """First wait between attempts; it doubles each time, with jitter."""
    max_backoff: Duration = 5.0


class TlsOptions(Model):
    """Applies to every TLS connection a check makes, whatever its kind."""

    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    key_password: Secret | None = None
    """Decrypts an encrypted key (in key_file, or in cert_file when there is no key_file)."""
    server_name: str | None = None
    verify: bool = True
    warn_days: int = Field(30, ge=0)
    crit_days: int = Field(7, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> TlsOptions:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        if self.key_password and not self.cert_file:
            raise ValueError("key_password needs cert_file")
        if self.crit_days > self.warn_days:
            raise ValueError("crit_days must not exceed warn_days")
        return self

    @model_validator(mode="after")
    def _files_usable(self) -> TlsOptions:
        check_files(self)  # a bad file is a config error, not an outage at probe time
        return self


class Node(Model):
    name: Name


class AddressNode(Node):
    address: Annotated[str, AfterValidator(check_address)]

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]


class CheckBase(Model):
    kind: str
    name: Name
    title: str = ""
    interval: Duration = 30.0
    timeout: PositiveDuration = 5.0
    """Bounds each attempt; a node's attempts together never exceed ``deadline``."""
    deadline: PositiveDuration | None = None
    """Bound on one node's attempts and backoff; by default attempts x timeout + backoffs."""
    retries: Retries = Retries()
    tls: TlsOptions | None = None
    confirm_after: RunCount = 2
    """Consecutive failed runs before the daemon calls the check (or a node) down."""
    recover_after: RunCount = 2
    """Consecutive good runs before it is up again."""
    failback_after: RunCount = 3
    """Consecutive good runs of the preferred node before traffic moves back to it."""
    standby_interval: PositiveDuration = 120.0
    """How often the daemon probes alternates that are not serving."""
    depends_on: list[Name] = Field(default_factory=list)
    """Checks this one needs (the forward proxy, say): while one is down, this is unreachable."""
    nodes: Sequence[Node]
    """Ordered: the first is preferred, the rest are alternates."""

    @model_validator(mode="after")
    def _unique_nodes(self) -> CheckBase:
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"node name {node.name!r} is used twice in this check")
            seen.add(node.name)
        return self

    def node_deadline(self) -> float:
        if self.deadline is not None:
            return self.deadline
        if self.retries.attempts == 1:  # asked on every run; most checks do not retry
            return self.timeout
        # The runner waits min(backoff * 2**i + uniform(0, backoff), max_backoff) before
        # attempt i + 2; room for the longest such wait leaves the last attempt its
        # whole timeout.
        backoff, cap = self.retries.backoff, self.retries.max_backoff
        waits: float = sum(
            min(backoff * 2**i + backoff, cap) for i in range(self.retries.attempts - 1)
        )
        return self.retries.attempts * self.timeout + waits
