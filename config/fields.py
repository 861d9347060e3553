"""Field types the kinds share: URLs, headers, patterns, bounded numbers.

Each is validated (and shown in dumps) the same way wherever a kind uses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, PlainSerializer, SecretStr

from config.duration import Duration
from config.secrets import Secret, as_written, resolve_in_text, resolve_in_url
from core.redact import redact_url

MiB = 1024 * 1024

# Bounded fields that both ``defaults:`` and a check may set: one definition each, so
# that a bad value is refused the same way wherever it is written.
PositiveDuration = Annotated[Duration, Field(gt=0)]
"""A duration that must be more than zero (a timeout, a deadline, the standby interval)."""
RunCount = Annotated[int, Field(ge=1, le=100)]
"""A number of consecutive runs (confirm_after, recover_after, failback_after)."""


def upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def check_http_url(url: str) -> str:
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


def shown_url(url: str) -> str:
    return redact_url(as_written(url))


HttpUrl = Annotated[
    str,
    AfterValidator(resolve_in_url),
    AfterValidator(check_http_url),
    PlainSerializer(shown_url, return_type=str),
]
"""The real URL for the probes; reprs and dumps show it as written, without credentials
or secret-looking query parameters."""

WithReferences = Annotated[
    str, AfterValidator(resolve_in_text), PlainSerializer(as_written, return_type=str)
]
"""Text whose ``${env:}`` / ``${file:}`` references are resolved; dumps show them unresolved."""


class HidesUrl(BaseModel):
    """Shows its ``url`` without credentials or secret query values in reprs."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, shown_url(value) if name == "url" else value


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


def _one_line(value: SecretStr) -> SecretStr:
    # A secret file with an inner newline would otherwise end the header early and
    # smuggle the rest in as headers of its own (or make aiohttp refuse every request).
    if any(c in value.get_secret_value() for c in "\r\n"):
        raise ValueError("header value contains a line break (CR or LF); it must be one line")
    return value


HeaderValue = Annotated[Secret, AfterValidator(_one_line)]


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token


def _check_header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValueError("not a header name (letters, digits and !#$%&'*+-.^_`|~ only)")
    return name


HeaderName = Annotated[str, AfterValidator(_check_header_name)]
"""Written into the request as it stands: a space, colon or line break would forge a
header or end the request head early."""
Headers = dict[HeaderName, HeaderValue]


def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]
