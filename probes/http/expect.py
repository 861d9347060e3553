"""What an HTTP answer must be: ``expect:`` of kinds http and proxy, judged on the Answer
whichever transport carried it.

Header names are case-insensitive and a header may come several times (``Via``,
``Set-Cookie``, ``Cache-Control`` on separate lines): ``expect.headers`` passes when any
one value matches and fails when the header is missing; ``expect.headers_not`` fails
when any value matches and passes when the header is missing. Patterns are searched
(unanchored), as ``body_regex`` is.
"""

from __future__ import annotations

import re
from typing import Any

from config.kinds.http import HttpExpect
from core.errors import ErrorType, ProbeFailure
from probes.http.common import Answer, json_document, lookup, short

# A response header can carry a session or a token (Set-Cookie, X-Auth-Token): failure
# messages go to every output, so such values are named, never quoted.
_SECRET_NAME = re.compile(
    r"cookie|auth|token|key|pass|secret|session|sign|ticket|credential", re.IGNORECASE
)


def judge(
    expect: HttpExpect,
    answer: Answer,
    elapsed: float,
    details: dict[str, Any],
    answered: str = "",
) -> None:
    """Raise ProbeFailure (with ``details``) at the first expectation the answer misses;
    ``answered`` follows the status in a status failure (its reason, and the proxy)."""

    def fail(kind: ErrorType, message: str) -> ProbeFailure:
        return ProbeFailure(kind, message, details=details)

    status = answer.status
    if expect.status and status not in expect.status:
        wanted = ", ".join(map(str, expect.status))
        raise fail(ErrorType.HTTP_STATUS, f"status {status}{answered}, expected {wanted}")
    if not expect.status and not 200 <= status < 300:
        raise fail(ErrorType.HTTP_STATUS, f"status {status}{answered}, expected 2xx")
    if expect.max_latency is not None and elapsed > expect.max_latency:
        raise fail(
            ErrorType.LATENCY,
            f"answered in {elapsed * 1000:.0f} ms, limit {expect.max_latency * 1000:.0f} ms",
        )
    if expect.tls is not None and answer.tls != expect.tls:
        raise fail(
            ErrorType.ASSERTION,
            "answer came over TLS, expected plain HTTP"
            if answer.tls
            else "answer came over plain HTTP, expected TLS",
        )
    if expect.http_version and answer.version not in expect.http_version:
        wanted = ", ".join(expect.http_version)
        raise fail(ErrorType.ASSERTION, f"answered in HTTP/{answer.version}, expected {wanted}")
    if expect.judges_headers:
        problem = _header_problem(expect, answer)
        if problem is not None:
            raise fail(ErrorType.ASSERTION, problem)
    text = answer.body.decode("utf-8", errors="replace")
    if expect.body_contains is not None and expect.body_contains not in text:
        raise fail(ErrorType.ASSERTION, f"body does not contain {expect.body_contains!r}")
    if expect.body_regex is not None and not expect.body_regex.search(text):
        raise fail(ErrorType.ASSERTION, f"body does not match /{expect.body_regex.pattern}/")
    if expect.body_not_regex is not None and expect.body_not_regex.search(text):
        raise fail(
            ErrorType.ASSERTION, f"body matches /{expect.body_not_regex.pattern}/, it must not"
        )
    if expect.json_fields:
        document = json_document(text, details)
        for path, wanted_value in expect.json_fields.items():
            found, value = lookup(document, path)
            if not found:
                raise fail(ErrorType.ASSERTION, f"JSON field {path} is missing")
            if value != wanted_value:
                raise fail(
                    ErrorType.ASSERTION,
                    f"JSON field {path} is {short(value)}, expected {short(wanted_value)}",
                )


def _header_problem(expect: HttpExpect, answer: Answer) -> str | None:
    """The first header expectation the answer misses, as a message; None if it meets
    them all."""
    for name, pattern in expect.headers.items():
        values = answer.header_values(name)
        if not values:
            return f"header {name} is missing"
        if not any(pattern.search(value) for value in values):
            if len(values) == 1:
                return (
                    f"header {name} does not match /{pattern.pattern}/ ({_shown(name, values[0])})"
                )
            return (
                f"header {name} does not match /{pattern.pattern}/ in any of its "
                f"{len(values)} values ({_shown(name, values[0], 'the first')})"
            )
    for name, pattern in expect.headers_not.items():
        for value in answer.header_values(name):
            if pattern.search(value):
                shown = _shown(name, value)
                return f"header {name} matches /{pattern.pattern}/, it must not ({shown})"
    return None


def _shown(name: str, value: str, which: str = "") -> str:
    """A header's value as a message quotes it: cut short, and not at all for a header
    whose name looks secret."""
    if _SECRET_NAME.search(name):
        return "value not shown"
    return f"{which} is {short(value)}".lstrip()
