"""Memory sharing at load: equal frozen parts of checks become one object.

This is the one place where config models are changed after pydantic made them, and it
runs inside ProbeConfig's validation, before anyone holds the config. The reason is
memory: at 10,000 checks written alike the config took 36 MB, and 15 MB with its equal
parts shared (bench/bench_daemon.py; tests/test_config.py keeps it under 3 KB a check).
Sharing while pydantic builds the parts would take a Python validator on every field of
every check, and pydantic cannot be handed a set of field names to use; so equal frozen
parts are swapped in afterwards, which changes nothing a reader of the config can see
but its size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from config.secrets import Resolved

if TYPE_CHECKING:
    from config.probe_config import ProbeConfig


def share_parts(config: ProbeConfig) -> None:
    """Share equal sub-models, then equal field-name sets, across the config's checks."""
    _share_equal_parts(config)  # first: the walk below then visits shared parts once
    _share_fields_sets(config, {}, set())


def _share_equal_parts(config: ProbeConfig) -> None:
    """One instance of each distinct sub-model (retries, expect, tls, ...) for all the
    checks that have an equal one: 10,000 checks written alike held 10,000 equal
    ``retries:`` and ``expect:`` models. Frozen, so shared is the same as equal."""
    shared: dict[Any, BaseModel] = {}
    for check in config.checks:
        for name, value in check.__dict__.items():
            if not isinstance(value, BaseModel):
                continue
            key = _shape(value)
            if key is None:
                continue
            check.__dict__[name] = shared.setdefault(key, value)


def _shape(value: Any) -> Any:
    """A hashable stand-in for a value that is equal exactly when the values are; None
    when some part cannot be hashed."""
    if isinstance(value, BaseModel):
        parts = tuple((k, _shape(v)) for k, v in value.__dict__.items())
        return (type(value), parts) if None not in (p[1] for p in parts) else None
    if isinstance(value, (list, tuple)):
        items = tuple(_shape(v) for v in value)
        return (type(value), items) if None not in items else None
    if isinstance(value, dict):
        entries = tuple(((type(k), k), _shape(v)) for k, v in value.items())
        return (dict, entries) if None not in (e[1] for e in entries) else None
    if isinstance(value, Resolved):  # equal text, but written as another reference
        return (Resolved, str(value), value.written)
    if isinstance(value, float):  # 0.0 == -0.0, and both hash alike
        return (float, value, math.copysign(1.0, value))
    try:
        hash(value)
    except TypeError:
        return None
    return (type(value), value)


def _share_fields_sets(value: Any, shared: dict[frozenset[str], set[str]], seen: set[int]) -> None:
    """Give models that set the same fields one ``__pydantic_fields_set__`` between them.

    pydantic keeps a set of the names each instance was given; every check, node and
    sub-model had its own, 14 MB of sets for 10,000 checks holding a handful of names
    each. The models are frozen, so nothing adds to a set once it is made (model_copy
    copies it first): sharing equal ones changes nothing but the memory.
    """
    if isinstance(value, BaseModel):
        if id(value) in seen:  # a part shared by many checks (_share_equal_parts)
            return
        seen.add(id(value))
        names = value.__pydantic_fields_set__
        key = frozenset(names)
        object.__setattr__(value, "__pydantic_fields_set__", shared.setdefault(key, names))
        items: Any = value.__dict__.values()
    elif isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return
    for item in items:
        if isinstance(item, (BaseModel, list, tuple, dict)):
            _share_fields_sets(item, shared, seen)
