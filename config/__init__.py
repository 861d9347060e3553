"""Configuration: models (frozen, one per probe kind) and loading (YAML + environment)."""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, SecretStr

from core.redact import _SECRET_PARAM  # one notion of "secret-looking" for both


def secret_values(model: Any) -> Iterator[str]:
    """Every secret in a config tree, for scrubbing output.

    SecretStr values, the password and secret-looking query parameters of URLs, and
    every value a ``${env:}`` / ``${file:}`` reference resolved to (in a URL, a body or
    a TCP payload only that value is secret, not the text around it).
    """
    if isinstance(model, SecretStr):
        yield model.get_secret_value()
    elif isinstance(model, BaseModel):
        yield from getattr(model, "referenced_secrets", ())
        url = getattr(model, "url", None)
        if isinstance(url, str):
            yield from _url_secrets(url)
        for name in _fields_that_may_hold_secrets(type(model)):
            yield from secret_values(getattr(model, name))
    elif isinstance(model, dict):
        for value in model.values():
            yield from secret_values(value)
    elif isinstance(model, list | tuple):
        for value in model:
            yield from secret_values(value)


def _url_secrets(url: str) -> Iterator[str]:
    if "@" not in url and "?" not in url:
        return  # nothing to find; most node URLs, and parsing 10,000 of them is not free
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # validated URLs parse; anything else has nothing to offer
        return
    if password:
        yield unquote(password)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if value and _SECRET_PARAM.search(name):
            yield value


@functools.cache
def _fields_that_may_hold_secrets(cls: type[BaseModel]) -> tuple[str, ...]:
    """Fields whose type can lead to a secret; the walk skips the rest (retries, expect...).

    Walking every field of 500 checks took 30 ms of a 500 ms `probe --all`.
    """
    return tuple(name for name, field in cls.model_fields.items() if _may_hold(field.annotation))


def _may_hold(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SecretStr):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        # A model leads to a secret if it has a URL (a password, a token parameter) or
        # a field that does; config models do not contain themselves, so this ends.
        return "url" in annotation.model_fields or bool(_fields_that_may_hold_secrets(annotation))
    return any(_may_hold(arg) for arg in typing.get_args(annotation))
