"""Request signing (``sign:``) of the HTTP kinds: the block and its template fields."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from config.common import Model
from config.fields import HeaderName, WithReferences
from config.secrets import Secret

TEMPLATE_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
"""One piece of a ``string_to_sign``: ``{{`` / ``}}`` (literal braces), ``{name}``, or a
lone brace (an error)."""

SIGN_FIELDS = frozenset(
    {"method", "path", "query", "body", "timestamp", "nonce", "app_key", "secret"}
)


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
