"""``PROBE_*`` environment variables as overrides of the config file, via pydantic-settings.

``PROBE_DEFAULTS__TIMEOUT=10s`` overrides ``defaults.timeout``; a list or mapping setting
is given as JSON. pydantic-settings does the reading and decoding; it is imported only
when such a variable exists, because its import costs ~25 ms of every `probe` run
(a tenth of what `probe --all` spends beyond raw aiohttp in bench/bench_probe_all.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

PREFIX = "PROBE_"
DELIMITER = "__"
NOT_A_SETTING = {"PROBE_CONFIG", "PROBE_DEBUG"}  # the file's path; the CLI's debug switch


class OverrideError(ValueError):
    """An override that cannot be decoded (``PROBE_CHECKS=notjson``)."""


def overrides(fields: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The overrides the environment holds for the top-level ``fields``, nested by ``__``.

    Raises OverrideError for a value that cannot be decoded.
    """
    if not any(
        name.upper().startswith(PREFIX) and name.upper() not in NOT_A_SETTING for name in environ
    ):
        return {}
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


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mapping by mapping, as pydantic-settings merges its sources."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
