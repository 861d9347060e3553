"""A real rsyslogd (Debian's package) on loopback, for the syslog output's tests.

It listens on UDP, plain TCP and TLS (gtls, from rsyslog-gnutls) on free ports and writes
each message as received (the whole RFC 5424 frame, one per line) to a file per input.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port

RSYSLOGD = "/usr/sbin/rsyslogd"
INSTALL_HINT = "run `scripts/install-test-deps.sh .venv` as root (or `make deps`)"


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path | None = None  # when set, the collector requires a client certificate


class Rsyslog:
    def __init__(self, directory: Path, tls: TlsFiles | None = None) -> None:
        if not Path(RSYSLOGD).exists():
            raise RuntimeError(f"rsyslogd is needed: {INSTALL_HINT}")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tcp_port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tls_port = free_port() if tls else None
        self.relp_port = free_port()
        self.tls = tls
        self.conf = self.dir / "rsyslog.conf"
        self.pidfile = self.dir / "rsyslogd.pid"
        self.conf.write_text(self._config())
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        lines = [
            f'global(workDirectory="{self.dir}" maxMessageSize="256k"',
        ]
        if self.tls:
            lines[0] += (
                f' defaultNetstreamDriverCAFile="{self.tls.ca}"'
                f' defaultNetstreamDriverCertFile="{self.tls.cert}"'
                f' defaultNetstreamDriverKeyFile="{self.tls.key}"'
            )
        lines[0] += ")"
        lines += [
            # What a collector acknowledged (RELP) must survive its own restart: messages
            # still in the main queue when it stops are saved to disk and sent on start.
            'main_queue(queue.filename="mainq" queue.saveOnShutdown="on")',
            'module(load="imudp")',
            'module(load="imtcp" maxSessions="100")',
            'module(load="imrelp")',
            'template(name="frame" type="string" string="%rawmsg%\\n")',
            f'input(type="imudp" port="{self.udp_port}" address="127.0.0.1" ruleset="udp")',
            f'input(type="imtcp" port="{self.tcp_port}" address="127.0.0.1" ruleset="tcp")',
            f'input(type="imrelp" port="{self.relp_port}" address="127.0.0.1" ruleset="relp")',
        ]
        if self.tls:
            mode = "x509/certvalid" if self.tls.client_cert else "anon"
            lines.append(
                f'input(type="imtcp" port="{self.tls_port}" address="127.0.0.1" ruleset="tls"'
                f' streamDriver.name="gtls" streamDriver.mode="1"'
                f' streamDriver.authMode="{mode}")'
            )
        for name in ("udp", "tcp", "tls", "relp"):
            lines.append(
                f'ruleset(name="{name}") {{ action(type="omfile" file="{self.dir}/{name}.log"'
                ' template="frame" flushInterval="0" asyncWriting="off") }'
            )
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        with open(self.dir / "rsyslogd.err", "ab") as errors:
            self.process = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        deadline = time.monotonic() + 10
        ports = [p for p in (self.tcp_port, self.tls_port, self.relp_port) if p]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {self.errors()}")
            if all(_listening(p) for p in ports):
                return
            time.sleep(0.02)
        raise RuntimeError(f"rsyslogd did not listen within 10 s: {self.errors()}")

    def stop(self) -> None:
        """SIGTERM, as `systemctl stop rsyslog` does, and wait for the process to end."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def errors(self) -> str:
        path = self.dir / "rsyslogd.err"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def lines(self, name: str) -> list[bytes]:
        path = self.dir / f"{name}.log"
        if not path.exists():
            return []
        return [line for line in path.read_bytes().split(b"\n") if line]

    def wait_for(self, name: str, count: int, timeout: float = 20.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines(name)
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
