"""``kind: freshness``: a dead man's switch on the newest sign of life."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from config.checks import CheckBase, Node
from config.common import Model
from config.duration import Duration
from config.fields import (
    AbsolutePath,
    Headers,
    HidesUrl,
    HttpUrl,
    MiB,
    PositiveDuration,
    TextPattern,
    shown_url,
)
from config.registry import KINDS
from config.secrets import Secret


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as UTC or Asia/Shanghai)"
        ) from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]
"""An IANA zone name; the zone of timestamps written without an offset."""


class PushSource(Model):
    """The receiver posts ``/heartbeat/<check>`` to the daemon whenever it processed a callback."""

    type: Literal["push"]
    token: Secret
    """Bearer token the poster must present; compared in constant time."""

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < _MIN_TOKEN:
            raise ValueError(f"token must be at least {_MIN_TOKEN} characters (a random string)")
        return value

    def target(self, check: str) -> str:
        return f"POST /heartbeat/{check}"


_MIN_TOKEN = 16


class HttpSource(HidesUrl, Model):
    """A timestamp read from a JSON field of a URL (a receiver's status page)."""

    type: Literal["http"]
    url: HttpUrl
    field: Annotated[str, StringConstraints(min_length=1)]
    """Dotted path into the JSON body (``data.last_callback_at``, ``items.0.time``)."""
    headers: Headers = Field(default_factory=dict)
    timezone: TimeZoneName = "UTC"
    max_body_bytes: int = Field(1 * MiB, ge=0, le=64 * MiB)

    def target(self, check: str) -> str:
        return shown_url(self.url)


def _check_dsn(dsn: SecretStr) -> SecretStr:
    # The parser's own messages would quote the DSN, password and all: never pass them on.
    try:
        parts = urlsplit(dsn.get_secret_value())
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(
            "dsn cannot be parsed as a URL (scheme://user:password@host:port/db)"
        ) from None
    if parts.scheme not in _DSN_SCHEMES or not parts.hostname:
        raise ValueError("dsn must be a URL: postgresql://... or mysql://..., with a host")
    return dsn


_DSN_SCHEMES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
}
_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}


class SqlSource(Model):
    """``SELECT max(received_at) ...`` run read-only, bounded by the check's timeout."""

    type: Literal["sql"]
    driver: Literal["postgres", "mysql"]
    """postgres: PostgreSQL (asyncpg); mysql: MySQL or MariaDB (aiomysql)."""
    dsn: Annotated[Secret, AfterValidator(_check_dsn)] | None = None
    """``postgresql://user:password@host:5432/db``; a secret as a whole (use a reference)."""
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = None
    password: Secret | None = None
    database: str | None = None
    query: Annotated[str, StringConstraints(min_length=1)]
    """One statement whose first row's first column is the newest sign of life."""
    timezone: TimeZoneName = "UTC"

    @model_validator(mode="after")
    def _dsn_or_host(self) -> SqlSource:
        parts = (self.host, self.port, self.user, self.password, self.database)
        if self.dsn is not None and any(p is not None for p in parts):
            raise ValueError("give either dsn or host/port/user/password/database, not both")
        if self.dsn is None and self.host is None:
            raise ValueError("needs dsn or host")
        if self.dsn is not None:
            scheme = urlsplit(self.dsn.get_secret_value()).scheme
            if _DSN_SCHEMES[scheme] != self.driver:
                raise ValueError(f"dsn scheme {scheme}:// does not match driver {self.driver}")
        return self

    def target(self, check: str) -> str:
        if self.dsn is not None:
            parts = urlsplit(self.dsn.get_secret_value())
            host, port, path = parts.hostname, parts.port, parts.path
        else:
            host, port, path = self.host, self.port, "/" + (self.database or "")
        shown = f"[{host}]" if host and ":" in host else host
        return f"{self.driver}://{shown}:{port or _DEFAULT_PORTS[self.driver]}{path}"


# A line that starts with a timestamp: RFC 3339 (a space for the T is common in logs)
# or unix seconds / milliseconds.
DEFAULT_LINE_PATTERN = (
    r"^\s*(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:[Zz]|[+-]\d{2}:?\d{2})?"
    r"|\d{9,}(?:\.\d+)?)"
)


class FileSource(Model):
    """A file's modification time, or a timestamp in its last line."""

    type: Literal["file"]
    path: AbsolutePath
    read: Literal["mtime", "last_line"] = "mtime"
    pattern: TextPattern | None = None
    """For ``last_line``: where the timestamp is (its first group, else the whole match);
    by default a timestamp at the start of the line."""
    timezone: TimeZoneName = "UTC"

    @model_validator(mode="after")
    def _pattern_needs_last_line(self) -> FileSource:
        if self.pattern is not None and self.read != "last_line":
            raise ValueError("pattern applies to read: last_line only")
        return self

    def target(self, check: str) -> str:
        return str(self.path)


FreshnessSource = Annotated[
    PushSource | HttpSource | SqlSource | FileSource, Field(discriminator="type")
]


class SourceNode(Node):
    """The one node of a freshness check, named after its source type (push, http, ...),
    so the runner, the state and the metrics treat it like any other node."""

    target: str
    """Where the sign of life is read from, safe to print."""


@KINDS.register(probe="probes.freshness")
class FreshnessCheck(CheckBase):
    """Healthy while the newest sign of life is younger than ``max_age``."""

    kind: Literal["freshness"]
    max_age: PositiveDuration
    max_future: Annotated[Duration, Field(ge=0)] = 60.0
    """How far ahead of our clock a timestamp may be (clock skew) before it is suspect."""
    source: FreshnessSource
    # Not written in the file: made from the source before the check is (_source_node);
    # left out of dumps so that a dumped config validates again.
    nodes: tuple[SourceNode, ...] = Field(default=(), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _source_node(cls, data: Any) -> Any:
        # The source is validated here, once, and handed on made along with its node, so
        # that the check is built whole (a frozen model is never filled in afterwards).
        if not isinstance(data, dict) or "nodes" in data or "source" not in data:
            return data  # the fields' own validation says what is wrong, and where
        try:
            source = _SOURCE.validate_python(data["source"])
        except ValidationError:
            return data  # reported at source.<key> by the field's own validation
        node = SourceNode(name=source.type, target=source.target(str(data.get("name"))))
        return data | {"source": source, "nodes": _FromSource((node,))}

    @field_validator("nodes", mode="before")
    @classmethod
    def _no_nodes(cls, value: Any) -> Any:
        if type(value) is _FromSource:
            return value
        raise ValueError(
            "a freshness check has no nodes: its source says where the sign of life is read"
        )


class _FromSource(tuple[SourceNode, ...]):
    """The nodes _source_node made, told apart from nodes written in the file."""


_SOURCE: TypeAdapter[PushSource | HttpSource | SqlSource | FileSource] = TypeAdapter(
    FreshnessSource
)
