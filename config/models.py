"""The configuration schema: frozen models, one sub-model per probe kind.

Runtime state (streaks, active node, last success) never lives here; these objects are
shared read-only by every check run and can be swapped whole on reload.
"""

from __future__ import annotations

import codecs
import ipaddress
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FilePath,
    ModelWrapValidatorHandler,
    PlainSerializer,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from config.common import ADDRESS, Model, Name, check_address, split_address
from config.dns_records import RecordType
from config.duration import Duration, format_duration
from config.outputs import Output, StreamOutput, check_outputs
from config.secrets import (
    Resolved,
    Secret,
    as_written,
    collect_references,
    resolve_in_escaped,
    resolve_in_text,
    resolve_in_url,
)
from config.tls import check_files, checking_once
from core.redact import redact_url

MiB = 1024 * 1024

# Bounded fields that both ``defaults:`` and a check may set: one definition each, so
# that a bad value is refused the same way wherever it is written.
PositiveDuration = Annotated[Duration, Field(gt=0)]
"""A duration that must be more than zero (a timeout, a deadline, the standby interval)."""
RunCount = Annotated[int, Field(ge=1, le=100)]
"""A number of consecutive runs (confirm_after, recover_after, failback_after)."""


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


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


class Defaults(Model):
    """Values every check inherits unless it sets the key itself (see CheckBase)."""

    interval: Duration = 30.0
    timeout: PositiveDuration = 5.0
    retries: Retries = Retries()
    confirm_after: RunCount = 2
    recover_after: RunCount = 2
    failback_after: RunCount = 3
    standby_interval: PositiveDuration = 120.0


# --- nodes -------------------------------------------------------------------------


def _check_http_url(url: str) -> str:
    # The parser's own messages quote the netloc, password included: never pass them on.
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("url cannot be parsed (a bracket or character out of place)") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("url must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("url has no host")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        raise ValueError("url has a bad port (it must be a number from 1 to 65535)") from None
    return url


def _check_listen(listen: str) -> str:
    if listen != "off":
        split_address(listen, any_port=True)  # port 0: the OS picks (tests)
    return listen


class Node(Model):
    name: Name


def _shown_url(url: str) -> str:
    return redact_url(as_written(url))


HttpUrl = Annotated[
    str,
    AfterValidator(resolve_in_url),
    AfterValidator(_check_http_url),
    PlainSerializer(_shown_url, return_type=str),
]
"""The real URL for the probes; reprs and dumps show it as written, without credentials
or secret-looking query parameters."""

WithReferences = Annotated[
    str, AfterValidator(resolve_in_text), PlainSerializer(as_written, return_type=str)
]
"""Text whose ``${env:}`` / ``${file:}`` references are resolved; dumps show them unresolved."""


def _check_proxy_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("url must be http://host:port (it cannot be parsed)") from None
    if parts.scheme != "http":
        # The probe speaks plain HTTP to the proxy (CONNECT then carries TLS end to end);
        # aiohttp cannot run TLS inside TLS to an https:// proxy.
        raise ValueError("proxy url must start with http://")
    if not parts.hostname or port is None:
        raise ValueError("proxy url must be http://host:port, with the port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("proxy url must be http://host:port, without a path or query")
    return url


ProxyUrl = Annotated[
    str,
    AfterValidator(resolve_in_url),
    AfterValidator(_check_proxy_url),
    PlainSerializer(_shown_url, return_type=str),
]
"""``http://host:port`` of a forward proxy; credentials in it are shown nowhere."""

Payload = Annotated[
    str, AfterValidator(resolve_in_escaped), PlainSerializer(as_written, return_type=str)
]
"""A TCP ``send:``: references resolved, values kept apart from the backslash escapes."""


Method = Annotated[Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"], BeforeValidator(_upper)]


class _HidesUrl(BaseModel):
    """Shows its ``url`` without credentials or secret query values in reprs."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, _shown_url(value) if name == "url" else value


class HttpNode(_HidesUrl, Node):
    url: HttpUrl


class AddressNode(Node):
    address: Annotated[str, AfterValidator(check_address)]

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]


# --- checks ------------------------------------------------------------------------


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


JsonScalar = str | int | float | bool | None


def _pattern(value: Any, *, as_bytes: bool) -> Any:
    if isinstance(value, str):
        try:
            return re.compile(value.encode("utf-8") if as_bytes else value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


TextPattern = Annotated[re.Pattern[str], BeforeValidator(lambda v: _pattern(v, as_bytes=False))]
BytesPattern = Annotated[re.Pattern[bytes], BeforeValidator(lambda v: _pattern(v, as_bytes=True))]


class HttpExpect(Model):
    status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    """Accepted status codes; empty means any 2xx."""
    body_contains: str | None = None
    body_regex: TextPattern | None = None
    json_fields: dict[str, JsonScalar] = Field(default_factory=dict, alias="json")
    """Dotted paths into a JSON body and the value each must equal (``data.state: ok``)."""
    max_latency: Duration | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _one_line(value: SecretStr) -> SecretStr:
    # A secret file with an inner newline would otherwise end the header early and
    # smuggle the rest in as headers of its own (or make aiohttp refuse every request).
    if any(c in value.get_secret_value() for c in "\r\n"):
        raise ValueError("header value contains a line break (CR or LF); it must be one line")
    return value


HeaderValue = Annotated[Secret, AfterValidator(_one_line)]


class ProxyOptions(_HidesUrl, Model):
    """The forward proxy an HTTP check goes through (``proxy:``)."""

    url: ProxyUrl
    """``http://host:port``; credentials may be written in it (``http://u:p@host:port``)."""
    username: WithReferences | None = None
    password: Secret | None = None

    @model_validator(mode="after")
    def _credentials(self) -> ProxyOptions:
        in_url = "@" in urlsplit(self.url).netloc
        if in_url and (self.username is not None or self.password is not None):
            raise ValueError(
                "give the proxy's credentials in url or in username/password, not both"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if self.username is not None and ":" in self.username:
            # Basic authentication joins user and password with a colon.
            raise ValueError("username must not contain ':'")
        return self

    @property
    def address(self) -> str:
        """``host:port``, the proxy as messages name it (never with credentials)."""
        return urlsplit(self.url).netloc.rpartition("@")[2]

    @property
    def endpoint(self) -> str:
        """The URL without credentials, which is what the HTTP client is given."""
        return f"http://{self.address}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        """(user, password) for Basic proxy authentication, from the fields or the url."""
        if self.username is not None:
            password = self.password.get_secret_value() if self.password else ""
            return str(self.username), password
        parts = urlsplit(self.url)
        if parts.username is None:
            return None
        return unquote(parts.username), unquote(parts.password or "")


TEMPLATE_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
"""One piece of a ``string_to_sign``: ``{{`` / ``}}`` (literal braces), ``{name}``, or a
lone brace (an error)."""

SIGN_FIELDS = frozenset(
    {"method", "path", "query", "body", "timestamp", "nonce", "app_key", "secret"}
)

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token


def _check_header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValueError("not a header name (letters, digits and !#$%&'*+-.^_`|~ only)")
    return name


HeaderName = Annotated[str, AfterValidator(_check_header_name)]
"""Written into the request as it stands: a space, colon or line break would forge a
header or end the request head early."""
Headers = dict[HeaderName, HeaderValue]


class SignHeaders(Model):
    """The request headers a signature travels in."""

    signature: HeaderName = "X-Signature"
    timestamp: HeaderName = "X-Timestamp"
    nonce: HeaderName = "X-Nonce"
    app_key: HeaderName = "X-App-Key"
    """Sent only when the ``sign:`` block has an ``app_key``."""


class SignOptions(Model):
    """Request signing (``sign:``): headers computed afresh for every attempt."""

    algorithm: Literal["hmac-sha256", "md5"] = "hmac-sha256"
    """``md5`` is a plain digest for legacy APIs: the secret must be in the string."""
    secret: Secret
    app_key: WithReferences | None = None
    string_to_sign: str = "{method}\n{path}\n{query}\n{body}\n{timestamp}\n{nonce}"
    timestamp_unit: Literal["s", "ms"] = "ms"
    encoding: Literal["hex", "hex-upper", "base64"] = "hex"
    headers: SignHeaders = SignHeaders()

    @field_validator("string_to_sign")
    @classmethod
    def _template(cls, text: str) -> str:
        for match in TEMPLATE_FIELD.finditer(text):
            piece, name = match.group(0), match.group(1)
            if piece in ("{{", "}}"):
                continue
            if name is None:
                raise ValueError("has a lone { or }; write {{ or }} for a literal brace")
            if name not in SIGN_FIELDS:
                known = ", ".join(sorted(SIGN_FIELDS))
                raise ValueError(f"unknown field {{{name}}}; the fields are {known}")
        return text

    @model_validator(mode="after")
    def _consistent(self) -> SignOptions:
        fields = {m.group(1) for m in TEMPLATE_FIELD.finditer(self.string_to_sign)}
        if self.algorithm == "md5" and "secret" not in fields:
            raise ValueError("algorithm md5 needs {secret} in string_to_sign (md5 has no key)")
        if self.algorithm != "md5" and "secret" in fields:
            raise ValueError(
                f"{self.algorithm} keys the digest with the secret; "
                "remove {secret} from string_to_sign"
            )
        if "app_key" in fields and self.app_key is None:
            raise ValueError("string_to_sign uses {app_key} but app_key is not set")
        names = [h.lower() for h in self.header_names()]
        if len(set(names)) != len(names):
            raise ValueError(
                "headers: signature, timestamp, nonce and app_key each need their own name"
            )
        return self

    def header_names(self) -> list[str]:
        """The headers this block sets on every request."""
        headers = self.headers
        names = [headers.signature, headers.timestamp, headers.nonce]
        return [*names, headers.app_key] if self.app_key is not None else names


class HttpCheckBase(CheckBase):
    """What every check that sends one HTTP request shares (kinds http and proxy)."""

    nodes: list[HttpNode] = Field(min_length=1)
    method: Method = "GET"
    headers: Headers = Field(default_factory=dict)
    """Every header value is treated as a secret (Authorization, tokens, cookies)."""
    body: WithReferences | None = None
    """Request body, for example a SOAP envelope for a WebService interface; references
    are resolved and only their values count as secret, not the whole body."""
    expect: HttpExpect = HttpExpect()
    max_body_bytes: int = Field(1 * MiB, ge=0, le=64 * MiB)
    follow_redirects: bool = False
    proxy: ProxyOptions | None = None
    """A forward proxy: CONNECT for https:// nodes, an absolute-URI request for http://."""
    sign: SignOptions | None = None

    @model_validator(mode="after")
    def _one_kind_of_credentials(self) -> HttpCheckBase:
        # aiohttp refuses a request that has both; say so at load time, not at 3 a.m.
        has_header = any(name.lower() == "authorization" for name in self.headers)
        with_userinfo = [n.name for n in self.nodes if "@" in urlsplit(n.url).netloc]
        if has_header and with_userinfo:
            raise ValueError(
                f"node {with_userinfo[0]!r} has credentials in its url and the check sets an "
                "Authorization header; use one or the other"
            )
        return self

    @model_validator(mode="after")
    def _signature_headers_free(self) -> HttpCheckBase:
        if self.sign is not None:
            own = {name.lower() for name in self.headers}
            for name in self.sign.header_names():
                if name.lower() in own:
                    raise ValueError(f"header {name} is set by both headers and sign")
        return self


class HttpCheck(HttpCheckBase):
    kind: Literal["http"]


class ProxyCheck(HttpCheckBase):
    """Watches a forward proxy by reaching a target through it."""

    kind: Literal["proxy"]
    proxy: ProxyOptions


class TcpExpect(Model):
    reply_regex: BytesPattern | None = None
    """A pattern the first bytes the peer sends must match (a middleware banner)."""


TcpProtocol = Literal["mysql", "postgres", "redis", "amqp", "ssh", "smtp"]
"""The ``protocol:`` presets of ``kind: tcp`` (the package probes/tcp_protocols/ speaks them)."""


class TcpCheck(CheckBase):
    kind: Literal["tcp"]
    nodes: list[AddressNode] = Field(min_length=1)
    send: Payload | None = None
    """Bytes to send once connected; backslash escapes such as \\r\\n are understood.
    References are resolved; their values are sent as they are, escapes and all."""
    expect: TcpExpect = TcpExpect()
    max_read_bytes: int = Field(4096, ge=1, le=1 * MiB)
    protocol: TcpProtocol | None = None
    """Speak just enough of this protocol to know the service answers (no credentials)."""

    @model_validator(mode="after")
    def _protocol_speaks_alone(self) -> TcpCheck:
        # A preset writes and reads its own conversation: bytes of the user's own, or a
        # pattern over bytes nobody can predict (binary greetings), would fight with it.
        if self.protocol is not None:
            own = {"send": self.send, "expect.reply_regex": self.expect.reply_regex}
            for key, value in own.items():
                if value is not None:
                    raise ValueError(
                        f"{key} cannot be combined with protocol: {self.protocol} "
                        "(the preset speaks the protocol itself)"
                    )
        return self

    @model_validator(mode="after")
    def _tls_only_for_postgres(self) -> TcpCheck:
        # Only the postgres preset upgrades its connection to TLS: a tls: block anywhere
        # else would promise a verification that never happens.
        if self.tls is not None and self.protocol != "postgres":
            what = f"protocol: {self.protocol}" if self.protocol else "a tcp check without one"
            raise ValueError(
                f"tls applies to protocol: postgres only (its SSL upgrade); {what} makes no "
                "TLS connection (to check a certificate, use kind: tls)"
            )
        return self

    @field_validator("send")
    @classmethod
    def _escapes_valid(cls, value: str | None) -> str | None:
        if value is not None:
            _unescape(value)
        return value

    @property
    def payload(self) -> bytes:
        return _unescape(self.send) if self.send else b""


def _unescape(text: str) -> bytes:
    """``"PING\\r\\n"`` as written in YAML single quotes -> the bytes b"PING\\r\\n"."""
    try:
        decoded: bytes = codecs.escape_decode(text.encode("utf-8"))[0]
        return decoded
    except ValueError as exc:
        raise ValueError(f"bad escape in send: {exc}") from None


class TlsCheck(CheckBase):
    kind: Literal["tls"]
    nodes: list[AddressNode] = Field(min_length=1)


# --- freshness: a dead man's switch on the newest sign of life ----------------------


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


class HttpSource(_HidesUrl, Model):
    """A timestamp read from a JSON field of a URL (a receiver's status page)."""

    type: Literal["http"]
    url: HttpUrl
    field: Annotated[str, StringConstraints(min_length=1)]
    """Dotted path into the JSON body (``data.last_callback_at``, ``items.0.time``)."""
    headers: Headers = Field(default_factory=dict)
    timezone: TimeZoneName = "UTC"
    max_body_bytes: int = Field(1 * MiB, ge=0, le=64 * MiB)

    def target(self, check: str) -> str:
        return _shown_url(self.url)


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


def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]


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


class FreshnessCheck(CheckBase):
    """Healthy while the newest sign of life is younger than ``max_age``."""

    kind: Literal["freshness"]
    max_age: PositiveDuration
    max_future: Annotated[Duration, Field(ge=0)] = 60.0
    """How far ahead of our clock a timestamp may be (clock skew) before it is suspect."""
    source: FreshnessSource
    # Not written in the file: filled in from the source (see _source_node); left out of
    # dumps so that a dumped config validates again.
    nodes: tuple[SourceNode, ...] = Field(default=(), exclude=True)

    @field_validator("nodes", mode="before")
    @classmethod
    def _no_nodes(cls, value: Any) -> Any:
        raise ValueError(
            "a freshness check has no nodes: its source says where the sign of life is read"
        )

    @model_validator(mode="after")
    def _source_node(self) -> FreshnessCheck:
        node = SourceNode(name=self.source.type, target=self.source.target(self.name))
        # The model is frozen; this is its construction, the one moment it may be set.
        self.__dict__["nodes"] = (node,)
        return self


# --- kind: dns ---------------------------------------------------------------------

DNS_PORT = 53


def split_server(address: str) -> tuple[str, int]:
    """A DNS server as ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address;
    the port is 53 unless given."""
    text = address.strip()
    if ADDRESS.match(text):
        return split_address(text)
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare)), DNS_PORT
    except ValueError:
        pass
    if not bare or any(c in bare for c in ":[]/") or any(c.isspace() for c in bare):
        raise ValueError(
            "address must be a host, host:port, [IPv6]:port or an IPv6 address (port 53 if omitted)"
        )
    return bare, DNS_PORT


def _check_server(address: str) -> str:
    split_server(address)
    return address


class DnsNode(Node):
    address: Annotated[str, AfterValidator(_check_server)] | None = None
    """The server to ask; without one, the system resolver (the servers in resolv.conf)."""

    @property
    def server(self) -> tuple[str, int] | None:
        return split_server(self.address) if self.address is not None else None


SYSTEM_RESOLVER = DnsNode(name="system")
"""The node of a dns check that names no servers."""

Rcode = Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class DnsQuery(Model):
    name: str = Field(min_length=1)
    """Asked as written (absolute: no search domains). An IP address with type PTR is
    turned into its reverse name (127.0.0.1 -> 1.0.0.127.in-addr.arpa)."""
    type: Annotated[RecordType, BeforeValidator(_upper)] = "A"
    recursion: bool = True
    """Sets the RD flag; turn it off to ask an authoritative server about its own zone."""

    @model_validator(mode="after")
    def _valid_name(self) -> DnsQuery:
        try:
            literal = ipaddress.ip_address(self.name)
        except ValueError:
            literal = None
        if literal is not None and self.type != "PTR":
            raise ValueError(f"name {self.name} is an address; a reverse lookup needs type: PTR")
        if literal is None:
            import dns.exception
            import dns.name

            try:
                dns.name.from_text(self.name)
            except dns.exception.DNSException as exc:
                raise ValueError(f"name {self.name!r} is not a valid domain name: {exc}") from None
        return self


class DnsExpect(Model):
    rcode: Annotated[Rcode, BeforeValidator(_upper)] = "NOERROR"
    values: list[str] | None = None
    """The answer must hold exactly these records of the query's type, in any order."""
    contains: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list)
    """Records of the query's type that must be among the answers (others may be too)."""
    max_latency: PositiveDuration | None = None


class DnsCheck(CheckBase):
    kind: Literal["dns"]
    query: DnsQuery
    transport: Literal["udp", "tcp"] = "udp"
    """udp retries over TCP when the answer comes back truncated, as resolvers do."""
    expect: DnsExpect = DnsExpect()
    nodes: list[DnsNode] = Field(default_factory=lambda: [SYSTEM_RESOLVER], min_length=1)

    @model_validator(mode="after")
    def _values_of_the_type(self) -> DnsCheck:
        from config.dns_records import expected

        wanted = self.expect
        if wanted.rcode != "NOERROR" and (wanted.values is not None or wanted.contains):
            raise ValueError(
                f"expect.values and expect.contains need rcode NOERROR, not {wanted.rcode}: "
                "an error answer has no records"
            )
        for field, values in (("values", wanted.values or []), ("contains", wanted.contains)):
            for index, value in enumerate(values):
                try:
                    expected(self.query.type, value)
                except ValueError as exc:
                    raise ValueError(f"expect.{field}[{index}]: {exc}") from None
        return self


# --- kind: icmp --------------------------------------------------------------------


def parse_loss(value: object) -> float:
    """``20%`` or ``0.2`` -> 0.2; 100% is refused, as a check with it could never fail."""
    text = value.strip() if isinstance(value, str) else value
    try:
        if isinstance(text, bool):
            raise ValueError
        if isinstance(text, str) and text.endswith("%"):
            loss = float(text[:-1]) / 100
        elif isinstance(text, int | float | str):
            loss = float(text)
            if loss > 1:
                raise ValueError
        else:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{value!r} is not a loss rate; write a percentage (20%) or a fraction (0.2)"
        ) from None
    if not 0 <= loss < 1:
        raise ValueError("max_loss must be from 0% to below 100% (100% could never fail)")
    return loss


def _format_loss(loss: float) -> str:
    return f"{loss * 100:g}%"


LossRate = Annotated[
    float, BeforeValidator(parse_loss), PlainSerializer(_format_loss, return_type=str)
]


def _check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or any(c in host for c in ":[]/") or any(c.isspace() for c in host):
            raise ValueError("host must be a host name or an IP address, without a port") from None
    return host


class IcmpNode(Node):
    host: Annotated[str, AfterValidator(_check_host)]


class IcmpExpect(Model):
    max_loss: LossRate | None = None
    """The share of echoes that may go unanswered; by default one reply is enough."""
    max_rtt: PositiveDuration | None = None
    """No reply may take longer."""
    max_avg_rtt: PositiveDuration | None = None


class IcmpCheck(CheckBase):
    kind: Literal["icmp"]
    nodes: list[IcmpNode] = Field(min_length=1)
    count: int = Field(3, ge=1, le=100)
    """Echoes per attempt."""
    echo_interval: Annotated[Duration, Field(ge=0.01)] = 0.5
    """From one echo to the next (``interval`` is how often the check runs)."""
    reply_timeout: PositiveDuration = 1.0
    """How long an echo waits for its reply; a later reply counts as lost."""
    expect: IcmpExpect = IcmpExpect()

    @model_validator(mode="after")
    def _echoes_fit_the_timeout(self) -> IcmpCheck:
        longest = (self.count - 1) * max(self.echo_interval, self.reply_timeout)
        longest += self.reply_timeout
        if longest > self.timeout:
            raise ValueError(
                f"{self.count} echoes can take up to {format_duration(longest)} "
                f"(echo_interval {format_duration(self.echo_interval)}, reply_timeout "
                f"{format_duration(self.reply_timeout)}), more than timeout "
                f"{format_duration(self.timeout)}; lower count or raise timeout"
            )
        return self


Check = Annotated[
    HttpCheck | ProxyCheck | TcpCheck | TlsCheck | FreshnessCheck | DnsCheck | IcmpCheck,
    Field(discriminator="kind"),
]
"""One entry of ``checks:``; ``kind`` picks the model (and the probe that runs it)."""

CHECK_MODELS: tuple[type[CheckBase], ...] = (
    HttpCheck,
    ProxyCheck,
    TcpCheck,
    TlsCheck,
    FreshnessCheck,
    DnsCheck,
    IcmpCheck,
)


def kind_of(model: type[CheckBase]) -> str:
    """The ``kind:`` value that selects a check model."""
    literal = model.model_fields["kind"].annotation
    return str(literal.__args__[0])  # type: ignore[union-attr]


# --- the whole file ----------------------------------------------------------------


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

    _referenced: frozenset[str] = PrivateAttr(default=frozenset())
    """Every value a ``${env:}`` / ``${file:}`` reference resolved to, for scrubbing."""
    _by_name: dict[str, CheckBase] = PrivateAttr(default_factory=dict)

    @property
    def referenced_secrets(self) -> frozenset[str]:
        return self._referenced

    @model_validator(mode="wrap")
    @classmethod
    def _one_validation_pass(
        cls, data: Any, handler: ModelWrapValidatorHandler[ProbeConfig]
    ) -> ProbeConfig:
        # Here rather than in the loader so that any way of building a config (the file,
        # the environment, a test's model_validate) records what its references resolved
        # to, and checks each distinct set of TLS files once.
        with collect_references() as found, checking_once():
            config = handler(data)
        config._referenced = frozenset(found)
        _share_equal_parts(config)  # first: the walk below then visits shared parts once
        _share_fields_sets(config, {}, set())
        return config

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        """Copy ``defaults:`` into every check that does not set the key itself."""
        if not isinstance(data, dict):
            return data
        defaults = data.get("defaults") or {}
        checks = data.get("checks")
        if not isinstance(defaults, dict) or not isinstance(checks, list):
            return data
        try:
            Defaults.model_validate(defaults)
        except ValidationError:
            return data  # reported once, at defaults.<key>, not again at every check
        merged = []
        for check in checks:
            if isinstance(check, dict):
                check = {k: v for k, v in defaults.items() if k in _INHERITED} | check
                own_retries, default_retries = check.get("retries"), defaults.get("retries")
                if isinstance(own_retries, dict) and isinstance(default_retries, dict):
                    check["retries"] = default_retries | own_retries
            merged.append(check)
        return data | {"checks": merged}

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
        cycle = _find_cycle({c.name: c.depends_on for c in checks})
        if cycle:
            raise ValueError("depends_on forms a cycle: " + " -> ".join(cycle))
        return checks

    def selected(self, names: Iterable[str] | None = None) -> list[CheckBase]:
        """The checks so named, in the order given (KeyError if one is not); all when
        ``names`` is None."""
        return [self.check(n) for n in names] if names is not None else list(self.checks)

    def check(self, name: str) -> CheckBase:
        """The check called ``name`` (KeyError if none); the daemon asks on every run."""
        # Read from pydantic's private storage directly: the attribute itself goes
        # through BaseModel.__getattr__, a measurable cost at hundreds of runs a second.
        private = self.__pydantic_private__
        assert private is not None
        by_name: dict[str, CheckBase] = private["_by_name"]
        if not by_name:  # a new dict, not filled in place: model_copy shares the old one
            by_name = private["_by_name"] = {check.name: check for check in self.checks}
        return by_name[name]


_INHERITED = frozenset(Defaults.model_fields)


def _share_equal_parts(config: ProbeConfig) -> None:
    """One instance of each distinct sub-model (retries, expect, tls, ...) for all the
    checks that have an equal one: 10,000 checks written alike held 10,000 equal
    ``retries:`` and ``expect:`` models. Frozen, so shared is the same as equal."""
    shared: dict[Any, BaseModel] = {}
    for check in config.checks:
        for name, value in check.__dict__.items():
            if not isinstance(value, BaseModel):
                continue
            key = _shape(value)
            if key is None:
                continue
            check.__dict__[name] = shared.setdefault(key, value)


def _shape(value: Any) -> Any:
    """A hashable stand-in for a value that is equal exactly when the values are; None
    when some part cannot be hashed."""
    if isinstance(value, BaseModel):
        parts = tuple((k, _shape(v)) for k, v in value.__dict__.items())
        return (type(value), parts) if None not in (p[1] for p in parts) else None
    if isinstance(value, (list, tuple)):
        items = tuple(_shape(v) for v in value)
        return (type(value), items) if None not in items else None
    if isinstance(value, dict):
        entries = tuple(((type(k), k), _shape(v)) for k, v in value.items())
        return (dict, entries) if None not in (e[1] for e in entries) else None
    if isinstance(value, Resolved):  # equal text, but written as another reference
        return (Resolved, str(value), value.written)
    if isinstance(value, float):  # 0.0 == -0.0, and both hash alike
        return (float, value, math.copysign(1.0, value))
    try:
        hash(value)
    except TypeError:
        return None
    return (type(value), value)


def _share_fields_sets(value: Any, shared: dict[frozenset[str], set[str]], seen: set[int]) -> None:
    """Give models that set the same fields one ``__pydantic_fields_set__`` between them.

    pydantic keeps a set of the names each instance was given; every check, node and
    sub-model had its own, 14 MB of sets for 10,000 checks holding a handful of names
    each. The models are frozen, so nothing adds to a set once it is made (model_copy
    copies it first): sharing equal ones changes nothing but the memory.
    """
    if isinstance(value, BaseModel):
        if id(value) in seen:  # a part shared by many checks (_share_equal_parts)
            return
        seen.add(id(value))
        names = value.__pydantic_fields_set__
        key = frozenset(names)
        object.__setattr__(value, "__pydantic_fields_set__", shared.setdefault(key, names))
        items: Any = value.__dict__.values()
    elif isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return
    for item in items:
        if isinstance(item, (BaseModel, list, tuple, dict)):
            _share_fields_sets(item, shared, seen)


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """One dependency cycle as a path (a -> b -> a), or an empty list."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return []
        path.append(name)
        for parent in graph.get(name, ()):
            if cycle := visit(parent):
                return cycle
        path.pop()
        done.add(name)
        return []

    for name in graph:
        if cycle := visit(name):
            return cycle
    return []
