"""Loopback certificates: one trusted CA and the leaves the TLS modes serve."""

import datetime as dt
import ssl
from enum import StrEnum
from pathlib import Path

import trustme

# Every name a client might use to reach a loopback node.
_IDENTITIES = ("localhost", "127.0.0.1")
GOOD_DAYS = 90


class CertVariant(StrEnum):
    """Which certificate a TLS listener presents."""

    GOOD = "good"
    # Issued by the trusted CA but already past not_after: verify_code 10.
    EXPIRED = "expired"
    # A genuinely self-signed certificate (an untrusted CA's own root): verify_code 18.
    SELF_SIGNED = "self_signed"


class CertAuthority:
    """A trustme CA whose PEM files live in `directory`.

    Files written: ``ca.pem`` (give it to clients as ``cafile``) and one
    ``<variant>.pem`` per `CertVariant`, each holding the private key and chain.
    """

    def __init__(self, *, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA()
        # A second CA nobody trusts; serving its own root makes a true self-signed leaf.
        stranger = trustme.CA()
        now = dt.datetime.now(dt.UTC)
        # 90 days, like a real ACME certificate, so warn/crit windows can be tested.
        good = self._ca.issue_cert(
            *_IDENTITIES,
            not_before=now - dt.timedelta(days=1),
            not_after=now + dt.timedelta(days=GOOD_DAYS),
        )
        expired = self._ca.issue_cert(
            *_IDENTITIES,
            not_before=now - dt.timedelta(days=30),
            not_after=now - dt.timedelta(days=1),
        )
        self.ca_file = directory / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        self._files: dict[CertVariant, Path] = {}
        pems = {
            CertVariant.GOOD: good.private_key_and_cert_chain_pem.bytes(),
            CertVariant.EXPIRED: expired.private_key_and_cert_chain_pem.bytes(),
            CertVariant.SELF_SIGNED: stranger.private_key_pem.bytes() + stranger.cert_pem.bytes(),
        }
        for variant, pem in pems.items():
            path = directory / f"{variant.value}.pem"
            path.write_bytes(pem)
            self._files[variant] = path
        self._contexts: dict[CertVariant, ssl.SSLContext] = {}

    def cert_file(self, variant: CertVariant) -> Path:
        """The key-and-chain PEM file for `variant`."""
        return self._files[variant]

    def server_context(self, variant: CertVariant = CertVariant.GOOD) -> ssl.SSLContext:
        """A server-side context presenting `variant`; cached, so rebinds reuse it."""
        if variant not in self._contexts:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self._files[variant])
            self._contexts[variant] = context
        return self._contexts[variant]

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))
