"""Values read from a source (a JSON field, a database column, a log line) as UTC times.

Accepted: datetimes (a naive one is in the source's zone), RFC 3339 / ISO 8601 text
(``2026-01-01T08:00:00+08:00``, ``...Z``, a space instead of the T; without an offset it
is in the source's zone), and unix time as a number or digits: seconds, or milliseconds
when it is 10^11 or more (10^11 seconds is the year 5138; 10^11 ms is 1973).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any

_MILLISECONDS_FROM = 1e11
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


class NotATimestamp(ValueError):
    """The value cannot be read as a point in time; the message says what it is."""


def to_utc(value: Any, zone: tzinfo) -> datetime:
    """``value`` as an aware UTC datetime; NotATimestamp when it is not a time."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=zone)
        return _in_utc(moment, value.isoformat())
    if isinstance(value, date):
        raise NotATimestamp(f"{value.isoformat()} is a date without a time of day")
    if isinstance(value, bool):  # before int: True is an int to Python
        raise NotATimestamp(f"{str(value).lower()} is a boolean, not a timestamp")
    if isinstance(value, int | float | Decimal):
        written = _shown(str(value))
        try:
            seconds = float(value)
        except OverflowError:  # an int of hundreds of digits
            raise NotATimestamp(f"{written} is out of range for a unix time") from None
        return _from_unix(seconds, written)
    if isinstance(value, str):
        return _from_text(value.strip(), zone)
    if value is None:
        raise NotATimestamp("null is not a timestamp")
    raise NotATimestamp(f"a {_kind(value)} is not a timestamp")


def _from_unix(seconds: float, written: str) -> datetime:
    if math.isnan(seconds) or seconds < 0:
        raise NotATimestamp(f"{written} is not a unix time")
    if seconds >= _MILLISECONDS_FROM:
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise NotATimestamp(f"{written} is out of range for a unix time") from None


def _from_text(text: str, zone: tzinfo) -> datetime:
    shown = _shown(text)
    if _NUMBER.match(text):
        return _from_unix(float(text), shown)
    # Python's parser wants an upper-case T and Z and a dot before fractions; RFC 3339
    # allows lower case, and log lines often write a comma.
    normal = text
    if len(normal) > 10 and normal[10] == "t":
        normal = normal[:10] + "T" + normal[11:]
    if normal.endswith("z"):
        normal = normal[:-1] + "Z"
    normal = re.sub(r"(:\d{2}),(\d)", r"\1.\2", normal)
    if len(normal) < 16 or not normal[:4].isdigit():  # a bare date or a word is no time
        raise NotATimestamp(f"'{shown}' is not an RFC 3339 timestamp or a unix time")
    try:
        moment = datetime.fromisoformat(normal)
    except ValueError:
        raise NotATimestamp(f"'{shown}' is not an RFC 3339 timestamp or a unix time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return _in_utc(moment, f"'{shown}'")


def _in_utc(moment: datetime, written: str) -> datetime:
    # Year 1 east of UTC, or year 9999 west of it, has no UTC datetime.
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise NotATimestamp(f"{written} is out of range in UTC") from None


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "JSON object"
    if isinstance(value, list):
        return "JSON array"
    return type(value).__name__
