"""/metrics: the per-series families are formatted by hand for speed, and must read
exactly as prometheus_client would write them."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from events.log import Pipeline
from web.metrics import (
    _ATTEMPTS,
    _RUNS,
    Metrics,
    _CheckView,
    _counter,
    _Reading,
    _render,
    _Tables,
)
from web.stream import CHUNK

# --- the oracle: every family through prometheus_client, as /metrics once was ----------


def reference_render(tables: _Tables) -> bytes:
    """The same page with every family through prometheus_client (tests compare)."""

    class _All(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from _node_families(tables.readings)
            yield from _check_families(tables.checks)
            yield _counter(*_RUNS, tables.runs)
            yield _counter(*_ATTEMPTS, tables.attempts)
            yield from tables.collect()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_All())
    return generate_latest(registry)


def _node_families(readings: Mapping[tuple[str, str], _Reading]) -> Iterator[Metric]:
    labels = ["check", "node"]
    success = GaugeMetricFamily(
        "probe_success", "1 if the node answered as expected", labels=labels
    )
    duration = GaugeMetricFamily(
        "probe_duration_seconds",
        "Seconds spent on the node in its last run, all attempts",
        labels=labels,
    )
    status = GaugeMetricFamily(
        "probe_http_status_code", "HTTP status of the last attempt", labels=labels
    )
    phases = GaugeMetricFamily(
        "probe_http_duration_seconds",
        "Seconds per phase of the last attempt",
        labels=[*labels, "phase"],
    )
    expiry = GaugeMetricFamily(
        "probe_ssl_earliest_cert_expiry", "Unix time the peer's certificate expires", labels=labels
    )
    for key, reading in readings.items():
        success.add_metric(key, 1 if reading.success else 0)
        duration.add_metric(key, reading.duration)
        if reading.status_code is not None:
            status.add_metric(key, reading.status_code)
        for phase, seconds in reading.phases:
            phases.add_metric((*key, phase), seconds)
        if reading.cert_expiry is not None:
            expiry.add_metric(key, reading.cert_expiry)
    yield from (success, duration, status, phases, expiry)


def _check_families(checks: Mapping[str, _CheckView]) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "hotline_probe_check_state",
        "1 for the check's hard state (one series per check)",
        labels=["check", "state"],
    )
    flapping = GaugeMetricFamily(
        "hotline_probe_check_flapping", "1 while the check flaps", labels=["check"]
    )
    active = GaugeMetricFamily(
        "hotline_probe_active_node", "1 for the node serving the check", labels=["check", "node"]
    )
    for check, view in checks.items():
        state.add_metric((check, view.state), 1)
        flapping.add_metric((check,), 1 if view.flapping else 0)
        if view.active_node is not None:
            active.add_metric((check, view.active_node), 1)
    yield from (state, flapping, active)


def tables_with(readings: int) -> Metrics:
    metrics = Metrics(version="1.2.3")
    t = metrics.tables
    for i in range(readings):
        key = (f"check-{i}", f"node-{i % 3}")
        t.readings[key] = _Reading(
            success=i % 4 != 0,
            duration=[0.0123, 1e-7, 12345.678, math.inf, 0.0][i % 5],
            status_code=[200, None, 503][i % 3],
            phases=(("resolve", 0.0001), ("connect", 2.5e-05), ("processing", 0.3))[: i % 4],
            cert_expiry=[None, 1795884721.0, 1.7e9][i % 3],
        )
        t.checks[key[0]] = _CheckView(
            state=["up", "down", "degraded", "unreachable", "unknown"][i % 5],
            flapping=i % 7 == 0,
            active_node=None if i % 6 == 0 else key[1],
        )
        t.runs[(key[0], "up")] = i
        t.runs[(key[0], "down")] = 2**40 + i
        t.attempts[(key[0], key[1], "success")] = i * 3
    t.failovers["check-1"] = 2
    t.lateness[3] = 5
    t.lateness_sum = 0.42
    return metrics


def test_hand_formatted_families_match_prometheus_client_byte_for_byte() -> None:
    metrics = tables_with(200)
    assert _render(metrics.tables) == reference_render(metrics.tables)


def test_a_label_value_that_needs_escaping_is_escaped_as_the_library_does() -> None:
    metrics = tables_with(3)
    metrics.tables.checks['odd"na\\me\n'] = _CheckView("up", False, 'n"\\\n')
    metrics.tables.readings[('odd"na\\me\n', "n")] = _Reading(True, 0.5, None, (), None)
    assert _render(metrics.tables) == reference_render(metrics.tables)


def test_empty_tables_render_like_the_library() -> None:
    metrics = Metrics(version="0")
    assert _render(metrics.tables) == reference_render(metrics.tables)


async def test_the_page_streams_in_pieces_that_add_up_to_the_whole() -> None:
    """The endpoint writes the page in CHUNK-sized pieces rather than holding it all:
    their concatenation is the page the library would write, and no piece is much
    bigger than CHUNK."""
    metrics = tables_with(3000)
    pieces = [piece async for piece in metrics.chunks()]
    assert len(pieces) > 5
    assert b"".join(pieces) == reference_render(metrics.tables)
    assert max(len(piece) for piece in pieces[:-1]) < CHUNK + 1024


async def test_a_scraper_that_hangs_up_mid_page_leaves_no_traceback(
    caplog: pytest.LogCaptureFixture, pipeline: Pipeline
) -> None:
    """Prometheus gives up on a slow scrape (its scrape_timeout): the endpoint stops
    writing, logs nothing (stderr carries the events), and serves the next scrape."""
    import asyncio

    from tests.endpoint import serving
    from web.app import build_app

    metrics = tables_with(20_000)  # a page of several MB, many pieces
    app = build_app(
        metrics=metrics,
        status=dict,
        healthy=lambda: (True, "ok"),
        scrub=lambda text: text,
        emit=pipeline.emit,
    )
    async with serving(app) as port:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.read(4096)).startswith(b"HTTP/1.1 200")
            writer.transport.abort()  # gone after the first piece, as a timed-out scraper
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        whole = await reader.read()
        writer.close()
    assert whole.endswith(b'hotline_probe_build_info{version="1.2.3"} 1.0\n\r\n0\r\n\r\n')
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
