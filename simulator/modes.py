"""The failure modes a simulated peer can be switched into at runtime."""

from enum import StrEnum


class Mode(StrEnum):
    """How a simulated node behaves; each node kind supports a subset."""

    HEALTHY = "healthy"
    # The listening socket is closed, so connects get ECONNREFUSED.
    REFUSING = "refusing"
    # Accepts and then never answers.
    HANGING = "hanging"
    SLOW = "slow"
    ERRORING = "erroring"
    WRONG_BODY = "wrong_body"
    BAD_CERTIFICATE = "bad_certificate"
    EXPIRED_CERTIFICATE = "expired_certificate"
    # TCP RST (SO_LINGER 0) instead of an orderly close.
    RESET = "reset"
    TRICKLE = "trickle"
    HUGE_BODY = "huge_body"
    GARBAGE = "garbage"


TLS_MODES = frozenset({Mode.BAD_CERTIFICATE, Mode.EXPIRED_CERTIFICATE})

# Non-HTTP bytes a broken peer might answer with; the NUL byte makes every parser choke.
GARBAGE_BYTES = b"\x00\x01garbage\r\n\r\n"
