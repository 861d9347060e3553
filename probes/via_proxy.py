"""Going through a forward proxy: what aiohttp is given, and whose failure it was.

A request to an https:// node opens a tunnel with CONNECT; one to an http:// node is
sent to the proxy with the absolute URI. Until the tunnel stands (https) or the proxy's
socket is connected (http), every failure is the proxy's own: it is ErrorType.PROXY,
with a message that says which (refused, credentials, a garbled or cut answer). After
that the proxy only relays, and failures are the target's, classified as without one.

An answer to CONNECT of 500, 502, 503 or 504 is the proxy telling us it could not
reach the target. The issue that asked for this kind counts "502 from the proxy" among
the proxy's failures, so it is ErrorType.PROXY too; the message says that the proxy
answered and what it could not reach, and ``proxy_status`` carries the code, so a
reader can still tell "the proxy is down" from "the proxy cannot get through".
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from config.kinds.http import ProxyOptions
from core.errors import ErrorType, ProbeFailure
from probes.base import PROXY_PHASES, unfinished
from probes.net import RESET, os_failure

# Answers to CONNECT about the far side: tinyproxy says "500 Unable to connect", squid
# 503, most others 502 or 504.
_TARGET_UNREACHABLE = {500, 502, 503}
_TARGET_TIMEOUT = 504


def request_arguments(proxy: ProxyOptions) -> dict[str, Any]:
    """``proxy`` and ``proxy_auth`` for ``ClientSession.request``.

    The URL is given without credentials and they go in ``proxy_auth``, so that aiohttp
    never carries them in a URL it might put into an exception or a log line.
    """
    credentials = proxy.credentials
    auth = None
    if credentials is not None:
        # RFC 7617 lets a server ask for UTF-8; a Chinese user name needs it.
        auth = aiohttp.BasicAuth(credentials[0], credentials[1], encoding="utf-8")
    return {"proxy": proxy.endpoint, "proxy_auth": auth}


def in_proxy_phase(marks: dict[str, float]) -> bool:
    """Did the attempt end while it was still dealing with the proxy itself?"""
    running = unfinished(marks)
    return running is not None and running[0] in PROXY_PHASES


def proxy_failure(
    exc: aiohttp.ClientError | ssl.SSLError, proxy: ProxyOptions, target: str
) -> ProbeFailure:
    """The failure of an attempt that ended in the proxy phase. ``target`` is host:port."""
    where = f"proxy {proxy.address}"
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return connect_refused(exc.status, exc.message, proxy, target)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        reason = exc.os_error.strerror or str(exc.os_error)
        return _failure(f"cannot resolve the {where}: {reason}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return os_failure(exc.os_error, f"the {where}", kind=ErrorType.PROXY)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return _failure(f"{where} closed the connection before answering CONNECT")
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno in RESET:
        return _failure(f"{where} reset the connection during CONNECT")
    if isinstance(exc, aiohttp.ClientResponseError):
        return _failure(f"{where} answered CONNECT with something that is not HTTP: {_why(exc)}")
    return _failure(f"{where} failed during CONNECT: {type(exc).__name__}")


def connect_refused(status: int, reason: str, proxy: ProxyOptions, target: str) -> ProbeFailure:
    """The proxy answered, but not with a tunnel (or, for http, with 407)."""
    where = f"proxy {proxy.address}"
    answer = f"{status} {reason}".strip()
    details = {"proxy_status": status}
    # 407 is the standard answer; tinyproxy answers wrong credentials with 401. An
    # answer to CONNECT is always the proxy's own, so both mean the proxy refused us.
    if status in (401, 407):
        if proxy.credentials is None:
            message = f"{where} requires authentication ({answer}); the check gives no credentials"
        else:
            message = f"{where} rejected the check's credentials ({answer})"
        return ProbeFailure(ErrorType.PROXY, message, details=details)
    if status in _TARGET_UNREACHABLE:
        return ProbeFailure(
            ErrorType.PROXY,
            f"{where} answered that it could not reach {target} ({answer})",
            details=details,
        )
    if status == _TARGET_TIMEOUT:
        return ProbeFailure(
            ErrorType.PROXY,
            f"{where} answered that {target} did not answer it in time ({answer})",
            details=details,
        )
    return ProbeFailure(
        ErrorType.PROXY, f"{where} refused to open a tunnel to {target} ({answer})", details=details
    )


def _failure(message: str) -> ProbeFailure:
    return ProbeFailure(ErrorType.PROXY, message)


def _why(exc: aiohttp.ClientResponseError) -> str:
    # The parser's own message sits on the cause; the exception's text would carry the
    # request, and that request's headers hold the Proxy-Authorization.
    cause = exc.__cause__
    message = getattr(cause, "message", None) or exc.message
    return str(message).splitlines()[0] if message else type(exc).__name__
