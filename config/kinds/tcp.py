"""``kind: tcp``: connect, optionally send and read, or speak a protocol preset."""

from __future__ import annotations

import codecs
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PlainSerializer, field_validator, model_validator

from config.checks import AddressNode, CheckBase
from config.common import Model
from config.fields import BytesPattern, MiB
from config.registry import KINDS
from config.secrets import as_written, resolve_in_escaped

Payload = Annotated[
    str, AfterValidator(resolve_in_escaped), PlainSerializer(as_written, return_type=str)
]
"""A TCP ``send:``: references resolved, values kept apart from the backslash escapes."""


class TcpExpect(Model):
    reply_regex: BytesPattern | None = None
    """A pattern the first bytes the peer sends must match (a middleware banner)."""


TcpProtocol = Literal["mysql", "postgres", "redis", "amqp", "ssh", "smtp"]
"""The ``protocol:`` presets of ``kind: tcp`` (the package probes/tcp_protocols/ speaks them)."""


@KINDS.register(probe="probes.tcp")
class TcpCheck(CheckBase):
    kind: Literal["tcp"]
    nodes: list[AddressNode] = Field(min_length=1)
    send: Payload | None = None
    """Bytes to send once connected; backslash escapes such as \\r\\n are understood.
    References are resolved; their values are sent as they are, escapes and all."""
    expect: TcpExpect = TcpExpect()
    max_read_bytes: int = Field(4096, ge=1, le=1 * MiB)
    protocol: TcpProtocol | None = None
    """Speak just enough of this protocol to know the service answers (no credentials)."""

    @model_validator(mode="after")
    def _protocol_speaks_alone(self) -> TcpCheck:
        # A preset writes and reads its own conversation: bytes of the user's own, or a
        # pattern over bytes nobody can predict (binary greetings), would fight with it.
        if self.protocol is not None:
            own = {"send": self.send, "expect.reply_regex": self.expect.reply_regex}
            for key, value in own.items():
                if value is not None:
                    raise ValueError(
                        f"{key} cannot be combined with protocol: {self.protocol} "
                        "(the preset speaks the protocol itself)"
                    )
        return self

    @model_validator(mode="after")
    def _tls_only_for_postgres(self) -> TcpCheck:
        # Only the postgres preset upgrades its connection to TLS: a tls: block anywhere
        # else would promise a verification that never happens.
        if self.tls is not None and self.protocol != "postgres":
            what = f"protocol: {self.protocol}" if self.protocol else "a tcp check without one"
            raise ValueError(
                f"tls applies to protocol: postgres only (its SSL upgrade); {what} makes no "
                "TLS connection (to check a certificate, use kind: tls)"
            )
        return self

    @field_validator("send")
    @classmethod
    def _escapes_valid(cls, value: str | None) -> str | None:
        if value is not None:
            _unescape(value)
        return value

    @property
    def payload(self) -> bytes:
        return _unescape(self.send) if self.send else b""


def _unescape(text: str) -> bytes:
    """``"PING\\r\\n"`` as written in YAML single quotes -> the bytes b"PING\\r\\n"."""
    try:
        decoded: bytes = codecs.escape_decode(text.encode("utf-8"))[0]
        return decoded
    except ValueError as exc:
        raise ValueError(f"bad escape in send: {exc}") from None
