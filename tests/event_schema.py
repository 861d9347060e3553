"""docs/events.md as a schema: its tables say which fields each event may and must have.

Every event the test suite writes goes through ``validate`` (conftest.py taps the
pipeline), so the code cannot write a field the document does not describe, nor drop
one it promises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.ecs_schema import problems as ecs_problems

DOC = Path(__file__).resolve().parent.parent / "docs" / "events.md"
_HEADING = re.compile(r"^### (.+)$")
_ROW = re.compile(r"^\| `([^`]+)` \| ([a-z\[\]?]+) \|([^|]*)\| (yes|no) \|")
_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class Field:
    type: str  # keyword, text, long, float, boolean, date, object (with [] for arrays)
    array: bool
    nullable: bool
    required: bool


@cache
def schema() -> dict[str, dict[str, Field]]:
    """Section (an action, or "*" for every event) -> field path -> Field."""
    sections: dict[str, dict[str, Field]] = {}
    current: list[str] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if heading := _HEADING.match(line):
            title = heading.group(1)
            current = ["*"] if title == "Every event" else re.findall(r"`([^`]+)`", title)
            for action in current:
                sections.setdefault(action, {})
            continue
        if current and (row := _ROW.match(line)):
            path, kind, _, required = row.groups()
            nullable = kind.endswith("?")
            kind = kind.rstrip("?")
            field = Field(kind.removesuffix("[]"), kind.endswith("[]"), nullable, required == "yes")
            for action in current:
                sections[action][path] = field
    return sections


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted paths; lists of objects become ``path[].field`` once per item."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, path + ".")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out[path] = value
            for item in value:
                for sub_path, sub_value in flatten(item, path + "[].").items():
                    out.setdefault(sub_path, sub_value)
        else:
            out[path] = value
    return out


def validate(event: dict[str, Any]) -> list[str]:
    """Every way ``event`` departs from docs/events.md and from ECS; empty when none."""
    found = [f"ECS: {p}" for p in ecs_problems(event)]
    action = event.get("event", {}).get("action")
    sections = schema()
    if action not in sections:
        return [*found, f"event.action {action!r} is not documented in docs/events.md"]
    allowed = sections["*"] | sections[action]
    fields = flatten(event)
    for path, value in fields.items():
        spec = allowed.get(path)
        if spec is None:
            found.append(f"{path}: not in docs/events.md for {action!r}")
            continue
        found += [f"{path}: {p}" for p in _type_problems(value, spec)]
    # A required field inside a list of objects is required of every item.
    for path, spec in allowed.items():
        if spec.required and path not in fields and "[]" not in path:
            found.append(f"{path}: required for {action!r} but missing")
    for path, spec in allowed.items():
        if spec.required and "[]." in path:
            outer, _, inner = path.partition("[].")
            for item in fields.get(outer, []) or []:
                if inner not in flatten(item):
                    found.append(f"{path}: required in every item but missing")
    return found


def _type_problems(value: Any, spec: Field) -> list[str]:
    if value is None:
        return [] if spec.nullable else ["null, but the document does not allow it"]
    if spec.array:
        if not isinstance(value, list):
            return [f"{value!r} should be an array"]
        return [p for item in value for p in _one(item, spec.type)]
    return _one(value, spec.type)


def _one(value: Any, kind: str) -> list[str]:
    ok = {
        "keyword": isinstance(value, str),
        "text": isinstance(value, str),
        "long": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "date": isinstance(value, str) and bool(_DATE.match(value)),
        "object": isinstance(value, dict),
    }.get(kind)
    if ok is None:
        return [f"docs/events.md uses an unknown type {kind!r}"]
    return [] if ok else [f"{value!r} is not a {kind}"]
