"""TLS pieces shared by every kind that opens a TLS connection (http, proxy, tls, tcp)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import Any

from config.checks import TlsOptions
from core.errors import ErrorType, ProbeFailure

# OpenSSL's X509_V_ERR_CERT_HAS_EXPIRED: reported on its own so that an expired
# certificate reads as "expired", not as a vague "verify failed".
_CERT_HAS_EXPIRED = 10

_DEFAULT_OPTIONS = TlsOptions()


def ssl_failure(exc: Exception, *, what: str = "TLS handshake failed") -> ProbeFailure:
    """A TLS error as ``tls`` (``tls_expired`` for an expired certificate). ``what`` leads
    the message of errors other than verification: an error after the handshake (a
    record that fails to decrypt) is not a handshake failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _CERT_HAS_EXPIRED:
            return ProbeFailure(ErrorType.TLS_EXPIRED, "certificate has expired")
        reason = exc.verify_message or exc.reason or "certificate verify failed"
        return ProbeFailure(ErrorType.TLS, f"certificate not trusted: {reason}")
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return ProbeFailure(ErrorType.TLS, f"{what}: {reason}")


def inspect_certificate(
    peercert: dict[str, Any] | None, options: TlsOptions | None, now: datetime
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Details and warnings for a verified peer certificate; raise inside ``crit_days``.

    ``peercert`` is what ``SSLSocket.getpeercert()`` returns; it is empty when
    verification is off, and then there is nothing trustworthy to judge.
    """
    if not peercert or "notAfter" not in peercert:
        return {}, ()
    options = options or _DEFAULT_OPTIONS
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(peercert["notAfter"]), UTC)
    days_left = (not_after - now).total_seconds() / 86400
    details: dict[str, Any] = {
        "tls_not_after": not_after.isoformat().replace("+00:00", "Z"),
        "tls_not_after_unix": int(not_after.timestamp()),
        "tls_days_left": round(days_left, 1),
    }
    subject = dict(pair[0] for pair in peercert.get("subject", ()) if pair)
    if "commonName" in subject:
        details["tls_subject_cn"] = subject["commonName"]
    when = not_after.strftime("%Y-%m-%d")
    if days_left < options.crit_days:
        raise ProbeFailure(
            ErrorType.CERT_EXPIRING,
            f"certificate expires in {days_left:.0f} days ({when}); critical below "
            f"{options.crit_days}",
            details=details,
        )
    if days_left < options.warn_days:
        return details, (f"certificate expires in {days_left:.0f} days ({when})",)
    return details, ()
