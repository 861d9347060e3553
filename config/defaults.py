"""``defaults:``: values every check inherits unless it sets the key itself."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from config.checks import Retries
from config.common import Model
from config.duration import Duration
from config.fields import PositiveDuration, RunCount


class Defaults(Model):
    """Values every check inherits unless it sets the key itself (see CheckBase)."""

    interval: Duration = 30.0
    timeout: PositiveDuration = 5.0
    retries: Retries = Retries()
    confirm_after: RunCount = 2
    recover_after: RunCount = 2
    failback_after: RunCount = 3
    standby_interval: PositiveDuration = 120.0


INHERITED = frozenset(Defaults.model_fields)


def merge_defaults(data: Any) -> Any:
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
            check = {k: v for k, v in defaults.items() if k in INHERITED} | check
            own_retries, default_retries = check.get("retries"), defaults.get("retries")
            if isinstance(own_retries, dict) and isinstance(default_retries, dict):
                check["retries"] = default_retries | own_retries
        merged.append(check)
    return data | {"checks": merged}
