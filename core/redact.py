"""Masking secrets before anything leaves the process.

Two layers: targets are shown without credentials or secret-looking query parameters,
and every rendered line is scrubbed of the config's secret values as a last defence
(an exception message may echo a header or URL we never meant to print).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "REDACTED"
_SECRET_PARAM = re.compile(
    r"token|key|pass|pwd|secret|sign|auth|ticket|session|credential", re.IGNORECASE
)


@functools.lru_cache(maxsize=32768)  # config-sized: every run names its node's URL
def redact_url(url: str) -> str:
    """``https://u:p@host/x?token=1&a=2`` -> ``https://host/x?token=REDACTED&a=2``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="/:,"
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "(unparseable URL)"


_SEPARATORS = re.compile(r"[\s;,=&]+")
_MIN_PIECE = 8  # shorter pieces ("Bearer", "k=") are words, not secrets


class Scrubber:
    """Replaces known secret values in rendered text; a no-op when there are none."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            # "Bearer <token>": the token alone must be masked too, wherever it shows up.
            pieces = [p for p in _SEPARATORS.split(secret) if len(p) >= _MIN_PIECE]
            for value in {secret, *pieces}:
                if len(value) < 4:  # masking "a" or "ok" everywhere would garble output
                    continue
                variants.add(value)
                variants.add(json.dumps(value, ensure_ascii=False)[1:-1])  # as inside JSON
                variants.add(json.dumps(value)[1:-1])
        ordered = sorted(variants, key=len, reverse=True)  # longest first: no partial masks
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        # With a few secrets, substring tests find "nothing to mask" (nearly every line)
        # five times faster than the regular expression; with many, one regex pass wins.
        self._few = ordered if len(ordered) <= 32 else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        if self._few is not None and not any(secret in text for secret in self._few):
            return text
        return self._pattern.sub(MASK, text)
