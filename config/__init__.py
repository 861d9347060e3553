"""Configuration: models (frozen, one per probe kind) and loading (YAML + environment)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr


def secret_values(model: Any) -> Iterator[str]:
    """Every SecretStr value in a config tree, for scrubbing output."""
    if isinstance(model, SecretStr):
        yield model.get_secret_value()
    elif isinstance(model, BaseModel):
        url = getattr(model, "url", None)
        if isinstance(url, str) and (password := urlsplit(url).password):
            yield unquote(password)
        for name in type(model).model_fields:
            yield from secret_values(getattr(model, name))
    elif isinstance(model, dict):
        for value in model.values():
            yield from secret_values(value)
    elif isinstance(model, list | tuple):
        for value in model:
            yield from secret_values(value)
