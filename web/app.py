"""The daemon's HTTP endpoint: /metrics for Prometheus, /status as JSON, /healthz.

Bound to loopback by default (``listen:``); it exposes no secrets and accepts no input
beyond the path, so a scrape from the ops host's Prometheus is all it needs to serve.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from config.models import split_address
from web.metrics import CONTENT_TYPE, Metrics


def build_app(
    *,
    metrics: Metrics,
    status: Callable[[], dict[str, Any]],
    healthy: Callable[[], tuple[bool, str]],
    scrub: Callable[[str], str],
) -> web.Application:
    async def get_metrics(_: web.Request) -> web.Response:
        body = await metrics.render_async()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def get_status(_: web.Request) -> web.Response:
        text = scrub(json.dumps(status(), ensure_ascii=False))
        return web.Response(text=text, content_type="application/json")

    async def get_healthz(_: web.Request) -> web.Response:
        ok, reason = healthy()
        return web.json_response(
            {"status": "ok" if ok else "unhealthy", "reason": reason}, status=200 if ok else 503
        )

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/status", get_status)
    app.router.add_get("/healthz", get_healthz)
    return app


async def serve(app: web.Application, listen: str) -> web.AppRunner:
    """Start serving on ``host:port``; raises OSError (port taken, no such address)."""
    host, port = split_address(listen, any_port=True)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (listen on port 0 in tests)."""
    return int(runner.addresses[0][1])
