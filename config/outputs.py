"""Where events go: the ``outputs:`` list of the config file (models only; events/outputs
does the writing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, ByteSize, Field, model_validator

from config.common import Model, Name, check_address
from config.duration import Duration


def check_spool_dir(path: Path) -> Path:
    """Refuse a spool_dir that nobody could create: it, or its nearest existing
    ancestor, is not a directory. Whether the daemon's user may write there is left to
    the start, which reports it: ``probe --check-config`` may run as another user."""
    for where in (path, *path.parents):
        try:
            exists, is_dir = where.exists(), where.is_dir()
        except OSError:  # this user may not look there; the daemon's user may
            return path
        if exists:
            if is_dir:
                return path
            where_text = "" if where == path else f"cannot be created: {where} "
            raise ValueError(f"spool_dir {str(path)!r} {where_text}is not a directory")
    return path


class StreamOutput(Model):
    """JSON lines on stdout or stderr (journald keeps them under systemd)."""

    type: Literal["stderr", "stdout"]
    name: Name | None = None


class FileOutput(Model):
    """A JSON-lines file, rotated by rename when it would pass ``max_bytes``."""

    type: Literal["file"]
    name: Name | None = None
    path: Path
    max_bytes: ByteSize = Field(ByteSize(50_000_000), ge=4096)
    """``50MB`` is 50,000,000 bytes, ``50MiB`` 52,428,800."""
    backups: int = Field(10, ge=0, le=1000)
    """Rotated files kept beside the live one: events.jsonl.1 (newest) .. .N."""


class SyslogTls(Model):
    """RFC 5425: the collector's CA and, when it asks for one, our client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    verify: bool = True

    @model_validator(mode="after")
    def _files(self) -> SyslogTls:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {str(path)!r} is not a readable file")
        return self


FACILITIES = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
    **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip


class SyslogOutput(Model):
    """RFC 5424 to a collector over UDP, TCP (octet counting) or TLS (RFC 5425)."""

    type: Literal["syslog"]
    name: Name | None = None
    transport: Literal["udp", "tcp", "tls", "relp"] = "tcp"
    """relp: rsyslog's acknowledged protocol (imrelp); the only one where a collector's
    restart can lose nothing at all (docs/events.md)."""
    address: Annotated[str, AfterValidator(check_address)]
    format: Literal["json", "cef"] = "json"
    facility: Literal[tuple(FACILITIES)] = "local0"  # type: ignore[valid-type]
    app_name: str = Field("hotline-probe", min_length=1, max_length=48, pattern=r"^[!-~]+$")
    sd_id: str = Field("hotline_probe@32473", min_length=1, max_length=32, pattern=r"^[!-~]+$")
    """The structured-data element's id: NAME@PEN. 32473 is IANA's number reserved for
    documentation (RFC 5612); put your organisation's own number here if it has one."""
    tls: SyslogTls | None = None
    spool_dir: Annotated[Path, AfterValidator(check_spool_dir)] | None = None
    """Where events wait on disk while the collector is unreachable (TCP and TLS); kept
    across restarts. Without it they wait in memory only, up to ``queue_events``."""
    spool_max_bytes: ByteSize = Field(ByteSize(100_000_000), ge=64 * 1024)
    queue_events: int = Field(10_000, ge=10, le=1_000_000)
    """Events held in memory on their way to the collector before they go to the spool."""
    connect_timeout: Duration = Field(5.0, gt=0)
    reconnect_max: Duration = Field(30.0, gt=0)
    """Reconnection attempts back off from half a second up to this."""
    send_timeout: Duration = Field(10.0, gt=0)
    """A collector that takes no bytes for this long (it accepted, then stalled) is
    treated as down: the connection is dropped and events go to the spool."""

    @model_validator(mode="after")
    def _consistent(self) -> SyslogOutput:
        if self.transport != "tls" and self.tls is not None:
            raise ValueError(f"tls: applies only to transport: tls, not {self.transport}")
        if self.transport == "udp" and self.spool_dir is not None:
            raise ValueError(
                "spool_dir needs transport tcp or tls (UDP cannot tell that a collector is down)"
            )
        return self


Output = Annotated[StreamOutput | FileOutput | SyslogOutput, Field(discriminator="type")]


def output_names(outputs: list[StreamOutput | FileOutput | SyslogOutput]) -> list[str]:
    """Each output's label in metrics and events: its ``name``, else ``type-N`` by position."""
    return [o.name or f"{o.type}-{i}" for i, o in enumerate(outputs)]


def check_outputs(outputs: list[StreamOutput | FileOutput | SyslogOutput]) -> None:
    """Rules across the list: two outputs sharing a name, a file or a spool would corrupt
    each other's files."""
    names = output_names(outputs)
    for label, values in (
        ("name", names),
        ("path", [str(o.path) for o in outputs if isinstance(o, FileOutput)]),
        (
            "spool_dir",
            [str(o.spool_dir) for o in outputs if isinstance(o, SyslogOutput) and o.spool_dir],
        ),
    ):
        seen: set[str] = set()
        for value in values:
            if value in seen:
                raise ValueError(f"two outputs use the same {label} {value!r}")
            seen.add(value)
