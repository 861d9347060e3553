"""``kind: tcp``: connect, optionally send and read, or speak a protocol preset."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    field_validator,
    model_validator,
)

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


_CAPTURE = re.compile(r"\$\{capture:([^}]*)\}")


@dataclass(frozen=True, slots=True)
class SendTemplate:
    """A dialogue's ``send:``: bytes, with holes that captures of earlier expects fill.

    ``pieces`` holds bytes ready to send (escapes decoded, ``${env:}``/``${file:}``
    references resolved) and, as ``str``, the names of the captures between them.
    The text is cut at ``${capture:NAME}`` before references are resolved, so a
    secret's value that happens to read ``${capture:x}`` is sent as it is.
    """

    written: str
    pieces: tuple[bytes | str, ...]

    def __repr__(self) -> str:  # resolved secrets stay out of reprs
        return repr(self.written)

    @property
    def captures(self) -> tuple[str, ...]:
        return tuple(piece for piece in self.pieces if isinstance(piece, str))

    def render(self, captured: Mapping[str, bytes]) -> bytes:
        return b"".join(
            piece if isinstance(piece, bytes) else captured[piece] for piece in self.pieces
        )


def _parse_template(value: Any) -> SendTemplate:
    if isinstance(value, SendTemplate):
        return value
    if not isinstance(value, str):
        raise ValueError("send must be a string")
    pieces: list[bytes | str] = []
    at = 0
    for hole in _CAPTURE.finditer(value):
        name = hole.group(1)
        if not name.isidentifier():
            raise ValueError(
                f"${{capture:{name}}}: a capture is named after a named group of an earlier "
                "expect, (?P<name>...): letters, digits and _"
            )
        pieces += [_unescape(resolve_in_escaped(value[at : hole.start()])), name]
        at = hole.end()
    pieces.append(_unescape(resolve_in_escaped(value[at:])))
    return SendTemplate(value, tuple(piece for piece in pieces if piece != b""))


Template = Annotated[
    SendTemplate,
    PlainValidator(_parse_template),
    PlainSerializer(lambda template: template.written, return_type=str),
]


class DialogueStep(Model):
    """One step of ``dialogue:``: exactly one of ``send``, ``expect``, ``starttls``."""

    send: Template | None = None
    """Bytes to send; backslash escapes and ``${capture:NAME}`` work, and references."""
    expect: BytesPattern | None = None
    """Read lines until one matches (a search within the line, without its CRLF)."""
    starttls: Literal[True] | None = None
    """Upgrade this connection to TLS with the check's ``tls:`` options, and judge the
    certificate as ``kind: tls`` does."""

    @model_validator(mode="after")
    def _one_action(self) -> DialogueStep:
        given = [key for key in ("send", "expect", "starttls") if getattr(self, key) is not None]
        if len(given) != 1:
            has = " and ".join(given) if given else "none"
            raise ValueError(
                f"a dialogue step has exactly one of send, expect, starttls (this one: {has})"
            )
        return self


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
    dialogue: list[DialogueStep] | None = Field(None, min_length=1)
    """Send and expect in turn, as blackbox_exporter's query_response; may start TLS."""

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
    def _dialogue_speaks_alone(self) -> TcpCheck:
        # A dialogue is the whole conversation: a send before it or a preset beside it
        # would put bytes on the wire the dialogue's expects do not know about.
        if self.dialogue is None:
            return self
        others = {
            "send": self.send,
            "expect.reply_regex": self.expect.reply_regex,
            f"protocol: {self.protocol}": self.protocol,
        }
        for key, value in others.items():
            if value is not None:
                raise ValueError(
                    f"dialogue cannot be combined with {key} (the dialogue does all the "
                    "sending and reading)"
                )
        return self

    @model_validator(mode="after")
    def _dialogue_coherent(self) -> TcpCheck:
        captured: set[str] = set()
        started_tls: int | None = None
        for index, step in enumerate(self.dialogue or ()):
            if step.expect is not None:
                captured |= set(step.expect.groupindex)
            elif step.send is not None:
                # Every earlier expect has matched by the time a send runs, so each
                # name either is captured then or never will be: say so now, not at 3 a.m.
                for name in step.send.captures:
                    if name not in captured:
                        known = ", ".join(sorted(captured)) or "none"
                        raise ValueError(
                            f"dialogue[{index}].send uses ${{capture:{name}}}, but no expect "
                            f"before it has a group (?P<{name}>...) (named groups so far: {known})"
                        )
            elif started_tls is not None:
                raise ValueError(
                    f"dialogue[{index}] starts TLS again (dialogue[{started_tls}] did): "
                    "a connection is upgraded once"
                )
            else:
                started_tls = index
        return self

    @property
    def speaks_tls(self) -> bool:
        """Whether the check upgrades its connection to TLS (where ``tls:`` applies)."""
        if self.protocol == "postgres":
            return True
        return any(step.starttls for step in self.dialogue or ())

    @model_validator(mode="after")
    def _tls_only_where_spoken(self) -> TcpCheck:
        # A tls: block on a check that never starts TLS would promise a verification
        # that never happens.
        if self.tls is not None and not self.speaks_tls:
            if self.protocol:
                what = f"protocol: {self.protocol}"
            elif self.dialogue:
                what = "a dialogue without a starttls step"
            else:
                what = "a tcp check without either"
            raise ValueError(
                "tls applies where a tcp check speaks TLS: protocol: postgres (its SSL "
                f"upgrade) or a dialogue with a starttls step; {what} makes no TLS "
                "connection (to check a certificate, use kind: tls)"
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
