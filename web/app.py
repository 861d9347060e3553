"""The daemon's HTTP endpoint: /metrics for Prometheus, /status as JSON, /healthz, and
``POST /heartbeat/<check>`` for the push sources of freshness checks.

Bound to loopback by default (``listen:``); it exposes no secrets. The only input it
takes is a heartbeat, which must carry the check's token and a small body.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from config.common import split_address
from events.ecs import heartbeat_event
from web.metrics import CONTENT_TYPE, Metrics
from web.stream import pieces, stream

HEARTBEAT_MAX_BODY = 64 * 1024
"""A heartbeat needs no body; a poster may send a little (a callback id), never more."""

PushToken = Callable[[str], SecretStr | None]
"""The token of the push freshness check so named; None for any other name."""
RecordHeartbeat = Callable[[str], Awaitable[None]]
RejectHeartbeat = Callable[[str, str, str | None], None]
"""Report a heartbeat refused for its token: check, why, the peer's address."""

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_BEARER = re.compile(r"^\s*bearer\s+(.+?)\s*$", re.IGNORECASE)


def build_app(
    *,
    metrics: Metrics,
    status: Callable[[], dict[str, Any]],  # "checks" may be an iterator (streamed)
    healthy: Callable[[], tuple[bool, str]],
    scrub: Callable[[str], str],
    emit: Callable[[dict[str, Any]], None],
    push_token: PushToken | None = None,
    record_heartbeat: RecordHeartbeat | None = None,
    reject_heartbeat: RejectHeartbeat | None = None,
) -> web.Application:
    async def get_metrics(request: web.Request) -> web.StreamResponse:
        return await stream(request, CONTENT_TYPE, metrics.chunks())

    async def get_status(request: web.Request) -> web.StreamResponse:
        texts = _status_texts(status(), scrub)
        return await stream(request, "application/json; charset=utf-8", pieces(texts))

    async def get_healthz(_: web.Request) -> web.Response:
        ok, reason = healthy()
        return web.json_response(
            {"status": "ok" if ok else "unhealthy", "reason": reason}, status=200 if ok else 503
        )

    async def post_heartbeat(request: web.Request) -> web.Response:
        name = request.match_info["check"]
        token = push_token(name) if push_token and _NAME.match(name) else None
        if token is None or record_heartbeat is None:
            return _problem(404, "no freshness check with a push source has this name")
        if (request.content_length or 0) > HEARTBEAT_MAX_BODY:
            return _too_large()
        if not _authorized(request, token):
            why = "no bearer token" if "Authorization" not in request.headers else "wrong token"
            if reject_heartbeat is not None:  # the daemon's: a flood is summarised
                reject_heartbeat(name, why, request.remote)
            else:
                message = f"heartbeat for {name} refused: {why}"
                emit(heartbeat_event(name, message, peer=request.remote))
            return _problem(401, why, headers={"WWW-Authenticate": 'Bearer realm="hotline-probe"'})
        try:
            await request.read()  # bounded by the application's client_max_size
        except web.HTTPRequestEntityTooLarge:
            return _too_large()
        await record_heartbeat(name)
        return web.Response(status=204)

    # client_max_size bounds every body read; only the heartbeat reads one.
    app = web.Application(client_max_size=HEARTBEAT_MAX_BODY)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/status", get_status)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_post("/heartbeat/{check}", post_heartbeat)
    return app


def _authorized(request: web.Request, token: SecretStr) -> bool:
    match = _BEARER.match(request.headers.get("Authorization", ""))
    if match is None:
        return False
    # Constant time, so the answer's timing says nothing about how much of a guess matched.
    # aiohttp hands over bytes that are not UTF-8 as lone surrogates: compared as the
    # bytes that were sent, such a token is simply wrong.
    return hmac.compare_digest(
        match.group(1).encode("utf-8", "surrogateescape"),
        token.get_secret_value().encode("utf-8", "surrogateescape"),
    )


def _problem(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


def _too_large() -> web.Response:
    return _problem(413, f"a heartbeat body is at most {HEARTBEAT_MAX_BODY} bytes")


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


def _status_texts(document: dict[str, Any], scrub: Callable[[str], str]) -> Iterator[str]:
    """The document as json.dumps writes it, its checks one by one, each scrubbed whole
    (a secret never spans two pieces)."""
    head = {key: value for key, value in document.items() if key != "checks"}
    opening = scrub(json.dumps(head, ensure_ascii=False)[:-1])
    yield opening + (", " if head else "") + '"checks": ['
    for index, entry in enumerate(document.get("checks", ())):
        yield (", " if index else "") + scrub(json.dumps(entry, ensure_ascii=False))
    yield "]}"


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (listen on port 0 in tests)."""
    return int(runner.addresses[0][1])
