"""Wire formats for the syslog output: RFC 5424 with the JSON event as MSG, and ArcSight CEF.

Both take the event document (for the few fields that go in headers) and, for JSON, the
line the pipeline already rendered: an event is serialised once, whatever the outputs.
"""

from __future__ import annotations

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


def utf8(text: str) -> bytes:
    """Valid UTF-8 whatever the text holds: a lone surrogate (bytes that were not UTF-8,
    decoded with surrogateescape) becomes U+FFFD instead of failing the whole event."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return fixed.encode("utf-8", "replace")


_NOT_PRINTUSASCII = re.compile(r"[^!-~]")


def header_token(value: object, limit: int) -> str:
    """HOSTNAME, APP-NAME, PROCID, MSGID: printable US-ASCII without spaces, capped."""
    text = _NOT_PRINTUSASCII.sub("_", str(value))[:limit]
    return text or NILVALUE


_SD_ESCAPE = re.compile(r'["\\\]]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sd_value(value: object) -> str:
    """RFC 5424 6.3.3: escape ``"``, ``\\`` and ``]``; control characters become spaces
    so that a value never breaks a collector's line-oriented parser."""
    return _SD_ESCAPE.sub(lambda m: "\\" + m.group(), _CONTROL.sub(" ", str(value)))


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# (SD-PARAM name, path in the event): the fields a SIEM rule filters on without parsing
# the JSON. PARAM-NAMEs are at most 32 printable characters without '=', ' ', ']', '"'.
_SD_FIELDS = (
    ("id", ("event", "id")),
    ("seq", ("event", "sequence")),
    ("action", ("event", "action")),
    ("outcome", ("event", "outcome")),
    ("check", ("monitor", "id")),
    ("node", ("service", "node", "name")),
    ("status", ("monitor", "status")),
    ("state", ("state", "status")),
    ("error", ("error", "type")),
)


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
        level = _get(doc, "log", "level") or "info"
        pri = self.facility * 8 + SEVERITY.get(level, 6)
        msgid = header_token(_get(doc, "event", "action") or NILVALUE, 32)
        params = [
            f'{name}="{sd_value(value)}"'
            for name, path in _SD_FIELDS
            if (value := _get(doc, *path)) is not None
        ]
        sd = scrub(f"[{self.sd_id} {' '.join(params)}]") if params else NILVALUE
        msg = scrub(cef_line(doc)) if self.cef else BOM + json_line
        text = f"<{pri}>1 {doc['@timestamp']} {self.prefix_tail} {msgid} {sd} {msg}"
        return utf8(text)


# --- CEF ---------------------------------------------------------------------------

_CEF_HEADER = re.compile(r"[\\|]")
_CEF_EXT = re.compile(r"[\\=]")


def cef_header(value: object) -> str:
    text = _CEF_HEADER.sub(lambda m: "\\" + m.group(), str(value))
    return text.replace("\r", " ").replace("\n", " ")


def cef_ext(value: object) -> str:
    text = _CEF_EXT.sub(lambda m: "\\" + m.group(), str(value))
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


# (CEF extension key, path in the event); the cs/cn labels say what the custom ones hold.
_CEF_FIELDS = (
    ("externalId", ("event", "id")),
    ("cn1", ("event", "sequence")),
    ("act", ("event", "action")),
    ("outcome", ("event", "outcome")),
    ("cs1", ("monitor", "id")),
    ("cs2", ("service", "node", "name")),
    ("cs3", ("monitor", "status")),
    ("cs4", ("error", "type")),
    ("reason", ("error", "message")),
    ("dhost", ("destination", "address")),
    ("dpt", ("destination", "port")),
    ("request", ("url", "full")),
    ("dvchost", ("observer", "hostname")),
    ("msg", ("message",)),
)
_CEF_LABELS = "cn1Label=sequence cs1Label=check cs2Label=node cs3Label=status cs4Label=errorType"


def cef_line(doc: Mapping[str, Any]) -> str:
    """``CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension``."""
    observer = _get(doc, "observer") or {}
    level = _get(doc, "log", "level") or "info"
    header = "|".join(
        cef_header(v)
        for v in (
            "CEF:0",
            observer.get("vendor", "Haining 12345 operations"),
            observer.get("product", "hotline-probe"),
            observer.get("version", "0"),
            _get(doc, "event", "action") or "event",
            doc.get("message", ""),
            CEF_SEVERITY.get(level, 3),
        )
    )
    ext = [f"rt={_epoch_ms(doc['@timestamp'])}"]
    for key, path in _CEF_FIELDS:
        value = _get(doc, *path)
        if value is not None:
            ext.append(f"{key}={cef_ext(value)}")
    return f"{header}|{' '.join(ext)} {_CEF_LABELS}"


def _epoch_ms(timestamp: str) -> int | str:
    """CEF's ``rt`` as milliseconds since the epoch, the form every CEF reader parses."""
    try:
        return int(datetime.fromisoformat(timestamp).timestamp() * 1000)
    except ValueError:
        return cef_ext(timestamp)
