"""/metrics: the per-series families are formatted by hand for speed, and must read
exactly as prometheus_client would write them."""

from __future__ import annotations

import math

from web.metrics import Metrics, _CheckView, _Reading, _render, reference_render


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
