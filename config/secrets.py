"""Secret values: written inline, or with ``${env:NAME}`` / ``${file:/path}`` references.

References keep tokens out of the config file (which ops copy around and commit to
their own repositories). A missing variable or unreadable file is a config error that
names the reference, never a value.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, SecretStr

_REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")


def resolve_secret(value: object) -> object:
    """Replace every ``${env:NAME}`` / ``${file:PATH}`` in a string (``Bearer ${env:T}``)."""
    if isinstance(value, SecretStr) or not isinstance(value, str):
        return value
    return _REFERENCE.sub(lambda match: _lookup(match.group(1), match.group(2)), value)


def _lookup(source: str, name: str) -> str:
    if source == "env":
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        if not os.environ[name]:
            raise ValueError(f"environment variable {name} is empty")
        return os.environ[name]
    try:
        # A trailing newline is how editors and `echo` leave secret files.
        text = Path(name).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"secret file {name} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"secret file {name} is empty")
    return text


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
"""A string shown as ``**********`` everywhere; may reference ``${env:X}`` or ``${file:P}``."""
