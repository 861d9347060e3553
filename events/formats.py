"""Wire formats for the syslog output: RFC 5424 with the JSON event as MSG, and ArcSight CEF.

Both take the event document (for the few fields that go in headers) and, for JSON, the
line the pipeline already rendered: an event is serialised once, whatever the outputs.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from config.outputs import FACILITIES, SyslogOutput

BOM = "\ufeff"  # RFC 5424 6.4: a UTF-8 MSG starts with the byte order mark
NILVALUE = "-"
SEVERITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
CEF_SEVERITY = {"debug": 1, "info": 3, "warning": 6, "error": 8, "critical": 10}


def without_surrogates(text: str) -> str:
    """A lone surrogate (bytes that were not UTF-8, decoded with surrogateescape) becomes
    U+FFFD, so that the text can be encoded as UTF-8 instead of failing the whole event."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def utf8(text: str) -> bytes:
    """Valid UTF-8 whatever the text holds (see without_surrogates)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return without_surrogates(text).encode("utf-8", "replace")


def scrub_each(values: list[Any], scrub: Callable[[str], str]) -> list[str]:
    """Scrub raw values before they are escaped (an escaped secret no longer matches),
    in one pass: joined by NUL, which no value keeps."""
    texts = [v if type(v) is str else str(v) for v in values]
    joined = "\0".join(texts)
    if joined.count("\0") != len(texts) - 1:  # a value holds a NUL of its own (rare)
        joined = "\0".join(t.replace("\0", " ") for t in texts)
    return scrub(joined).split("\0")


_NOT_PRINTUSASCII = re.compile(r"[^!-~]")


def header_token(value: object, limit: int) -> str:
    """HOSTNAME, APP-NAME, PROCID, MSGID: printable US-ASCII without spaces, capped."""
    text = _NOT_PRINTUSASCII.sub("_", str(value))[:limit]
    return text or NILVALUE


_SD_ESCAPE = re.compile(r'["\\\]]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


_SD_SPECIAL = re.compile(r'["\\\]\x00-\x1f\x7f]')
_SD_SPECIAL_BUT_NUL = re.compile(r'["\\\]\x01-\x1f\x7f]')


def sd_value(value: object) -> str:
    """RFC 5424 6.3.3: escape ``"``, ``\\`` and ``]``; control characters become spaces
    so that a value never breaks a collector's line-oriented parser."""
    text = str(value)
    if _SD_SPECIAL.search(text) is None:  # names and numbers, nearly always
        return text
    return _SD_ESCAPE.sub(lambda m: "\\" + m.group(), _CONTROL.sub(" ", text))


_EMPTY: Mapping[str, Any] = {}


def _part(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A sub-object of the event, or an empty one."""
    value = doc.get(key)
    return value if type(value) is dict else _EMPTY


@functools.lru_cache(maxsize=64)  # a dozen actions, each seen thousands of times
def _msgid(action: str) -> str:
    return header_token(action, 32)


class Rfc5424:
    """Builds ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`` frames."""

    def __init__(self, config: SyslogOutput, hostname: str) -> None:
        self.facility = FACILITIES[config.facility]
        self.prefix_tail = " ".join(
            (header_token(hostname, 255), header_token(config.app_name, 48), str(os.getpid()))
        )
        self.sd_id = config.sd_id
        self.cef = config.format == "cef"

    def frame(self, doc: Mapping[str, Any], json_line: str, scrub: Callable[[str], str]) -> bytes:
        """``json_line`` is scrubbed already; the parts taken from ``doc`` are scrubbed here."""
        event = _part(doc, "event")
        level = _part(doc, "log").get("level") or "info"
        pri = self.facility * 8 + SEVERITY.get(level, 6)
        msgid = _msgid(event.get("action") or NILVALUE)
        if self.cef:  # the CEF extension carries these fields: no structured data
            return utf8(
                f"<{pri}>1 {doc['@timestamp']} {self.prefix_tail} {msgid} - {cef_line(doc, scrub)}"
            )
        # An event is framed for every check run: the fields are read directly rather
        # than through a table of paths (half the cost of the frame).
        service = _part(doc, "service")
        monitor = _part(doc, "monitor")
        found = [
            (name, value)
            for name, value in (
                ("id", event.get("id")),
                ("seq", event.get("sequence")),
                ("action", event.get("action")),
                ("outcome", event.get("outcome")),
                ("check", monitor.get("id")),
                ("node", _part(service, "node").get("name")),
                ("status", monitor.get("status")),
                ("state", _part(doc, "state").get("status")),
                ("error", _part(doc, "error").get("type")),
            )
            if value is not None
        ]
        # Scrubbed before escaping (an escaped secret, "a\\]b", would no longer match),
        # all values in one pass; escaped only when one of them needs it.
        joined = scrub("\0".join(str(v).replace("\0", " ") for _, v in found))
        values = joined.split("\0")
        if _SD_SPECIAL_BUT_NUL.search(joined) is not None:
            values = [sd_value(v) for v in values]
        params = " ".join(f'{name}="{v}"' for (name, _), v in zip(found, values, strict=True))
        sd = f"[{self.sd_id} {params}]" if found else NILVALUE
        text = f"<{pri}>1 {doc['@timestamp']} {self.prefix_tail} {msgid} {sd} {BOM}{json_line}"
        return utf8(text)


# --- CEF ---------------------------------------------------------------------------

_CEF_HEADER = re.compile(r"[\\|]")
_CEF_EXT = re.compile(r"[\\=]")


_CEF_HEADER_SPECIAL = re.compile(r"[\\|\r\n]")


def cef_header(value: object) -> str:
    text = str(value)
    if _CEF_HEADER_SPECIAL.search(text) is None:
        return text
    text = _CEF_HEADER.sub(lambda m: "\\" + m.group(), text)
    return text.replace("\r", " ").replace("\n", " ")


_CEF_EXT_SPECIAL = re.compile(r"[\\=\r\n]")


def cef_ext(value: object) -> str:
    text = str(value)
    if _CEF_EXT_SPECIAL.search(text) is None:
        return text
    text = _CEF_EXT.sub(lambda m: "\\" + m.group(), text)
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


_CEF_LABELS = "cn1Label=sequence cs1Label=check cs2Label=node cs3Label=status cs4Label=errorType"


def cef_line(doc: Mapping[str, Any], scrub: Callable[[str], str] = str) -> str:
    """``CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension``."""
    # Documents from events.ecs are plain dicts: read directly (a table of paths cost a
    # third of the line). Header and extension values are scrubbed together, before
    # escaping.
    get = doc.get
    observer = get("observer") or _EMPTY
    event = get("event") or _EMPTY
    monitor = get("monitor") or _EMPTY
    error = get("error") or _EMPTY
    destination = get("destination") or _EMPTY
    level = (get("log") or _EMPTY).get("level") or "info"
    fields = (
        ("externalId", event.get("id")),
        ("cn1", event.get("sequence")),
        ("act", event.get("action")),
        ("outcome", event.get("outcome")),
        ("cs1", monitor.get("id")),
        ("cs2", ((get("service") or _EMPTY).get("node") or _EMPTY).get("name")),
        ("cs3", monitor.get("status")),
        ("cs4", error.get("type")),
        ("reason", error.get("message")),
        ("dhost", destination.get("address")),
        ("dpt", destination.get("port")),
        ("request", (get("url") or _EMPTY).get("full")),
        ("dvchost", observer.get("hostname")),
        ("msg", doc.get("message")),
    )
    found = [(key, value) for key, value in fields if value is not None]
    head = [
        observer.get("vendor", "Haining 12345 operations"),
        observer.get("product", "hotline-probe"),
        observer.get("version", "0"),
        event.get("action") or "event",
        doc.get("message", ""),
    ]
    values = scrub_each(head + [v for _, v in found], scrub)
    header = "|".join(cef_header(v) for v in values[: len(head)])
    ext = " ".join(
        f"{key}={cef_ext(v)}" for (key, _), v in zip(found, values[len(head) :], strict=True)
    )
    return (
        f"CEF:0|{header}|{CEF_SEVERITY.get(level, 3)}|"
        f"rt={_epoch_ms(doc['@timestamp'])} {ext} {_CEF_LABELS}"
    )


def _epoch_ms(timestamp: str) -> int | str:
    """CEF's ``rt`` as milliseconds since the epoch, the form every CEF reader parses.
    Our timestamps are ``YYYY-MM-DDTHH:MM:SS.mmmZ``: the second is parsed once and
    cached (events come in runs within a second), the milliseconds added."""
    if len(timestamp) == 24 and timestamp[19] == "." and timestamp[23] == "Z":
        ms = timestamp[20:23]
        if ms.isdigit():
            second = _epoch_second(timestamp[:19])
            if second is not None:
                return second * 1000 + int(ms)
    try:
        return int(datetime.fromisoformat(timestamp).timestamp() * 1000)
    except ValueError:
        return cef_ext(timestamp)


@functools.lru_cache(maxsize=8)
def _epoch_second(text: str) -> int | None:
    try:
        return int(datetime.fromisoformat(text + "+00:00").timestamp())
    except ValueError:
        return None
