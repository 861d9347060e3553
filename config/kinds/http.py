"""``kind: http``: one HTTP request to each node, and what its answer must be."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from config.checks import CheckBase, Node
from config.common import Model
from config.duration import Duration
from config.fields import (
    HeaderName,
    Headers,
    HidesUrl,
    HttpUrl,
    JsonScalar,
    MiB,
    TextPattern,
    WithReferences,
    shown_url,
    upper,
)
from config.registry import KINDS
from config.secrets import Secret, resolve_in_url
from config.signing import SignOptions

Method = Annotated[Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"], BeforeValidator(upper)]


class HttpNode(HidesUrl, Node):
    url: HttpUrl


_SPOKEN_VERSIONS = ("1.0", "1.1")


def _http_version(value: Any) -> Any:
    # YAML reads an unquoted 1.1 as a number, and blackbox_exporter writes "HTTP/1.1":
    # both mean the string "1.1" here.
    if isinstance(value, float | int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        value = value.strip().removeprefix("HTTP/").removeprefix("http/")
        if value not in _SPOKEN_VERSIONS:
            # Neither client offers HTTP/2 (no ALPN h2, no upgrade): an answer in any
            # other version than 1.x never comes, so the expectation could never hold.
            raise ValueError(
                f"HTTP version {value!r} is never spoken by the probe, which asks in "
                "HTTP/1.1 (accepted: 1.0, 1.1)"
            )
    return value


HttpVersion = Annotated[Literal["1.0", "1.1"], BeforeValidator(_http_version)]

HeaderPatterns = dict[HeaderName, TextPattern]
"""Response header name (any case) -> a regular expression searched in its value."""


def _one_name_once(patterns: HeaderPatterns) -> HeaderPatterns:
    # Header names are case-insensitive: Content-Type and content-type are one header,
    # and two patterns for it in one mapping is a slip, not two conditions.
    seen: dict[str, str] = {}
    for name in patterns:
        if name.lower() in seen:
            raise ValueError(
                f"header {name} is named twice ({seen[name.lower()]} and {name}): header "
                "names are case-insensitive"
            )
        seen[name.lower()] = name
    return patterns


class HttpExpect(Model):
    status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    """Accepted status codes; empty means any 2xx."""
    body_contains: str | None = None
    body_regex: TextPattern | None = None
    body_not_regex: TextPattern | None = None
    """A pattern the (decompressed) body must not match anywhere."""
    json_fields: dict[str, JsonScalar] = Field(default_factory=dict, alias="json")
    """Dotted paths into a JSON body and the value each must equal (``data.state: ok``)."""
    max_latency: Duration | None = None
    headers: Annotated[HeaderPatterns, AfterValidator(_one_name_once)] = Field(default_factory=dict)
    """Each header must be present, and one of its values (a header may come several
    times) must match the pattern; ``""`` asks for presence alone."""
    headers_not: Annotated[HeaderPatterns, AfterValidator(_one_name_once)] = Field(
        default_factory=dict
    )
    """No value of each header may match the pattern; a header that is absent passes
    (``""`` asks for its absence)."""
    tls: bool | None = None
    """Whether the final answer, after any redirects, must (true) or must not (false)
    have come over TLS; unset, it is not judged."""
    http_version: list[HttpVersion] = Field(default_factory=list)
    """Accepted versions of the answer's status line; empty means any."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @property
    def judges_headers(self) -> bool:
        """Whether the transports must hand back the answer's headers (a cost the plain
        client spares every other check)."""
        return bool(self.headers or self.headers_not)


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
    PlainSerializer(shown_url, return_type=str),
]
"""``http://host:port`` of a forward proxy; credentials in it are shown nowhere."""


class ProxyOptions(HidesUrl, Model):
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
    client: Literal["auto", "aiohttp"] = "auto"
    """Which transport carries the request (probes/http/): ``auto`` takes the plain one
    where it reads the answer as aiohttp would (plain ``http://`` to the node, no proxy,
    redirects or HEAD), aiohttp otherwise; ``aiohttp`` always, for a server that the plain
    one reads differently."""

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
    def _tls_can_hold(self) -> HttpCheckBase:
        # Without redirects the scheme of the node's URL decides expect.tls: a check
        # that could never pass is a slip to catch at load time.
        wanted = self.expect.tls
        if wanted is None or self.follow_redirects:
            return self
        for node in self.nodes:
            https = urlsplit(node.url).scheme == "https"
            if https != wanted:
                scheme = "https" if https else "http"
                raise ValueError(
                    f"expect.tls: {str(wanted).lower()} can never hold for node "
                    f"{node.name!r}: its url is {scheme}:// and follow_redirects is off"
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


@KINDS.register(probe="probes.http")
class HttpCheck(HttpCheckBase):
    kind: Literal["http"]
