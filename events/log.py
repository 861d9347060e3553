"""The event pipeline: every event numbered, rendered once as ECS JSON (secrets
scrubbed) and handed to each configured output.

A Pipeline is an object, made by the composition root (wiring/) and handed to whoever
emits: the daemon, the runner's on_result callback, the endpoint's heartbeat
rejections, ``probe``'s run. Tests make their own (tests/conftest.py).

structlog is the front door for the program's own diagnostic logs: Pipeline.install()
configures it with two processors, _prepare and Pipeline.render, and the pipeline as its
logger, so anything logged through structlog.get_logger() takes the same path to the
same outputs. structlog's own key ``event`` is the ECS object ``event``: the message goes
under ``message`` and a caller passes the ECS object as ``_event``.

The fast path: the documents events.ecs prepares (a check run, an attempt, a
transition) go through Pipeline.emit, which takes the chain's own two steps (_compose,
render) without structlog's bound logger. Its context copies were a third of the CPU
per event (bench/bench_events.py; README "Benchmarks", CHANGELOG), paid on every check
run; the steps, the JSON and the outputs are the same either way.
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


# Every event of this process gets the next number, whichever pipeline writes it (a
# process has one; tests make more): a reader who sees 41 then 43 knows one is missing.
_RUN_ID = uuid.uuid4().hex[:16]
_sequence = itertools.count(1)

MAX_EVENT_BYTES = 60_000
"""Longer events (in UTF-8) have their long texts cut: they must fit one UDP datagram
and a collector's message size, and 100 KB of peer output helps nobody."""
_CUT_TO = 1024

Tap = Callable[[dict[str, Any]], None]


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

    def __init__(
        self,
        outputs: Sequence[Output] | None = None,
        *,
        stream: TextIO | None = None,
        level: str = "info",
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        """Events go to ``outputs`` (by default JSON lines on ``stream`` or stderr);
        those below ``level`` are not written."""
        self.level = _LEVELS[level]
        self.taps: list[Tap] = []
        """Called with every event as rendered (tests validate each one against
        docs/events.md)."""
        self._pending: list[Problem] = []
        self._emitting = False
        if outputs is None:
            outputs = [StreamSink("stderr", stream or sys.stderr)]
        self.route(outputs, scrub or Scrubber())

    def route(self, outputs: Sequence[Output], scrub: Callable[[str], str]) -> None:
        """Send events to ``outputs`` from now on, scrubbed by ``scrub`` (a reload)."""
        self.outputs = list(outputs)
        self.scrub = scrub
        self._stderr_is_output = any(isinstance(o, StreamSink) for o in self.outputs)
        self._json = any(o.needs_json for o in self.outputs)
        for output in self.outputs:
            output.scrub = scrub
            output.problems = self._problem  # reports what the output held till now

    def install(self) -> None:
        """Make structlog's loggers write through this pipeline: the program's own
        diagnostics take the same steps to the same outputs as its events."""
        structlog.configure(
            processors=[_prepare, self.render],
            wrapper_class=structlog.make_filtering_bound_logger(self.level),
            logger_factory=lambda *_: self,
            cache_logger_on_first_use=False,
        )

    def emit(self, document: dict[str, Any]) -> None:
        """Log a prepared ECS document (from events.ecs) at the level it names.

        The fast path (see the module's docstring): what structlog's chain would do,
        without the bound logger's context copies, a third of an event's CPU."""
        level = document.get("log", {}).get("level", "info")
        if _LEVELS[level] < self.level:
            return
        fields = dict(document)
        message = fields.pop("message")
        ecs_event = fields.pop("event", None)
        args, kwargs = self.render(None, level, _compose(message, ecs_event, fields, level))
        self.write(*args, **kwargs)

    def emit_result(self, result: CheckResult) -> None:
        """The events of one run of ``probe``: the result, and the failover if there was
        one (the runner's on_result)."""
        for document in attempt_events(result):
            self.emit(document)
        self.emit(check_event(result))
        if result.failed_over:
            self.emit(failover_event(result))

    def render(self, _: Any, __: str, event_dict: EventDict) -> Any:
        if not self._json and not self.taps:  # only CEF outputs: nobody reads the JSON line
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
        for tap in self.taps:
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
        self.emit(document)


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
