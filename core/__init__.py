"""The ground floor: what every layer shares, and nothing that imports another layer.

Results and error types (``result``, ``errors``), the clock (time is injected), secret
redaction (``redact``) and the push heartbeats' store (``heartbeats``). Config, probes,
the engine, events, web and the front ends all stand on it; it stands on the standard
library alone. The floors are a contract in pyproject.toml that ``make lint`` checks.
"""
