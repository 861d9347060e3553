"""Reading the running daemon's ``/status`` document, for ``probe --from-daemon``.

A monitoring core's user (nagios) cannot do all that ``probed`` does: it may not open
ICMP sockets, and it cannot read the heartbeats of push checks, which only the daemon
receives (in its private state directory). The daemon has judged those checks already;
its /status is the same document as ``probe --all --json``, each check's ``status``
being its hard state, so ``probe`` renders it instead of probing again.

The standard library's HTTP client: one GET on loopback needs no more, and ``probe``
starts faster without aiohttp.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from core.redact import redact_url

TIMEOUT = 10.0  # seconds; a monitoring core gives a check 60 s by default


class StatusUnavailable(Exception):
    """The document could not be read; the message says why, in one line."""


def status_url(url: str) -> str:
    """The endpoint's base URL, or its /status URL itself, as the /status URL."""
    base, _, query = url.partition("?")
    if base.rstrip("/").endswith("/status"):
        return url
    return base.rstrip("/") + "/status" + (f"?{query}" if query else "")


def fetch(url: str, *, timeout: float = TIMEOUT) -> dict[str, Any]:
    """GET the /status document from ``url`` (see ``status_url``); raises
    StatusUnavailable."""
    where = status_url(url)
    shown = redact_url(where)
    if urlsplit(where).scheme not in ("http", "https"):  # never file: or ftp:
        raise StatusUnavailable(f"{shown} is not an http:// or https:// URL")
    # No proxy: an http_proxy in the core's environment must not carry a request for
    # 127.0.0.1 off the host (urllib would, unless no_proxy names it).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    accept = {"Accept": "application/json"}
    request = urllib.request.Request(where, headers=accept)  # noqa: S310 - scheme checked
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise StatusUnavailable(f"{shown} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise StatusUnavailable(f"cannot reach {shown}: {_why(exc.reason)}") from None
    except TimeoutError:
        raise StatusUnavailable(f"{shown} did not answer within {timeout:g} s") from None
    except OSError as exc:  # the connection broke while the document was read
        raise StatusUnavailable(f"reading {shown} failed: {_why(exc)}") from None
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise StatusUnavailable(f"{shown} did not send a JSON document: {exc}") from None
    if not (
        isinstance(document, dict)
        and isinstance(document.get("checks"), list)
        and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in document["checks"])
    ):
        raise StatusUnavailable(f"{shown} did not send a status document (no checks list)")
    return document


def _why(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is probed running, and listening there?)"
    if isinstance(reason, TimeoutError):
        return "no answer in time"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host ({reason.strerror})"
    if isinstance(reason, OSError):
        return reason.strerror or str(reason)
    return str(reason)
