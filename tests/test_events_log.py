"""The event pipeline as an object: its fast path and structlog's path write the same
documents, each pipeline numbers into one sequence, and levels filter."""

from __future__ import annotations

import io
import json
from typing import Any

import structlog

from events.ecs import daemon_event
from events.log import Pipeline


def _without_stamps(document: dict[str, Any]) -> dict[str, Any]:
    document = dict(document)
    document.pop("@timestamp")
    document["event"] = {k: v for k, v in document["event"].items() if k not in ("id", "sequence")}
    return document


def test_structlog_and_the_fast_path_write_the_same_document(pipeline: Pipeline) -> None:
    """A prepared document emitted directly, and the same logged through
    structlog.get_logger() once the pipeline is installed, render alike: structlog is
    the front door, emit() the same two steps without the bound logger's copies."""
    seen: list[dict[str, Any]] = []
    pipeline.taps.append(seen.append)
    pipeline.install()
    document = daemon_event("daemon-reload", "config reloaded: 2 checks", checks=2)
    pipeline.emit(document)
    fields = dict(document)
    message, ecs_event = fields.pop("message"), fields.pop("event")
    structlog.get_logger().info(message, _event=ecs_event, **fields)
    fast, slow = seen
    assert _without_stamps(fast) == _without_stamps(slow)
    assert slow["event"]["sequence"] == fast["event"]["sequence"] + 1


def test_each_pipeline_is_its_own_and_filters_by_level(pipeline: Pipeline) -> None:
    """Two pipelines do not share outputs or taps; one at "error" drops an info event."""
    stream = io.StringIO()
    quiet = Pipeline(stream=stream, level="error")
    quiet.taps.extend(pipeline.taps)  # the schema check sees what it writes
    quiet.emit(daemon_event("daemon-reload", "config reloaded: 1 checks", checks=1))
    assert stream.getvalue() == ""
    quiet.emit(
        daemon_event("internal-error", "x: boom", level="error", outcome="failure", check="x")
    )
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["event"]["action"] == "internal-error"
