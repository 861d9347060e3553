"""Secret values: written inline, or with ``${env:NAME}`` / ``${file:/path}`` references.

References keep tokens out of the config file (which ops copy around and commit to
their own repositories). A missing variable or unreadable file is a config error that
names the reference, never a value.

References work in header values (``Secret``: the whole value is masked everywhere) and
inside larger strings that are not secrets as a whole: node URLs, HTTP bodies, TCP
payloads. There only the substituted values are secret, so every value a reference
resolves to is recorded while a config is validated (``collect_references``) and the
config reports them for scrubbing output; masking a whole SOAP envelope would garble it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated
from urllib.parse import quote

from pydantic import BeforeValidator, SecretStr

_REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")

_collected: ContextVar[set[str] | None] = ContextVar("referenced_secrets", default=None)


@contextmanager
def collect_references() -> Iterator[set[str]]:
    """Within the block, every value a reference resolves to is added to the yielded set."""
    found: set[str] = set()
    token = _collected.set(found)
    try:
        yield found
    finally:
        _collected.reset(token)


def references_so_far() -> frozenset[str]:
    """What references resolved to so far in the innermost collect_references block."""
    return frozenset(_collected.get() or ())


def resolve_references(text: str, *, encode: Callable[[str], str] | None = None) -> str:
    """Replace every ``${env:NAME}`` / ``${file:PATH}`` in ``text`` (``Bearer ${env:T}``).

    ``encode`` fits a value into its surroundings (percent-encoding inside a URL); both
    the value and its encoded form are recorded, as either may show up in output.
    """

    def substitute(match: re.Match[str]) -> str:
        value = _lookup(match.group(1), match.group(2))
        encoded = encode(value) if encode else value
        found = _collected.get()
        if found is not None:
            found.update((value, encoded))
        return encoded

    return _REFERENCE.sub(substitute, text)


def resolve_secret(value: object) -> object:
    """References in a value that is secret as a whole (a header value)."""
    if isinstance(value, SecretStr) or not isinstance(value, str):
        return value
    return resolve_references(value)


class Resolved(str):
    """A string whose references are resolved, which remembers how it was written.

    The probes use it as the string it is; reprs and config dumps show ``written``, so
    the values that references resolved to never leak through them.
    """

    written: str

    def __new__(cls, value: str, written: str) -> Resolved:
        self = super().__new__(cls, value)
        self.written = written
        return self

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]  # copy, pickle
        return str(self), self.written

    def __repr__(self) -> str:
        return repr(self.written)


def as_written(value: str) -> str:
    """The text as the config file wrote it: references unresolved."""
    return value.written if isinstance(value, Resolved) else value


def _resolved(text: str, encode: Callable[[str], str] | None = None) -> str:
    if not _REFERENCE.search(text):
        return text
    return Resolved(resolve_references(text, encode=encode), text)


def resolve_in_text(text: str) -> str:
    """References in a request body: substituted as they are."""
    return _resolved(text)


def resolve_in_url(url: str) -> str:
    """References in a URL: each stands for one component's value and is percent-encoded.

    ``https://u:${env:PW}@host/`` then works with any password (``@``, ``/``, ``+``),
    and ``?sign=${env:SIGN}`` sends the value, not a ``+`` the server reads as a space.
    """
    return _resolved(url, encode=lambda v: quote(v, safe=""))


def resolve_in_escaped(text: str) -> str:
    """References in a TCP ``send:``: backslashes in a value are sent as they are.

    ``send`` understands escapes such as ``\\r\\n``; a value must not be read as one.
    """
    return _resolved(text, encode=lambda v: v.replace("\\", "\\\\"))


def _lookup(source: str, name: str) -> str:
    if source == "env":
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        if not os.environ[name]:
            raise ValueError(f"environment variable {name} is empty")
        return os.environ[name]
    try:
        # A trailing newline is how editors and `echo` leave secret files.
        text = _read_secret_file(name).decode("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"secret file {name} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"secret file {name} is empty")
    return text


SECRET_FILE_LIMIT = 64 * 1024
"""The most a ``${file:...}`` reference reads: secrets are small, and the limit keeps a
mistaken path (``/dev/zero``, a log file) from filling memory at load and reload."""

_NOT_REGULAR = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _read_secret_file(name: str) -> bytes:
    """At most SECRET_FILE_LIMIT bytes of a regular file; anything else is refused.

    Opened without blocking (a FIFO with no writer would hang the load) and judged by
    the opened descriptor, so the file cannot be swapped between the look and the read.
    """
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = _NOT_REGULAR.get(stat.S_IFMT(mode), "a special file")
            raise ValueError(f"secret file {name} is {what}, not a regular file")
        data = b""
        while len(data) <= SECRET_FILE_LIMIT:
            piece = os.read(fd, SECRET_FILE_LIMIT + 1 - len(data))
            if not piece:
                break
            data += piece
    finally:
        os.close(fd)
    if len(data) > SECRET_FILE_LIMIT:
        raise ValueError(f"secret file {name} is larger than {SECRET_FILE_LIMIT // 1024} KiB")
    return data


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
"""A string shown as ``**********`` everywhere; may reference ``${env:X}`` or ``${file:P}``."""
