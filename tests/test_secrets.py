"""``${file:...}`` references read a bounded amount from regular files only.

A secret is small: a path that names a device, a FIFO, a directory or a large file is a
mistake, and reading it without a bound filled memory (``/dev/zero``) or hung the load
(a FIFO with no writer), at start and at every reload alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.kinds.http import HttpCheck
from config.load import ConfigError, load_config, parse_config
from config.secrets import SECRET_FILE_LIMIT

pytestmark = pytest.mark.timeout(10)  # a read that blocks fails here, not at 60 s


def config_with_secret(path: Path | str) -> str:
    return f"""
checks:
  - name: web
    kind: http
    headers: {{X-Token: "${{file:{path}}}"}}
    nodes: [{{name: a, url: "https://a.invalid/"}}]
"""


def refusal(path: Path | str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(config_with_secret(path))
    return str(raised.value)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO with no writer: refused at once, where a read would wait for ever."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    assert f"checks[0].headers.X-Token: secret file {fifo} is a FIFO, not a regular file" in (
        refusal(fifo)
    )


def test_a_device_is_refused() -> None:
    """/dev/zero never ends: refused by its type before a byte is read."""
    message = refusal("/dev/zero")
    assert "checks[0].headers.X-Token: secret file /dev/zero is a character device" in message


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert f"secret file {tmp_path} is a directory, not a regular file" in refusal(tmp_path)


def test_a_file_over_the_bound_is_refused_naming_it_not_its_value(tmp_path: Path) -> None:
    """One byte over 64 KiB: refused, with the path and the bound but none of the text."""
    big = tmp_path / "token"
    big.write_text("canary-big-" + "x" * SECRET_FILE_LIMIT)
    message = refusal(big)
    assert f"checks[0].headers.X-Token: secret file {big} is larger than 64 KiB" in message
    assert "canary-big" not in message


def test_a_file_at_the_bound_is_read(tmp_path: Path) -> None:
    """64 KiB exactly (a long token or a certificate chain pasted in) still loads."""
    token = tmp_path / "token"
    token.write_text("t" * SECRET_FILE_LIMIT)
    check = parse_config(config_with_secret(token)).checks[0]
    assert isinstance(check, HttpCheck)
    assert len(check.headers["X-Token"].get_secret_value()) == SECRET_FILE_LIMIT


def test_reload_reads_through_the_same_bound(tmp_path: Path) -> None:
    """A reload loads the file again (load_config): a secret that became a FIFO is refused."""
    token = tmp_path / "token"
    token.write_text("first")
    config = tmp_path / "config.yaml"
    config.write_text(config_with_secret(token))
    load_config(config)
    token.unlink()
    os.mkfifo(token)
    with pytest.raises(ConfigError, match="is a FIFO, not a regular file"):
        load_config(config)
