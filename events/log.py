"""structlog set up to write one ECS JSON document per line, secrets scrubbed.

structlog's own key ``event`` is the ECS object ``event``: the message key is renamed to
``message`` and callers pass the ECS object as ``_event`` (EventRenamer's replace_by).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from engine.result import CheckResult
from events.ecs import ECS_VERSION, check_event, failover_event
from events.redact import Scrubber

EventDict = MutableMapping[str, Any]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _ecs_base(
    _: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.setdefault(
        "@timestamp",
        datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )
    log = event_dict.setdefault("log", {})
    log.setdefault("level", "warning" if method == "warn" else method)
    event_dict.setdefault("ecs", {"version": ECS_VERSION})
    return event_dict


_FIRST = ("@timestamp", "log", "message")


def _readable_order(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Timestamp, level and message first: what a person scanning raw lines looks for."""
    ordered = {k: event_dict[k] for k in _FIRST if k in event_dict}
    ordered.update(event_dict)
    return ordered


def configure(
    *,
    stream: TextIO | None = None,
    level: str = "info",
    scrubber: Callable[[str], str] | None = None,
) -> None:
    """Route every event to ``stream`` (stderr by default) as one JSON line."""
    scrub = scrubber or Scrubber()

    def serialize(obj: Any, **_: Any) -> str:
        return scrub(json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":")))

    structlog.configure(
        processors=[
            _ecs_base,
            structlog.processors.EventRenamer("message", replace_by="_event"),
            _readable_order,
            structlog.processors.JSONRenderer(serializer=serialize),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def emit_result(result: CheckResult) -> None:
    """The events of one run of ``probe``: the result, and the failover if there was one."""
    emit(check_event(result))
    if result.failed_over:
        emit(failover_event(result))


def emit(document: dict[str, Any]) -> None:
    """Log a prepared ECS document (from events.ecs) at the level it names."""
    fields = dict(document)
    message = fields.pop("message")
    level = fields.get("log", {}).get("level", "info")
    if "event" in fields:
        fields["_event"] = fields.pop("event")
    structlog.get_logger("hotline_probe").log(_LEVELS[level], message, **fields)
