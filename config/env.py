"""``PROBE_*`` environment variables as overrides of the config file, via pydantic-settings.

``PROBE_DEFAULTS__TIMEOUT=10s`` overrides ``defaults.timeout``; a list or mapping setting
is given as JSON. pydantic-settings does the reading and decoding; it is imported only
when such a variable exists, because its import costs ~25 ms of every `probe` run
(a tenth of what `probe --all` spends beyond raw aiohttp in bench/bench_probe_all.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

PREFIX = "PROBE_"
DELIMITER = "__"
NOT_A_SETTING = {"PROBE_CONFIG", "PROBE_DEBUG"}  # the file's path; the CLI's debug switch


MAX_DEPTH = 200
"""Nesting beyond this is refused, as in the file (config/yaml_doc.py): no config comes
near it, and 3,000 brackets in ``PROBE_CHECKS`` made the JSON decoder hit Python's
recursion limit (a traceback from `probed`)."""

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


class OverrideError(ValueError):
    """An override that cannot be decoded (``PROBE_CHECKS=notjson``).

    ``variable`` names it when known here; otherwise pydantic-settings' message names
    its field.
    """

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


def _depth(value: str) -> int:
    """How deep brackets nest in a JSON text, outside its strings."""
    deepest = depth = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub("", value)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def overrides(fields: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The overrides the environment holds for the top-level ``fields``, nested by ``__``.

    Raises OverrideError for a value that cannot be decoded.
    """
    names = [
        name
        for name in environ
        if name.upper().startswith(PREFIX) and name.upper() not in NOT_A_SETTING
    ]
    if not names:
        return {}
    for name in sorted(names):
        if _depth(environ[name]) > MAX_DEPTH:
            raise OverrideError(f"nested more than {MAX_DEPTH} levels deep", variable=name)
    from pydantic import create_model
    from pydantic_settings import (
        BaseSettings,
        EnvSettingsSource,
        SettingsConfigDict,
        SettingsError,
    )

    # A settings class with the config's top-level fields, only for the source to know
    # which names exist and which are complex (JSON-decoded); nothing is validated here.
    shape: Any = create_model(  # type: ignore[call-overload]
        "EnvironmentOverrides",
        __base__=BaseSettings,
        **{name: (annotation, None) for name, annotation in fields.items()},
    )
    shape.model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_nested_delimiter=DELIMITER, env_ignore_empty=True
    )
    try:
        return dict(EnvSettingsSource(shape)())
    except SettingsError as exc:  # keep the decoder's error as the cause: it has the position
        raise OverrideError(str(exc)) from exc.__cause__
    except RecursionError:  # under MAX_DEPTH, yet too deep for a small recursion limit
        raise OverrideError("nested too deeply to decode") from None


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mapping by mapping, as pydantic-settings merges its sources."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
