"""Validate events against the ECS field list in ../shared/ecs/fields.json.

A field whose dotted path ECS defines must carry a value of that type (and an allowed
value where ECS fixes them); a field inside an ECS field set that ECS does not define
would collide with the SIEM's mapping. Heartbeat's names (monitor, summary, state) and
our own namespace are outside ECS by design.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

FIELDS = Path(__file__).resolve().parent / "data" / "ecs_fields.json"
OUTSIDE_ECS = ("monitor", "summary", "state", "hotline_probe")
_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
_TEXT = {"keyword", "wildcard", "match_only_text", "text", "constant_keyword", "ip"}
_NUMBER = {"long", "integer", "short", "byte", "float", "double", "scaled_float"}


@cache
def ecs_fields() -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = json.loads(FIELDS.read_text())["fields"]
    return fields


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path.split(".")[0] not in OUTSIDE_ECS:
            out |= flatten(value, path + ".")
        else:
            out[path] = value
    return out


def problems(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` departs from ECS; empty when it conforms."""
    fields = ecs_fields()
    field_sets = {name.split(".")[0] for name in fields}
    found: list[str] = []
    for path, value in flatten(doc).items():
        top = path.split(".")[0]
        if top in OUTSIDE_ECS:
            continue
        spec = fields.get(path)
        if spec is None:
            if top in field_sets:
                found.append(f"{path}: not an ECS field inside ECS field set {top!r}")
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not spec.get("array") and spec["type"] not in _TEXT:
            found.append(f"{path}: ECS does not expect an array")
        for item in values:
            found += [f"{path}: {p}" for p in _type_problems(item, spec)]
    return found


def _type_problems(value: Any, spec: dict[str, Any]) -> list[str]:
    kind = spec["type"]
    if value is None:
        return []
    if kind in _TEXT and not isinstance(value, str):
        return [f"{value!r} should be a string ({kind})"]
    if kind in _NUMBER and (isinstance(value, bool) or not isinstance(value, int | float)):
        return [f"{value!r} should be a number ({kind})"]
    if kind in {"long", "integer"} and isinstance(value, float):
        return [f"{value!r} should be a whole number ({kind})"]
    if kind == "date" and not (isinstance(value, str) and _DATE.match(value)):
        return [f"{value!r} should be an RFC 3339 date"]
    if kind == "boolean" and not isinstance(value, bool):
        return [f"{value!r} should be a boolean"]
    allowed = spec.get("allowed")
    if allowed and value not in allowed:
        return [f"{value!r} is not one of ECS's allowed values"]
    return []
