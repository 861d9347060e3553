"""The event pipeline: every event numbered, rendered once as ECS JSON (secrets
scrubbed) and handed to each configured output.

structlog is configured with two processors, _prepare and Pipeline.render, and the
pipeline as its logger, so anything logged through structlog takes the same path.
structlog's own key ``event`` is the ECS object ``event``: the message goes under
``message`` and a caller passes the ECS object as ``_event``. Documents from
events.ecs skip the bound logger (emit), not the processors.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import sys
import uuid
from collections.abc import Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog

from core.redact import Scrubber
from core.result import CheckResult
from events.ecs import ECS_VERSION, attempt_events, check_event, daemon_event, failover_event
from events.formats import without_surrogates
from events.outputs import Output, Problem
from events.outputs.stream import StreamSink

EventDict = MutableMapping[str, Any]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


# Every event of this process gets the next number, whatever pipeline is configured at
# the time: a reader who sees 41 then 43 knows that one is missing.
_RUN_ID = uuid.uuid4().hex[:16]
_sequence = itertools.count(1)

MAX_EVENT_BYTES = 60_000
"""Longer events (in UTF-8) have their long texts cut: they must fit one UDP datagram
and a collector's message size, and 100 KB of peer output helps nobody."""
_CUT_TO = 1024

TAPS: list[Callable[[dict[str, Any]], None]] = []
"""Called with every event as rendered (tests validate each one against docs/events.md)."""


def _prepare(_: Any, method: str, event_dict: EventDict) -> EventDict:
    """One pass from structlog's event dict to our document: the message under
    ``message`` (structlog's ``event``), the ECS ``event`` object back under its name
    with the event's id and number, a timestamp and level if the caller gave none, and
    timestamp, level and message first, where a person scanning raw lines looks."""
    message = event_dict.pop("event", None)
    return _compose(message, event_dict.pop("_event", None), event_dict, method)


def _compose(message: Any, ecs_event: Any, event_dict: EventDict, method: str) -> EventDict:
    number = next(_sequence)
    if not isinstance(ecs_event, dict):
        ecs_event = {}
    ecs_event["id"] = f"{_RUN_ID}-{number}"
    ecs_event["sequence"] = number
    timestamp = event_dict.pop("@timestamp", None) or _now()
    log = event_dict.pop("log", None) or {}
    if "level" not in log:
        log["level"] = "warning" if method == "warn" else method
    document = {"@timestamp": timestamp, "log": log, "message": message, **event_dict}
    document["event"] = ecs_event
    if "ecs" not in document:
        document["ecs"] = _ECS
    return document


_ECS = {"version": ECS_VERSION}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _CUT_TO:
        return value[:_CUT_TO] + f"...[{len(value) - _CUT_TO} characters cut]"
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return value


class Pipeline:
    """Renders each event once (JSON, scrubbed) and hands it to every output.

    structlog's processors stamp and render; this object is the "logger" at the end of
    the chain. An output's problems become ``output-*`` events of their own, emitted after
    the event that caused them, and also written to stderr when stderr is not an output:
    journald keeps them even when the only output is the one that broke.
    """

    def __init__(self, outputs: Sequence[Output], scrub: Callable[[str], str]) -> None:
        self.outputs = list(outputs)
        self.scrub = scrub
        self._pending: list[Problem] = []
        self._emitting = False
        self._stderr_is_output = any(isinstance(o, StreamSink) for o in self.outputs)
        self._json = any(o.needs_json for o in self.outputs)
        self.level = logging.INFO  # events below it are not written; configure() sets it
        for output in self.outputs:
            output.problems = self._problem
            output.scrub = scrub

    def render(self, _: Any, __: str, event_dict: EventDict) -> Any:
        if not self._json and not TAPS:  # only CEF outputs: nobody reads the JSON line
            return ("",), {"doc": event_dict}
        line = self.scrub(_dumps(event_dict))
        # Characters are at most 4 bytes: only a long line needs its bytes counted.
        if len(line) * 4 > MAX_EVENT_BYTES and len(line.encode()) > MAX_EVENT_BYTES:
            event_dict = _shorten(event_dict)
            if isinstance(event_dict.get("hotline_probe"), dict):
                event_dict["hotline_probe"]["truncated"] = True
            line = self.scrub(_dumps(event_dict))
        return (line,), {"doc": event_dict}

    def write(self, line: str, doc: EventDict) -> None:
        for tap in TAPS:
            tap(json.loads(line))
        self._emitting = True
        try:
            for output in self.outputs:
                try:
                    output.submit(doc, line)
                except Exception as exc:  # a bug in one output must not cost the others
                    output.counts["dropped"] += 1
                    output.failed(f"internal error in output: {exc!r}", level="error")
        finally:
            self._emitting = False
        self._drain()

    # structlog calls the method named after the level.
    debug = info = warning = warn = error = critical = exception = msg = write

    def _problem(self, problem: Problem) -> None:
        self._pending.append(problem)
        self._drain()

    def _drain(self) -> None:
        """Report the problems outputs had, once no event is being written."""
        while self._pending and not self._emitting:
            self._report(self._pending.pop(0))

    def _report(self, problem: Problem) -> None:
        document = daemon_event(
            problem.action,
            f"output {problem.output}: {problem.message}",
            level=problem.level,
            outcome="success" if problem.action == "output-recovered" else "failure",
            output=problem.output,
            **({"dropped": problem.dropped} if problem.dropped else {}),
        )
        if not self._stderr_is_output:
            with contextlib.suppress(Exception):
                brief = {k: document[k] for k in ("message", "log", "event")}
                sys.stderr.write(self.scrub(_dumps(brief)) + "\n")
        emit(document)


def _dumps(obj: Any) -> str:
    """One line of JSON that is valid UTF-8 whatever the event holds.

    orjson is ten times faster than json here (an event is rendered for every check
    run) and refuses what is not valid UTF-8; those rare events (a peer's bytes decoded
    with surrogateescape, a number beyond 64 bits) take the slow path, where lone
    surrogates become U+FFFD."""
    try:
        return orjson.dumps(obj, default=str).decode()
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":"))
        return without_surrogates(text)


_pipeline: Pipeline | None = None


def configure(
    *,
    outputs: Sequence[Output] | None = None,
    stream: TextIO | None = None,
    level: str = "info",
    scrubber: Callable[[str], str] | None = None,
) -> Pipeline:
    """Route every event to ``outputs`` (by default JSON lines on ``stream`` or stderr)."""
    global _pipeline
    if outputs is None:
        outputs = [StreamSink("stderr", stream or sys.stderr)]
    pipeline = _pipeline = Pipeline(outputs, scrubber or Scrubber())
    structlog.configure(
        processors=[_prepare, pipeline.render],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_: pipeline,
        cache_logger_on_first_use=False,
    )
    pipeline.level = _LEVELS[level]
    return pipeline


def emit_result(result: CheckResult) -> None:
    """The events of one run of ``probe``: the result, and the failover if there was one."""
    for document in attempt_events(result):
        emit(document)
    emit(check_event(result))
    if result.failed_over:
        emit(failover_event(result))


def emit(document: dict[str, Any]) -> None:
    """Log a prepared ECS document (from events.ecs) at the level it names.

    A document from events.ecs is already what structlog's chain would build: it takes
    the chain's own two steps (_compose, render) directly, without the bound logger's
    context copies, which cost a third of an event's CPU. Anything logged through
    structlog.get_logger() goes through the same steps and the same outputs."""
    level = document.get("log", {}).get("level", "info")
    pipeline = _pipeline
    if pipeline is not None and _LEVELS[level] < pipeline.level:
        return
    fields = dict(document)
    message = fields.pop("message")
    ecs_event = fields.pop("event", None)
    if pipeline is None:
        fields["_event"] = ecs_event  # structlog's own key is "event"
        structlog.get_logger().log(_LEVELS[level], message, **fields)
        return
    args, kwargs = pipeline.render(None, level, _compose(message, ecs_event, fields, level))
    pipeline.write(*args, **kwargs)
