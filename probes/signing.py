"""Request signing (``sign:``): the headers a signed API wants, computed per attempt.

Every attempt gets a fresh timestamp (from ``ctx.clock``) and nonce (``ctx.nonce``), as
a server that rejects replays expects. The string to sign is the check's template with
the request's method, path, canonical query, body, timestamp and nonce filled in; it is
digested with HMAC-SHA256 keyed by the secret, or with plain MD5 over a string that
holds the secret (legacy APIs). Neither the secret nor the string ever leaves here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime
from urllib.parse import quote, unquote_plus

from yarl import URL

from config.signing import TEMPLATE_FIELD, SignOptions

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def signature_headers(
    options: SignOptions,
    *,
    method: str,
    url: str,
    body: str | None,
    now: datetime,
    nonce: str,
) -> dict[str, str]:
    """The headers to add to one request: signature, timestamp, nonce (and app key)."""
    timestamp = str(epoch(now, options.timestamp_unit))
    fields = {
        "method": method.upper(),
        "path": URL(url).raw_path,  # as sent on the request line: percent-encoded
        "query": canonical_query(URL(url).raw_query_string),
        "body": body or "",
        "timestamp": timestamp,
        "nonce": nonce,
        "app_key": str(options.app_key or ""),
        "secret": options.secret.get_secret_value(),
    }
    names = options.headers
    headers = {
        names.signature: sign(options, render(options.string_to_sign, fields)),
        names.timestamp: timestamp,
        names.nonce: nonce,
    }
    if options.app_key is not None:
        headers[names.app_key] = str(options.app_key)
    return headers


def epoch(now: datetime, unit: str) -> int:
    """Whole seconds or milliseconds since 1970 (integer arithmetic: no float rounding)."""
    elapsed = now - _EPOCH
    micros = (elapsed.days * 86_400 + elapsed.seconds) * 1_000_000 + elapsed.microseconds
    return micros // (1_000 if unit == "ms" else 1_000_000)


def canonical_query(raw_query: str) -> str:
    """The query in one spelling whatever the URL's: decoded, each name and value
    percent-encoded again (RFC 3986: all but ``A-Z a-z 0-9 - _ . ~``, as UTF-8 ``%XX``),
    pairs sorted by name then value, joined ``name=value`` with ``&``."""
    pairs = []
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((_encode(_decode(name)), _encode(_decode(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _decode(text: str) -> str:
    return unquote_plus(text)  # a form-style "+" is a space, as servers read it


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def render(template: str, fields: dict[str, str]) -> str:
    """Fill ``{name}`` fields (validated at load); ``{{`` and ``}}`` are literal braces."""

    def piece(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole in ("{{", "}}"):
            return whole[0]
        return fields[match.group(1)]

    return TEMPLATE_FIELD.sub(piece, template)


def sign(options: SignOptions, text: str) -> str:
    data = text.encode("utf-8")
    if options.algorithm == "md5":
        digest = hashlib.md5(data, usedforsecurity=False).digest()
    else:
        key = options.secret.get_secret_value().encode("utf-8")
        digest = hmac.new(key, data, hashlib.sha256).digest()
    if options.encoding == "base64":
        return base64.b64encode(digest).decode("ascii")
    return digest.hex().upper() if options.encoding == "hex-upper" else digest.hex()
