"""The probe registry: ``kind`` in the config -> the function that runs one attempt."""

from __future__ import annotations

from probes import freshness, http, proxy, tcp, tls
from probes.base import Probe

PROBES: dict[str, Probe] = {
    "http": http.probe,
    "proxy": proxy.probe,
    "tcp": tcp.probe,
    "tls": tls.probe,
    "freshness": freshness.probe,
}
