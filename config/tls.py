"""Client TLS contexts from a check's ``tls:`` block.

Config validation builds each block's context once, so that a CA file that is not PEM,
a certificate file without a certificate or a key that does not fit is refused at load
time (exit 3 from ``probe --check-config``) rather than reported as an outage at 3 a.m.
The probes build the same contexts again when they first need them.
"""

from __future__ import annotations

import ssl
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.checks import TlsOptions

# OpenSSL's reason for a file with no PEM certificate in it.
_NO_CERTIFICATES = "NO_CERTIFICATE_OR_CRL_FOUND"
_KEY_MISMATCH = "KEY_VALUES_MISMATCH"


class TlsFileError(ValueError):
    """A file of a ``tls:`` block cannot be used; the message names the file and why."""


class _NoPassword(Exception):
    """Raised inside OpenSSL's password callback: the key is encrypted, no password is set."""


_checked: ContextVar[set[Hashable] | None] = ContextVar("checked_tls_files", default=None)


@contextmanager
def checking_once() -> Iterator[None]:
    """Within the block, check_files checks each distinct set of files only once.

    500 checks naming the system CA bundle would otherwise parse it 500 times (20 ms
    each); one config validation is one block, so a reload reads the files afresh.
    """
    token = _checked.set(set())
    try:
        yield
    finally:
        _checked.reset(token)


def check_files(options: TlsOptions) -> None:
    """Raise TlsFileError unless the block's files load (no files: nothing to check)."""
    if not (options.ca_file or options.cert_file):
        return  # loading the system CAs is slow, and they are not the config's business
    password = options.key_password.get_secret_value() if options.key_password else None
    files = (options.ca_file, options.cert_file, options.key_file, password)
    checked = _checked.get()
    if checked is not None and files in checked:
        return
    build_ssl_context(options)
    if checked is not None:
        checked.add(files)


def build_ssl_context(options: TlsOptions | None) -> ssl.SSLContext:
    """A client context: verification on unless the check says ``verify: false``.

    Raises TlsFileError when a configured file cannot be used.
    """
    ca_file = options.ca_file if options else None
    if ca_file is not None:
        _readable("ca_file", ca_file)
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except ssl.SSLError as exc:
        raise TlsFileError(f"ca_file {ca_file}: {_ca_problem(exc)}") from None
    except OSError as exc:  # gone or unreadable since the check above
        raise TlsFileError(f"ca_file {ca_file}: cannot read: {exc.strerror}") from None
    if options and options.cert_file:
        _load_cert_chain(context, options.cert_file, options)
    if options and not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_cert_chain(context: ssl.SSLContext, cert_file: Path, options: TlsOptions) -> None:
    key_file = options.key_file
    _readable("cert_file", cert_file)
    if key_file is not None:
        _readable("key_file", key_file)
    # load_cert_chain says "PEM lib" for a bad certificate and a bad key alike; reading
    # the certificate file alone first tells the two apart.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(cert_file))
    except ssl.SSLError:
        raise TlsFileError(f"cert_file {cert_file}: no certificates found") from None

    key_name = f"key_file {key_file}" if key_file else f"cert_file {cert_file}"
    password = options.key_password
    asked = False

    def give_password() -> bytes:
        # Always passed: without a callback OpenSSL prompts on the terminal for an
        # encrypted key, and a daemon would hang there.
        nonlocal asked
        asked = True
        if password is None:
            raise _NoPassword
        return password.get_secret_value().encode("utf-8")

    try:
        context.load_cert_chain(
            str(cert_file), str(key_file) if key_file else None, password=give_password
        )
    except _NoPassword:
        raise TlsFileError(f"{key_name} is encrypted: set key_password") from None
    except ssl.SSLError as exc:
        if exc.reason == _KEY_MISMATCH:
            problem = f"the key does not match the certificate in cert_file {cert_file}"
        elif asked:
            problem = "key_password does not decrypt the key"
        elif key_file is None:
            problem = "no private key found (set key_file if the key is in its own file)"
        else:
            problem = "no private key found (expected a PEM private key)"
        raise TlsFileError(f"{key_name}: {problem}") from None
    except OSError as exc:  # gone or unreadable since the checks above
        raise TlsFileError(f"{key_name}: cannot read: {exc.strerror}") from None
    except ValueError:  # the password is longer than OpenSSL accepts
        raise TlsFileError(f"{key_name}: key_password is too long") from None


def _readable(role: str, path: Path) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TlsFileError(f"{role} {path}: cannot read: {exc.strerror}") from None


def _ca_problem(exc: ssl.SSLError) -> str:
    if exc.reason == _NO_CERTIFICATES:
        return "no certificates found (expected PEM certificates)"
    return f"not a valid PEM certificate file ({exc.reason or exc.library or 'unreadable'})"
