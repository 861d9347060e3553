"""Secrets are masked in targets and scrubbed from any rendered text."""

from __future__ import annotations

import json

from core.redact import MASK, Scrubber, redact_url


def test_url_credentials_removed() -> None:
    """user:password@ never survives into a printed target."""
    assert redact_url("https://ops:s3cr3t@a.invalid:8443/x") == "https://a.invalid:8443/x"


def test_secret_query_parameters_masked() -> None:
    """token/key/sign/password-like parameters are masked, others kept in order."""
    url = "https://a.invalid/api?appKey=k1&page=2&sign=abc&access_token=t&Password=p&q=ok"
    assert redact_url(url) == (
        f"https://a.invalid/api?appKey={MASK}&page=2&sign={MASK}"
        f"&access_token={MASK}&Password={MASK}&q=ok"
    )


def test_url_without_secrets_unchanged() -> None:
    """A plain URL keeps its path and harmless query."""
    assert redact_url("http://127.0.0.1:8080/health?verbose=1") == (
        "http://127.0.0.1:8080/health?verbose=1"
    )


def test_scrubber_masks_raw_and_json_escaped_values() -> None:
    """A secret is masked whether it appears raw or escaped inside a JSON string."""
    scrub = Scrubber(['canary-"quoted"-91', "令牌canary"])
    line = json.dumps({"m": 'failed with canary-"quoted"-91 and 令牌canary'})
    cleaned = scrub(line)
    assert "canary-" not in cleaned
    assert "令牌canary" not in cleaned
    assert "\\u4ee4" not in cleaned
    assert cleaned.count(MASK) == 2
    ascii_line = json.dumps({"m": "令牌canary"}, ensure_ascii=True)
    assert MASK in scrub(ascii_line)


def test_scrubber_ignores_trivially_short_values() -> None:
    """A one-letter 'secret' would garble every line; it is not used as a mask."""
    assert Scrubber(["a"])("banana") == "banana"
    assert Scrubber([])("anything") == "anything"


def test_scrubber_masks_the_token_inside_a_header_value() -> None:
    """From "Bearer <token>" the token alone is masked too; the word Bearer is left."""
    scrub = Scrubber(["Bearer canary-tok-123456"])
    assert scrub("peer said: invalid token canary-tok-123456") == (
        f"peer said: invalid token {MASK}"
    )
    assert scrub("Bearer is a word") == "Bearer is a word"
